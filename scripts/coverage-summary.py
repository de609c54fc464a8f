#!/usr/bin/env python3
"""Prints line and branch coverage from the Cobertura files that `dotnet test --collect "XPlat Code Coverage"` wrote:
one row per test project (what its tests cover of the FedEdge assemblies they load), then one row per FedEdge assembly,
merged over the test projects (a line counts as covered if any test project covers it).

Usage: coverage-summary.py RESULTS_DIR [OUT.md]
"""
import glob
import os
import sys
import xml.etree.ElementTree as ET

TRX = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}


def per_project(results):
    """(test project, Cobertura file) for each TRX file: the attachment lies under the run's deployment folder."""
    pairs = []
    for trx in sorted(glob.glob(os.path.join(results, "*.trx"))):
        root = ET.parse(trx).getroot()
        deployment = root.find(".//t:Deployment", TRX)
        test = root.find(".//t:UnitTest", TRX)
        if deployment is None or test is None:
            continue
        project = os.path.splitext(os.path.basename(test.get("storage", "?")))[0]
        for a in root.iterfind(".//t:ResultSummary//t:UriAttachment/t:A", TRX):
            path = os.path.join(results, deployment.get("runDeploymentRoot"), "In", a.get("href"))
            if path.endswith("coverage.cobertura.xml") and os.path.exists(path):
                pairs.append((project, path))
    return pairs


def rates(path):
    """Lines and branches of one Cobertura file, each source line counted once (methods repeat their class's lines)."""
    seen = {}
    for package in ET.parse(path).getroot().iter("package"):
        for cls in package.iter("class"):
            for line in cls.iter("line"):
                key = (cls.get("filename"), int(line.get("number")))
                covered, valid = 0, 0
                if line.get("branch") == "True":
                    cov = line.get("condition-coverage", "0% (0/0)")
                    covered, valid = map(int, cov[cov.index("(") + 1:cov.index(")")].split("/"))
                old = seen.get(key, (0, 0, 0))
                seen[key] = (max(old[0], int(line.get("hits", "0"))), max(old[1], covered), max(old[2], valid))
    lv = len(seen)
    lc = sum(1 for hits, _, _ in seen.values() if hits > 0)
    bc = sum(c for _, c, _ in seen.values())
    bv = sum(v for _, _, v in seen.values())
    return lc, lv, bc, bv


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
    out = ["| test project | lines loaded | line coverage | branches | branch coverage |", "|---|---:|---:|---:|---:|"]
    for project, path in per_project(results):
        lc, lv, bc, bv = rates(path)
        out.append(f"| {project} | {lv} | {100 * lc / max(lv, 1):.1f} % | {bv} | {100 * bc / max(bv, 1):.1f} % |")
    out += ["", "| assembly (all test projects) | lines | line coverage | branches | branch coverage |", "|---|---:|---:|---:|---:|"]
    total = [0, 0, 0, 0]
    for assembly in sorted(table):
        lc, lv, bc, bv = table[assembly]
        total = [a + b for a, b in zip(total, table[assembly])]
        out.append(f"| {assembly} | {lv} | {100 * lc / max(lv, 1):.1f} % | {bv} | {100 * bc / max(bv, 1):.1f} % |")
    lc, lv, bc, bv = total
    out.append(f"| **all** | {lv} | {100 * lc / max(lv, 1):.1f} % | {bv} | {100 * bc / max(bv, 1):.1f} % |")
    text = "\n".join(out)
    print(f"coverage (FedEdge assemblies):\n{text}")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
