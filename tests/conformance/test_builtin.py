"""cx-conformance over every built-in connector (cx-conformance --list-builtin) against its
fixtures: the test connector today, every in-tree adapter registered in conformance/builtin.c
as they arrive. Strict mode: a skip needs a written reason (python3 stdlib only)."""

import json
import os
import subprocess
import sys
import tempfile

RUNNER = os.environ["CX_CONFORMANCE"]
SOURCE = os.environ["CX_SOURCE_DIR"]


def main():
    listing = subprocess.run([RUNNER, "--list-builtin"], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    builtins = [line.split(" ", 1) for line in listing if line.strip()]
    assert builtins, "no built-in connector"
    passed = failed = 0
    for name, fixtures in builtins:
        with tempfile.TemporaryDirectory(prefix="cx-builtin-") as d:
            out = os.path.join(d, "report.json")
            p = subprocess.run([RUNNER, "--connector", name, "--fixtures",
                                os.path.join(SOURCE, fixtures), "--json", out, "--junit",
                                os.path.join(d, "report.xml"), "--timeout", "300", "--strict"],
                               capture_output=True, text=True, timeout=3600)
            ok = p.returncode == 0
            if ok:
                with open(out) as f:
                    report = json.load(f)
                ok = report["ok"] and report["summary"]["failed"] == 0
            if ok:
                passed += 1
                print("PASS %s (%s)" % (name, fixtures))
            else:
                failed += 1
                print("FAIL %s (%s): exit %d\n%s%s" % (name, fixtures, p.returncode, p.stdout,
                                                      p.stderr))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
