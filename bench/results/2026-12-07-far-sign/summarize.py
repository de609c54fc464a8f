#!/usr/bin/env python3
"""Markdown tables from `fededge bench far-sign --json` records: accuracy, time to accuracy, bytes up, and each
attacked run's gap to its own clean run (same method, model and order)."""
import json
import sys


def fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"


def main(paths):
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            runs.extend(json.loads(line) for line in handle if line.strip())
    clean = {}
    for run in runs:
        if run["Attack"] == "none":
            clean[(run["Method"], run["Model"], run.get("farSign"))] = run["FinalAccuracy"]
    print("| model | method | attack | final % | best % | gap to clean (pts) | t→70 % (s) | t→75 % (s) | t→80 % (s) | MB up | messages | versions | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        method = run["Method"]
        if method == "far-sign" and "order=zeroth" in (run.get("farSign") or ""):
            method += " (zeroth)"
        reference = clean.get((run["Method"], run["Model"], run.get("farSign")))
        gap = None if reference is None or run["Attack"] == "none" else 100 * (reference - run["FinalAccuracy"])
        print(f"| {run['Model']} | {method} | {run['Attack']} | {100 * run['FinalAccuracy']:.2f} | {100 * run['BestAccuracy']:.2f} | "
              f"{fmt(gap, 2)} | {fmt(run['timeTo70'])} | {fmt(run['timeTo75'])} | {fmt(run['timeTo80'])} | "
              f"{run['BytesUp'] / 1e6:.2f} | {run['Messages']} | {run['Versions']} | {run['WallSeconds']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
