"""Install the SDK to a temporary prefix, then scaffold, configure, build and run conformance on
a standalone connector for every domain and every auth kind, each within a minute; plus the
pkg-config route, name validation, refusing to overwrite, the interactive prompts and the
in-tree layout (python3 stdlib only).

Environment (tests/CMakeLists.txt): CX_BINARY_DIR (a configured and built SDK tree),
CX_SOURCE_DIR, CX_CMAKE, CX_CTEST.
"""

import concurrent.futures
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = os.environ["CX_BINARY_DIR"]
SOURCE = os.environ["CX_SOURCE_DIR"]
CMAKE = os.environ.get("CX_CMAKE", "cmake")
CTEST = os.environ.get("CX_CTEST", "ctest")
DOMAINS = ["messaging", "email", "calendar", "automation"]
AUTHS = ["hmac", "standard-webhooks", "oauth2", "api-key", "token", "none"]
LIMIT_S = 60


def sh(args, cwd=None, env=None, timeout=300, check=True):
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d)\n%s\n%s" % (" ".join(args), p.returncode,
                                                        p.stdout[-3000:], p.stderr[-3000:]))
    return p


def cache(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^%s(:[A-Z]+)?=(.*)$" % re.escape(name), line.strip())
            if m:
                return m.group(2)
    return ""


def sanitizer_flags():
    """A sanitized SDK needs sanitized consumers (libcx.a references the runtime's hooks)."""
    if cache("CX_SANITIZE").upper() in ("ON", "1", "TRUE", "YES"):
        f = "-fsanitize=address,undefined -fno-omit-frame-pointer"
        return ["-DCMAKE_C_FLAGS=" + f, "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined",
                "-DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=address,undefined",
                "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"]
    return []


def sanitizer_env():
    env = dict(os.environ)
    if sanitizer_flags():
        # cx-conformance dlopen()s an instrumented connector into an instrumented runner.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    return env


def install(prefix):
    sh([CMAKE, "--install", BUILD, "--prefix", prefix], timeout=300)
    want = ["lib/libcx.a", "lib/libcx_proto.a", "include/cx/connector.h", "include/cx/version.h",
            "include/cx/messaging/v1/messaging.cx.h", "include/cx/messaging/v1/messaging.pb-c.h",
            "include/google/protobuf/timestamp.pb-c.h", "bin/cx", "bin/cx-conformance",
            "bin/create-connector", "share/cx/create-connector/templates/project/connector.c.in",
            "lib/cmake/cx/cxConfig.cmake", "lib/cmake/cx/cxConfigVersion.cmake",
            "lib/pkgconfig/cx.pc", "share/cx/generated", "share/cx/schemas"]
    for w in want:
        assert os.path.exists(os.path.join(prefix, w)), "not installed: " + w


def scaffold_build_conform(prefix, work, domain, auth, outbound):
    name = "p_%s_%s" % (domain[:4], auth.replace("-", ""))
    t0 = time.monotonic()
    args = [os.path.join(prefix, "bin", "create-connector"), name, "--domain", domain, "--auth",
            auth, "--inbound", "--out", work]
    if outbound:
        args.append("--outbound")
    sh(args)
    proj = os.path.join(work, name)
    build = os.path.join(proj, "build")
    sh([CMAKE, "-S", proj, "-B", build, "-DCMAKE_PREFIX_PATH=" + prefix,
        "-DCMAKE_C_COMPILER=" + (cache("CMAKE_C_COMPILER") or "cc")] + sanitizer_flags())
    sh([CMAKE, "--build", build, "-j", "1"])
    p = sh([CTEST, "--test-dir", build, "--output-on-failure"], env=sanitizer_env(), check=False)
    assert p.returncode == 0, "%s/%s: ctest failed\n%s" % (domain, auth, p.stdout[-6000:])
    assert "conformance" in p.stdout and "100% tests passed" in p.stdout, p.stdout
    assert os.path.exists(os.path.join(build, "conformance.xml"))
    took = time.monotonic() - t0
    assert took < LIMIT_S, "%s/%s took %.1f s (limit %d s)" % (domain, auth, took, LIMIT_S)
    return domain, auth, took


def test_install_then_scaffold_every_domain_and_auth(prefix, work):
    jobs = []
    i = 0
    for domain in DOMAINS:
        for auth in AUTHS:
            jobs.append((domain, auth, i % 2 == 1))
            i += 1
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futs = {pool.submit(scaffold_build_conform, prefix, work, d, a, o): (d, a)
                for d, a, o in jobs}
        for fut in concurrent.futures.as_completed(futs):
            d, a = futs[fut]
            try:
                _, _, took = fut.result()
                print("ok   %-10s %-18s %5.1f s" % (d, a, took))
            except Exception as e:  # noqa: BLE001 - collect every combination
                failures.append("%s/%s: %s" % (d, a, e))
                print("FAIL %-10s %-18s" % (d, a))
    assert not failures, "\n\n".join(failures)


def test_pkg_config_builds_a_connector(prefix, work):
    if shutil.which("pkg-config") is None:
        return
    sh([os.path.join(prefix, "bin", "create-connector"), "pcdemo", "--domain", "messaging",
        "--auth", "hmac", "--out", work])
    proj = os.path.join(work, "pcdemo")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    flags = sh(["pkg-config", "--cflags", "--libs", "cx", "jansson"], env=env).stdout.split()
    san = ["-fsanitize=address,undefined"] if sanitizer_flags() else []
    lib = os.path.join(proj, "libcx_pcdemo.so")
    sh([cache("CMAKE_C_COMPILER") or "cc", "-std=c11", "-fPIC", "-shared", "-fvisibility=hidden",
        "-I" + os.path.join(proj, "src"), os.path.join(proj, "src", "pcdemo.c"),
        os.path.join(proj, "src", "entry.c"), "-o", lib, "-Wl,--exclude-libs,ALL"] + san + flags)
    p = sh([os.path.join(prefix, "bin", "cx-conformance"), "--connector-lib", lib, "--fixtures",
            os.path.join(proj, "fixtures")], env=sanitizer_env(), check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_names_are_validated_and_nothing_is_overwritten(prefix, work):
    cc = os.path.join(prefix, "bin", "create-connector")
    for bad in ["Acme", "9lives", "a", "acme-chat", "acme__chat", "acme_", "test", "int",
                "x" * 40, "acme chat"]:
        p = sh([cc, bad, "--domain", "messaging", "--auth", "hmac", "--out", work], check=False)
        assert p.returncode == 2 and "create-connector:" in p.stderr, (bad, p.returncode, p.stderr)
        assert not os.path.exists(os.path.join(work, bad))
    os.makedirs(os.path.join(work, "taken"))
    marker = os.path.join(work, "taken", "mine.txt")
    with open(marker, "w") as f:
        f.write("keep")
    p = sh([cc, "taken", "--domain", "email", "--auth", "token", "--out", work], check=False)
    assert p.returncode == 2 and "refusing to overwrite" in p.stderr, p.stderr
    assert open(marker).read() == "keep" and os.listdir(os.path.join(work, "taken")) == ["mine.txt"]
    # Without a terminal, missing flags are an error, not a prompt.
    p = subprocess.run([cc, "nottyconn"], cwd=work, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 2 and "required" in p.stderr, p.stderr
    # No stray temporary directories are left behind.
    assert not [d for d in os.listdir(work) if d.startswith(".create-connector-")]


def test_interactive_prompts_on_a_terminal(prefix, work):
    cc = os.path.join(prefix, "bin", "create-connector")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(work)
        os.execv(sys.executable, [sys.executable, cc])
    answers = [(b"Connector name", b"Bad-Name\n"), (b"Connector name", b"tty_demo\n"),
               (b"Domain", b"calendar\n"), (b"authenticate", b"api-key\n"),
               (b"Directions", b"both\n"), (b"Write the project under", b"\n")]
    out = b""
    deadline = time.monotonic() + 60
    for prompt, reply in answers:
        while prompt not in out[-400:] and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        assert prompt in out, out.decode(errors="replace")
        out = b""
        os.write(fd, reply)
    rest = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        rest += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, rest.decode(errors="replace")
    proj = os.path.join(work, "tty_demo")
    assert os.path.exists(os.path.join(proj, "fixtures", "calendar_webhooks", "request.json"))
    src = open(os.path.join(proj, "src", "tty_demo.c")).read()
    assert "CX_AUTH_API_KEY" in src and "calendar_outbound" in src and "send_command" in src


def test_in_tree_adapter_layout(prefix, work):
    """--in-tree writes adapters/<id>/, fixtures/<id>/ and registers in builtin.c; the
    adapter's code builds (here against the installed SDK) and passes conformance."""
    repo = os.path.join(work, "repo")
    os.makedirs(os.path.join(repo, "conformance"))
    os.makedirs(os.path.join(repo, "runtime", "include", "cx"))
    shutil.copy(os.path.join(SOURCE, "conformance", "builtin.c"),
                os.path.join(repo, "conformance", "builtin.c"))
    shutil.copy(os.path.join(SOURCE, "runtime", "include", "cx", "connector.h"),
                os.path.join(repo, "runtime", "include", "cx", "connector.h"))
    cc = os.path.join(prefix, "bin", "create-connector")
    sh([cc, "treedemo", "--domain", "automation", "--auth", "hmac", "--in-tree"],
       cwd=os.path.join(repo, "conformance"))
    a = os.path.join(repo, "adapters", "treedemo")
    for f in ["treedemo.c", "treedemo.h", "README.md", "tests/test_treedemo.c"]:
        assert os.path.exists(os.path.join(a, f)), f
    assert not os.path.exists(os.path.join(a, "CMakeLists.txt"))
    assert os.path.exists(os.path.join(repo, "fixtures", "treedemo", "automation_actions",
                                       "request.json"))
    builtin = open(os.path.join(repo, "conformance", "builtin.c")).read()
    assert "const cx_connector_t *cx_treedemo_connector(void);" in builtin
    assert '{"treedemo", cx_treedemo_connector, "fixtures/treedemo"},' in builtin
    # A second run refuses, and leaves builtin.c alone.
    p = sh([cc, "treedemo", "--domain", "automation", "--auth", "hmac", "--in-tree", "--repo",
            repo], check=False)
    assert p.returncode == 2, p.stderr
    assert open(os.path.join(repo, "conformance", "builtin.c")).read() == builtin
    if shutil.which("pkg-config") is None:
        return
    shim = os.path.join(work, "treedemo_entry.c")
    with open(shim, "w") as f:
        f.write('#include "treedemo/treedemo.h"\n'
                '__attribute__((visibility("default"))) const cx_connector_t *'
                'cx_connector_entry(void);\n'
                'const cx_connector_t *cx_connector_entry(void) '
                '{ return cx_treedemo_connector(); }\n')
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    flags = sh(["pkg-config", "--cflags", "--libs", "cx", "jansson"], env=env).stdout.split()
    san = ["-fsanitize=address,undefined"] if sanitizer_flags() else []
    lib = os.path.join(work, "libtreedemo.so")
    sh([cache("CMAKE_C_COMPILER") or "cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC",
        "-shared", "-fvisibility=hidden", "-I" + os.path.join(repo, "adapters"),
        os.path.join(a, "treedemo.c"), shim, "-o", lib, "-Wl,--exclude-libs,ALL"] + san + flags)
    p = sh([os.path.join(prefix, "bin", "cx-conformance"), "--connector-lib", lib, "--fixtures",
            os.path.join(repo, "fixtures", "treedemo")], env=sanitizer_env(), check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def main():
    tests = [test_install_then_scaffold_every_domain_and_auth, test_pkg_config_builds_a_connector,
             test_names_are_validated_and_nothing_is_overwritten,
             test_interactive_prompts_on_a_terminal, test_in_tree_adapter_layout]
    root = tempfile.mkdtemp(prefix="cx-scaffold-")
    passed = failed = 0
    try:
        prefix = os.path.join(root, "prefix")
        t0 = time.monotonic()
        install(prefix)
        print("installed to a temporary prefix in %.1f s" % (time.monotonic() - t0))
        for t in tests:
            work = os.path.join(root, t.__name__)
            os.makedirs(work)
            try:
                t(prefix, work)
                passed += 1
                print("PASS", t.__name__)
            except Exception as e:  # noqa: BLE001 - report every failure
                failed += 1
                print("FAIL", t.__name__, ":", e)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
