#!/usr/bin/python3
"""Prints a Markdown table of the `fededge sim` records in a results folder (bench/learning/run.sh writes them)."""
import json, pathlib, sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench/learning/results")
rows = []
for path in sorted(folder.glob("*.json")):
    r = json.loads(path.read_text())
    o, rounds = r["options"], r["rounds"]
    acc = [x["testAccuracy"] for x in rounds if isinstance(x["testAccuracy"], (int, float))]
    up = r["totalBytesUp"] / max(1, sum(x["participants"] for x in rounds))  # bytes per update
    rows.append((path.stem, o, len(rounds), acc, up, r["totalBytesDown"], rounds))

fp32 = next((up for name, o, n, acc, up, down, _ in rows if o["codec"] == "fp32"), None)
print("| run | codec + EF | rule | attack | rounds | final acc | best acc | bytes up / update | × fewer than fp32 | viol. frac. | last diameter | time (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, o, n, acc, up, down, rounds in rows:
    per = up
    ratio = f"{fp32 / per:.1f}" if fp32 else "–"
    attack = "none" if o["attack"] == "none" else f"{o['attack']} {o['attackers']:.0%}"
    last = rounds[-1] if rounds else {}
    print(f"| {name} | {o['codec']} + {o['errorFeedback']} | {o['aggregator']}{' +bucket ' + str(o['bucketSize']) if o.get('bucketSize', 0) > 1 else ''} | {attack} | {n} "
          f"| {100 * acc[-1]:.2f} % | {100 * max(acc):.2f} % | {per:,.0f} | {ratio} | {last.get('monotonicityViolations', float('nan')):.2f} "
          f"| {last.get('diameter', float('nan')):.3g} | {rounds[-1]['elapsedSeconds'] if rounds else 0:.0f} |")
