#!/usr/bin/env python3
"""Tables of `fededge bench fedmm` JSON records: mean ± sd over seeds per (partition, method) at given rounds,
and at equal bytes (each method at its last round within the smallest total any method spent, per partition and seed).
Usage: summarize.py RECORDS.jsonl [ROUND ...]"""
import json, statistics, sys
from collections import defaultdict

path = sys.argv[1]
records = [json.loads(line) for line in open(path)]
last = max(r["Round"] for r in records)
rounds = [int(a) for a in sys.argv[2:]] or [last]

def stat(values, scale=1.0, digits=4):
    values = [v * scale for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

groups = defaultdict(list)
for r in records:
    groups[(r["Partition"], r["Method"])].append(r)
seeds = sorted({r["Seed"] for r in records})
print(f"{path}: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), last round {last}")
for rnd in rounds:
    print(f"\nRound {rnd}:")
    print("| partition | method | objective g + f | test accuracy % | zeros in θ % | MB up + down (cumulative) |")
    print("|---|---|---|---|---|---|")
    for (partition, method), rs in sorted(groups.items()):
        at = [r for r in rs if r["Round"] == rnd]
        acc = stat([r["TestAccuracy"] for r in at], 100, 2) if at[0]["TestAccuracy"] is not None else "-"
        print(f"| {partition} | {method} | {stat([r['Objective'] for r in at])} | {acc} | "
              f"{stat([r['Sparsity'] for r in at], 100, 1)} | {statistics.mean(r['CumulativeBytes'] for r in at) / 1e6:.1f} |")

print("\nAt equal bytes:")
print("| partition | method | objective g + f | round reached | MB |")
print("|---|---|---|---|---|")
for partition in sorted({r["Partition"] for r in records}):
    budget = {}
    for seed in seeds:
        totals = [max(r["CumulativeBytes"] for r in records if r["Partition"] == partition and r["Seed"] == seed and r["Method"] == m)
                  for m in {r["Method"] for r in records if r["Partition"] == partition and r["Seed"] == seed}]
        if totals:
            budget[seed] = min(totals)
    for method in sorted({r["Method"] for r in records if r["Partition"] == partition}):
        at = []
        for seed, b in budget.items():
            rs = [r for r in records if r["Partition"] == partition and r["Seed"] == seed and r["Method"] == method and r["CumulativeBytes"] <= b]
            if rs:
                at.append(max(rs, key=lambda r: r["Round"]))
        print(f"| {partition} | {method} | {stat([r['Objective'] for r in at])} | {statistics.mean(r['Round'] for r in at):.1f} | "
              f"{statistics.mean(r['CumulativeBytes'] for r in at) / 1e6:.1f} |")

print("\nPaired per seed, fedmm minus each other method (objective; negative: fedmm lower), at the listed rounds:")
print("| partition | round | vs | mean ± sd of difference | seeds where fedmm is lower |")
print("|---|---|---|---|---|")
for partition in sorted({r["Partition"] for r in records}):
    for rnd in rounds:
        own = {r["Seed"]: r["Objective"] for r in records if r["Partition"] == partition and r["Method"] == "fedmm" and r["Round"] == rnd}
        for method in sorted({r["Method"] for r in records if r["Partition"] == partition} - {"fedmm"}):
            other = {r["Seed"]: r["Objective"] for r in records if r["Partition"] == partition and r["Method"] == method and r["Round"] == rnd}
            diffs = [own[s] - other[s] for s in own if s in other]
            if diffs:
                print(f"| {partition} | {rnd} | {method} | {stat(diffs)} | {sum(d < 0 for d in diffs)}/{len(diffs)} |")
