#!/usr/bin/python3
"""cx-gen is deterministic and generated/ is fresh.

Runs cx-gen twice into temporary directories: both trees must be byte-identical, and equal to
the committed generated/ (a stale generated/ fails with the list of differing files).
"""

import filecmp
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXGEN = os.path.join(ROOT, "generator", "cx-gen")


def tree(top):
    out = {}
    for dirpath, _, files in os.walk(top):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, top)] = fh.read()
    return out


def diff(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
        for out in (one, two):
            subprocess.run([CXGEN, "--quiet", "--out", out], check=True)
        t1, t2 = tree(one), tree(two)
    d = diff(t1, t2)
    if d:
        print("FAIL cx-gen is not deterministic; differing files:\n  " + "\n  ".join(d))
        return 1
    print("ok   cx-gen twice: %d files, identical bytes" % len(t1))
    d = diff(t1, tree(os.path.join(ROOT, "generated")))
    if d:
        print("FAIL generated/ is stale; run generator/cx-gen and commit. Differing files:\n  "
              + "\n  ".join(d))
        return 1
    print("ok   generated/ is fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
