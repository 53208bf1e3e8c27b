#!/usr/bin/python3
"""Schema lint tests: our schemas lint clean; each broken schema fails with its message.

Each tests/schema/broken/<case>.proto starts with `// expect: <text>`; the lint must fail and
name that text (file, message, field and problem). Run by ctest.
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CXGEN = os.path.join(ROOT, "generator", "cx-gen")
OPTIONS = os.path.join(ROOT, "schemas", "cx", "options", "v1", "options.proto")


def lint(schemas):
    return subprocess.run([CXGEN, "--lint-only", "--schemas", schemas],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main():
    failures = 0
    proc = lint(os.path.join(ROOT, "schemas"))
    if proc.returncode != 0:
        print("FAIL our schemas do not lint clean:\n" + proc.stderr)
        failures += 1
    else:
        print("ok   schemas/ lint clean")
    broken = sorted(f for f in os.listdir(os.path.join(HERE, "broken")) if f.endswith(".proto"))
    for name in broken:
        path = os.path.join(HERE, "broken", name)
        with open(path) as f:
            first = f.readline()
        assert first.startswith("// expect: "), name
        expect = first[len("// expect: "):].strip()
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "cx", "options", "v1"))
            os.makedirs(os.path.join(tmp, "cx", "broken", "v1"))
            shutil.copy(OPTIONS, os.path.join(tmp, "cx", "options", "v1"))
            shutil.copy(path, os.path.join(tmp, "cx", "broken", "v1", name))
            proc = lint(tmp)
        where = "cx/broken/v1/%s: %s" % (name, expect)
        if proc.returncode == 1 and where in proc.stderr:
            print("ok   %s" % name)
        else:
            print("FAIL %s: exit %d, wanted '%s' in:\n%s" % (name, proc.returncode, where,
                                                             proc.stderr))
            failures += 1
    print("%d broken schemas, %d failures" % (len(broken), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
