"""The docs cannot drift from the tools: every ```sh block preceded by `<!-- ci: run -->` in
docs/conformance.md and docs/create-connector.md runs, in order, in one temporary directory
per document, with the SDK's programs on PATH and $CX_SOURCE_DIR, $CX_PREFIX set (python3
stdlib only). A block marked `<!-- ci: run, expect-fail -->` must exit non-zero.

$CX_PREFIX is an installation of the build under test (cmake --install to a temporary
prefix), so the blocks run the installed cx-conformance and create-connector as users do.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ["CX_SOURCE_DIR"]
BUILD = os.environ["CX_BINARY_DIR"]
CMAKE = os.environ.get("CX_CMAKE", "cmake")
DOCS = ["docs/conformance.md", "docs/create-connector.md"]
MARK = re.compile(r"<!--\s*ci:\s*run(,\s*expect-fail)?\s*-->\s*\n```sh\n(.*?)```", re.S)


def sanitized():
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        return any(re.match(r"^CX_SANITIZE:BOOL=(ON|1|TRUE|YES)$", line.strip(), re.I)
                   for line in f)


def blocks(path):
    with open(path) as f:
        text = f.read()
    return [(bool(m.group(1)), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in MARK.finditer(text)]


def main():
    root = tempfile.mkdtemp(prefix="cx-docs-")
    passed = failed = 0
    try:
        prefix = os.path.join(root, "prefix")
        subprocess.run([CMAKE, "--install", BUILD, "--prefix", prefix], check=True,
                       capture_output=True, timeout=300)
        env = dict(os.environ, CX_PREFIX=prefix, CX_SOURCE_DIR=SOURCE,
                   PATH=os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", ""))
        if "ASAN_OPTIONS" not in env:
            env["ASAN_OPTIONS"] = "detect_leaks=0"
        if sanitized():
            # An instrumented libcx needs instrumented consumers (CMake reads these once).
            env["CFLAGS"] = "-fsanitize=address,undefined -fno-omit-frame-pointer"
            env["LDFLAGS"] = "-fsanitize=address,undefined"
        for doc in DOCS:
            found = blocks(os.path.join(SOURCE, doc))
            if not found:
                failed += 1
                print("FAIL %s: no <!-- ci: run --> block" % doc)
                continue
            work = os.path.join(root, os.path.basename(doc) + ".d")
            os.makedirs(work)
            for expect_fail, script, line in found:
                p = subprocess.run(["/bin/sh", "-e", "-c", script], cwd=work, env=env,
                                   capture_output=True, text=True, timeout=900)
                ok = (p.returncode != 0) if expect_fail else (p.returncode == 0)
                if ok:
                    passed += 1
                    print("PASS %s:%d" % (doc, line))
                else:
                    failed += 1
                    print("FAIL %s:%d (exit %d)\n--- block\n%s--- stdout\n%s--- stderr\n%s" % (
                        doc, line, p.returncode, script, p.stdout[-4000:], p.stderr[-4000:]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
