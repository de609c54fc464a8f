#!/usr/bin/env python3
"""Prints line and branch coverage per test project and per FedEdge assembly from the Cobertura files that
`dotnet test --collect "XPlat Code Coverage"` wrote, and merges them into one table of the best coverage any test
project gave each assembly.

Usage: coverage-summary.py RESULTS_DIR [OUT.md]
"""
import glob
import os
import sys
import xml.etree.ElementTree as ET


def main():
    results = sys.argv[1]
    files = sorted(glob.glob(os.path.join(results, "**", "coverage.cobertura.xml"), recursive=True))
    if not files:
        print("coverage: no Cobertura files found", file=sys.stderr)
        return 1
    # assembly -> (lines covered, lines valid, branches covered, branches valid), merged over test projects by
    # taking the union of covered lines per file and line number.
    lines = {}
    branches = {}
    for path in files:
        root = ET.parse(path).getroot()
        for package in root.iter("package"):
            assembly = package.get("name")
            for cls in package.iter("class"):
                filename = cls.get("filename")
                for line in cls.iter("line"):
                    key = (assembly, filename, int(line.get("number")))
                    hits = int(line.get("hits", "0"))
                    lines[key] = max(lines.get(key, 0), hits)
                    if line.get("branch") == "True":
                        cov = line.get("condition-coverage", "0% (0/0)")
                        covered, valid = cov[cov.index("(") + 1:cov.index(")")].split("/")
                        old = branches.get(key, (0, int(valid)))
                        branches[key] = (max(old[0], int(covered)), int(valid))
    table = {}
    for (assembly, _, _), hits in lines.items():
        t = table.setdefault(assembly, [0, 0, 0, 0])
        t[1] += 1
        t[0] += hits > 0
    for (assembly, _, _), (covered, valid) in branches.items():
        t = table.setdefault(assembly, [0, 0, 0, 0])
        t[2] += covered
        t[3] += valid
    out = ["| assembly | lines | line coverage | branches | branch coverage |", "|---|---:|---:|---:|---:|"]
    total = [0, 0, 0, 0]
    for assembly in sorted(table):
        lc, lv, bc, bv = table[assembly]
        total = [a + b for a, b in zip(total, table[assembly])]
        out.append(f"| {assembly} | {lv} | {100 * lc / max(lv, 1):.1f} % | {bv} | {100 * bc / max(bv, 1):.1f} % |")
    lc, lv, bc, bv = total
    out.append(f"| **all** | {lv} | {100 * lc / max(lv, 1):.1f} % | {bv} | {100 * bc / max(bv, 1):.1f} % |")
    text = "\n".join(out)
    print(f"coverage from {len(files)} Cobertura file(s):\n{text}")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
