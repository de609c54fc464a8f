#!/usr/bin/python3
"""Markdown tables of drift-scenario results (bench/drift/results/*.json) for docs/drift.md.

Usage: bench/drift/summarize.py [results.json ...]   (default: every JSON in bench/drift/results)
"""
import glob
import json
import math
import os
import sys


def fmt(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) or v == "NaN" else f"{v:.2f}"


def pr(d):
    return f"{fmt(d['precision'])} / {fmt(d['recall'])}"


def table(path):
    r = json.load(open(path))
    s = r["scenario"]
    steps = r["steps"]
    methods = list(steps[0]["accuracy"].keys())
    done = len(steps) == s["timeSteps"]
    partial = "" if done else " (partial: %d of %d steps finished)" % (len(steps), s["timeSteps"])
    out = ["### `%s`%s" % (s["name"], partial), ""]
    out.append(f"{s['devices']} devices, {s['timeSteps']} steps × {s['roundsPerStep']} rounds, sampling {s['sampleRate']}, "
               f"{s['model']}, lr {s['learningRate']}, batch {s['batchSize']}, {s['trainSamples']}/{s['testSamples']} samples; "
               f"{r['seconds']:.0f} s wall on the shared 2-core machine.")
    out.append("")
    out.append("| step | " + " | ".join(f"{m} acc" for m in methods) + " | FedDAA k | real P / R | virtual P / R | label P / R |")
    out.append("|---" * (len(methods) + 5) + "|")
    for st in steps:
        det = {d["class"]: d for d in st["detection"]}
        out.append(f"| {st['timeStep']} | " + " | ".join(f"{100 * st['accuracy'][m]:.2f} %" for m in methods)
                   + f" | {st['fedDaaClusters']} | " + " | ".join(pr(det[c]) for c in ("Real", "Virtual", "Label")) + " |")
    det = {d["class"]: d for d in r["detection"]}
    mean = {m: sum(st["accuracy"][m] for st in steps) / len(steps) for m in methods}
    out.append("| **mean** | " + " | ".join(f"**{100 * mean[m]:.2f} %**" for m in methods) + " | | "
               + " | ".join(pr(det[c]) for c in ("Real", "Virtual", "Label")) + " |")
    out.append("")
    out.append(f"FedDAA − FedAvg = {100 * (mean['FedDAA'] - mean['FedAvg']):+.2f} points, "
               f"FedDAA − IFCA = {100 * (mean['FedDAA'] - mean['IFCA']):+.2f} points (mean over the steps shown).")
    out.append("")
    return "\n".join(out)


paths = sys.argv[1:] or sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "*.json")))
print("\n".join(table(p) for p in paths))
