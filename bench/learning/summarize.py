#!/usr/bin/python3
"""Prints Markdown tables of the `fededge sim` records in a results folder (bench/learning/run.sh writes them).

  summarize.py [FOLDER] [PREFIX]
Every record whose file name starts with PREFIX (default: all) goes into the table of runs. With PREFIX (e.g. a50-,
the attacks-50 target) it also prints the attack table: per attack and rule the final, best and last-5-round mean
accuracy, and the gap of the final and last-5 accuracy to the clean run of the same rule (a50-none-RULE), or to the
robust rule's clean run where a rule has none.
"""
import json, pathlib, sys

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench/learning/results")
prefix = sys.argv[2] if len(sys.argv) > 2 else ""
rows = []
for path in sorted(folder.glob(prefix + "*.json")):
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

if prefix:
    # name = PREFIX + attack + "-" + rule tag; attacks are known names (some contain '-').
    attacks = ["none", "sign-flip", "gaussian", "ipm", "alie", "label-flip"]
    table = {}
    for name, o, n, acc, up, down, rounds in rows:
        rest = name[len(prefix):]
        attack = next((a for a in attacks if rest.startswith(a + "-")), None)
        if attack is None or not acc:
            continue
        tag = rest[len(attack) + 1:]
        last5 = sum(acc[-5:]) / len(acc[-5:])
        table[(attack, tag)] = (100 * acc[-1], 100 * max(acc), 100 * last5, n)
    tags = sorted({t for _, t in table}, key=lambda t: (t == "mean", t))
    robust = next((t for t in tags if t != "mean"), None)
    print()
    print("| attack | " + " | ".join(f"{t}: final / best / last-5 mean (rounds) | Δ final / Δ last-5 to clean" for t in tags) + " |")
    print("|---|" + "---|---|" * len(tags))
    for attack in attacks:
        cells = []
        for t in tags:
            if (attack, t) not in table:
                cells += ["–", "–"]
                continue
            final, best, last5, n = table[(attack, t)]
            clean = table.get(("none", t)) or table.get(("none", robust))
            gap = f"{final - clean[0]:+.2f} / {last5 - clean[2]:+.2f}" if clean and attack != "none" else "–"
            cells += [f"{final:.2f} / {best:.2f} / {last5:.2f} %{'' if n == 50 else f' ({n})'}", gap]
        print(f"| {attack} | " + " | ".join(cells) + " |")
