#!/usr/bin/env python3
"""Prints the modes × attacks table from the run records in this folder: python3 summarize.py [prefix]."""
import glob, json, os, sys

prefix = sys.argv[1] if len(sys.argv) > 1 else ""
print("| run | strategy | updates | versions | final | best | last-5 mean | bytes up | bytes down | wall s | time to target |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__) or ".", prefix + "*.json"))):
    r = json.load(open(path))
    rounds = [x for x in r["rounds"] if isinstance(x["testAccuracy"], (int, float)) and x["testAccuracy"] == x["testAccuracy"]]
    if not rounds:
        continue
    acc = [x["testAccuracy"] for x in rounds]
    last5 = acc[-5:]
    updates = sum(x["participants"] for x in r["rounds"])
    ttt = r.get("timeToTargetSeconds")
    print(f"| {os.path.basename(path)[:-5]} | {r.get('strategy', '')} | {updates} | {len(r['rounds'])} | {100*acc[-1]:.2f} % | {100*max(acc):.2f} % "
          f"| {100*sum(last5)/len(last5):.2f} % | {r['totalBytesUp']:,} | {r['totalBytesDown']:,} | {r['totalSeconds']:.0f} | "
          f"{'%.0f s' % ttt if ttt is not None else 'not reached'} |")
