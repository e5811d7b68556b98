#!/usr/bin/python3
"""Count iscsi-test-cu results honestly: CUnit reports a skipped test as
passed, so classify each test from its own output.  A test FAILED if a
FAILED status (or a CUnit assertion line) follows it, SKIPPED if it printed
[SKIPPED], else PASSED.  Usage: iscsi_cu_classify.py LOG [--list]"""
import re
import sys


def classify(text):
    results = {}
    suite = test = None
    block = []

    def close():
        if test is None:
            return
        body = "\n".join(block)
        if re.search(r"(\.\.\.|^|\s)FAILED\s*$", body, re.M) or \
                re.search(r"^\s+\d+\. \S+:\d+\s+- ", body, re.M):
            res = "FAIL"
        elif "[SKIPPED]" in body:
            res = "SKIP"
        else:
            res = "PASS"
        results[f"{suite}.{test}"] = res

    for line in text.splitlines():
        m = re.match(r"^Suite: (\S+)", line)
        t = re.match(r"^\s+Test: (\S+) \.\.\.(.*)$", line)
        if m or t or line.startswith("Run Summary"):
            close()
            block = []
            test = None
            if m:
                suite = m.group(1)
            if t:
                test = t.group(1)
                block.append("..." + t.group(2))
            continue
        if test is not None:
            block.append(line)
    close()
    return results


def main():
    res = classify(open(sys.argv[1], errors="replace").read())
    counts = {k: sum(1 for v in res.values() if v == k) for k in ("PASS", "FAIL", "SKIP")}
    print(f"total {len(res)} pass {counts['PASS']} fail {counts['FAIL']} skip {counts['SKIP']}")
    if "--list" in sys.argv:
        for name, r in sorted(res.items()):
            if r != "PASS":
                print(f"{r} {name}")


if __name__ == "__main__":
    main()
