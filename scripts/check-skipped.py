#!/usr/bin/env python3
"""Fails (exit 1) when a TRX file reports a skipped test that the allow-list does not name.

Usage: check-skipped.py ALLOW_LIST RESULT.trx...
The allow-list holds one fully qualified test name per line (a trailing * matches a prefix); # starts a comment.
A TRX file that cannot be read is a failure too: a crashed test host must not pass as "nothing skipped".
"""
import sys
import xml.etree.ElementTree as ET

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}


def load_allowed(path):
    allowed = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = line.split("#", 1)[0].strip()
            if entry:
                allowed.append(entry)
    return allowed


def is_allowed(name, allowed):
    # A theory case is reported as Name(args): the allow-list names the method.
    method = name.split("(", 1)[0]
    return any(method == a or (a.endswith("*") and method.startswith(a[:-1])) for a in allowed)


def main():
    if len(sys.argv) < 3:
        print("usage: check-skipped.py ALLOW_LIST RESULT.trx...", file=sys.stderr)
        return 2
    allowed = load_allowed(sys.argv[1])
    unexpected = []
    for trx in sys.argv[2:]:
        try:
            root = ET.parse(trx).getroot()
        except (OSError, ET.ParseError) as e:
            print(f"cannot read test results {trx}: {e}", file=sys.stderr)
            return 1
        for result in root.iterfind(".//t:Results/t:UnitTestResult", NS):
            if result.get("outcome") == "NotExecuted" and not is_allowed(result.get("testName", ""), allowed):
                reason = result.findtext(".//t:Output/t:ErrorInfo/t:Message", default="", namespaces=NS).strip()
                unexpected.append(f"  {result.get('testName')}: {reason or '(no reason given)'}")
    if unexpected:
        print(f"{len(unexpected)} test(s) skipped that {sys.argv[1]} does not allow:", file=sys.stderr)
        print("\n".join(unexpected), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
