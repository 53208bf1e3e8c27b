"""The conformance suite can fail: each deliberately broken connector is flagged by exactly the
check meant to catch its defect, and the good test connector passes (python3 stdlib only).

Environment (set by tests/CMakeLists.txt): CX_CONFORMANCE (the runner), CX_BROKEN_DIR (where
libcx_broken_<defect>.so are), CX_TEST_CONNECTOR_LIB (the good connector as a shared object),
CX_SOURCE_DIR.
"""

import json
import os
import subprocess
import sys
import tempfile

RUNNER = os.environ["CX_CONFORMANCE"]
BROKEN_DIR = os.environ["CX_BROKEN_DIR"]
SOURCE = os.environ["CX_SOURCE_DIR"]
GOOD_LIB = os.environ.get("CX_TEST_CONNECTOR_LIB")
FIXTURES = os.path.join(SOURCE, "tests", "conformance", "fixtures")

# defect -> the one check id that must flag it (docs/conformance.md)
EXPECTED = {
    "logs_raw_body": "logging.no_raw_body",
    "key_arrival_time": "parse.dedupe_keys_deterministic",
    "key_phone": "parse.dedupe_keys_no_pii",
    "accepts_any_signature": "signature.invalid_rejected",
    "fails_whole_batch": "batch.bad_item_isolated",
    "crashes_on_mutation": "robustness.mutated_fixtures",
    "active_without_fixture": "manifest.active_capabilities_have_fixtures",
    "resends_after_timeout": "outbound.timeout_not_resent",
}
# defects of the outbound variants run against the fixtures with a command.json case
OUTBOUND = {"resends_after_timeout"}


def run(args):
    with tempfile.TemporaryDirectory(prefix="cx-conf-test-") as d:
        out = os.path.join(d, "report.json")
        junit = os.path.join(d, "report.xml")
        p = subprocess.run([RUNNER] + args + ["--json", out, "--junit", junit, "--timeout", "120"],
                           capture_output=True, text=True, timeout=900)
        report = None
        if os.path.exists(out):
            with open(out) as f:
                report = json.load(f)
        xml = open(junit).read() if os.path.exists(junit) else ""
        return p.returncode, p.stdout, p.stderr, report, xml


def failed_ids(report):
    return sorted(c["id"] for c in report["checks"] if c["status"] in ("fail", "xpass"))


def check_broken(defect, want):
    lib = os.path.join(BROKEN_DIR, "libcx_broken_%s.so" % defect)
    fixtures = os.path.join(FIXTURES, "outbound" if defect in OUTBOUND else "broken")
    rc, out, err, report, xml = run(["--connector-lib", lib, "--fixtures", fixtures])
    assert report is not None, (defect, rc, err)
    got = failed_ids(report)
    assert got == [want], "%s: flagged by %s, expected exactly [%s]\n%s" % (defect, got, want, out)
    assert rc == 1, (defect, rc, out, err)
    assert report["ok"] is False
    assert 'name="%s"' % want in xml and "<failure" in xml, xml
    # Every skip carries its reason.
    for c in report["checks"]:
        if c["status"] == "skip":
            assert c["message"].strip(), c


def test_each_broken_connector_is_flagged_by_exactly_its_check():
    problems = []
    for defect, want in sorted(EXPECTED.items()):
        try:
            check_broken(defect, want)
            print("ok   %-24s -> %s" % (defect, want))
        except AssertionError as e:
            problems.append(str(e))
            print("FAIL %-24s: %s" % (defect, str(e).splitlines()[0]))
    assert not problems, "\n\n".join(problems)


def test_good_connector_passes_as_built_in_and_as_shared_object():
    rc, out, err, report, _ = run(["--connector", "test", "--fixtures",
                                   os.path.join(FIXTURES, "test")])
    assert rc == 0 and failed_ids(report) == [], (rc, out, err)
    if GOOD_LIB:
        rc, out, err, report, _ = run(["--connector-lib", GOOD_LIB, "--fixtures",
                                       os.path.join(FIXTURES, "broken")])
        assert rc == 0 and failed_ids(report) == [], (rc, out, err)


def test_good_outbound_connector_passes_every_outbound_check():
    lib = os.path.join(BROKEN_DIR, "libcx_broken_outbound_ok.so")
    rc, out, err, report, _ = run(["--connector-lib", lib, "--fixtures",
                                   os.path.join(FIXTURES, "outbound")])
    assert rc == 0 and failed_ids(report) == [], (rc, out, err)
    st = {c["id"]: c["status"] for c in report["checks"]}
    for cid in ("outbound.success_returns_id", "outbound.transient_retried",
                "outbound.timeout_not_resent", "outbound.permanent_not_retried",
                "outbound.replay_not_resent"):
        assert st[cid] == "pass", (cid, st[cid], out)


def test_crash_is_reported_with_the_mutation_and_the_run_goes_on():
    lib = os.path.join(BROKEN_DIR, "libcx_broken_crashes_on_mutation.so")
    rc, out, err, report, _ = run(["--connector-lib", lib, "--fixtures",
                                   os.path.join(FIXTURES, "broken")])
    check = [c for c in report["checks"] if c["id"] == "robustness.mutated_fixtures"][0]
    assert "crashed" in check["message"] or "exited" in check["message"], check
    assert "type swap" in check["message"], check
    # The checks after the crash still ran.
    assert len(report["checks"]) == int(report["summary"]["total"]) > 20


def test_strict_mode_and_expected_failures():
    lib = os.path.join(BROKEN_DIR, "libcx_broken_key_phone.so")
    with tempfile.TemporaryDirectory(prefix="cx-conf-xf-") as d:
        xf = os.path.join(d, "expected-failures.txt")
        with open(xf, "w") as f:
            f.write("# check  reason\nparse.dedupe_keys_no_pii  known defect, ticket CX-1\n")
        rc, out, err, report, _ = run(["--connector-lib", lib, "--fixtures",
                                       os.path.join(FIXTURES, "broken"),
                                       "--expected-failures", xf])
        assert rc == 0, (rc, out, err)
        st = {c["id"]: c["status"] for c in report["checks"]}
        assert st["parse.dedupe_keys_no_pii"] == "xfail", st
        # An expected failure that passes fails the run (protovalidate style).
        rc, out, err, report, _ = run(["--connector", "test", "--fixtures",
                                       os.path.join(FIXTURES, "test"),
                                       "--expected-failures", xf])
        assert rc == 1 and failed_ids(report) == ["parse.dedupe_keys_no_pii"], (rc, out)
        # An entry without a reason is refused.
        with open(xf, "w") as f:
            f.write("parse.dedupe_keys_no_pii\n")
        rc, out, err, report, _ = run(["--connector", "test", "--fixtures",
                                       os.path.join(FIXTURES, "test"),
                                       "--expected-failures", xf])
        assert rc == 78 and "reason" in err, (rc, err)
    # Strict: the broken fixtures have no expect.json, so parse.expect_matches is skipped for
    # lack of input; strict mode fails it unless the skip is declared with a reason.
    good = GOOD_LIB or None
    if good:
        rc, out, err, report, _ = run(["--connector-lib", good, "--fixtures",
                                       os.path.join(FIXTURES, "broken"), "--strict"])
        assert rc == 1 and failed_ids(report) == ["parse.expect_matches"], (rc, out)
        rc, out, err, report, _ = run(["--connector-lib", good, "--fixtures",
                                       os.path.join(FIXTURES, "broken"), "--strict",
                                       "--skip", "parse.expect_matches=no expected values here"])
        assert rc == 0, (rc, out)
        rc, out, err, _, _ = run(["--connector-lib", good, "--fixtures",
                                  os.path.join(FIXTURES, "broken"), "--skip",
                                  "parse.expect_matches="])
        assert rc == 2, (rc, err)


def test_abi_mismatch_and_missing_entry_are_refused_before_running():
    rc, out, err, _, _ = run(["--connector-lib", "/nonexistent/libnothing.so", "--fixtures",
                              FIXTURES])
    assert rc == 78 and "cannot load" in err, (rc, err)
    lib = os.path.join(BROKEN_DIR, "libcx_broken_abi.so")
    rc, out, err, report, _ = run(["--connector-lib", lib, "--fixtures",
                                   os.path.join(FIXTURES, "broken")])
    assert rc == 78 and "ABI" in err and report is None, (rc, err)


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    passed = failed = 0
    for t in tests:
        try:
            t()
            passed += 1
            print("PASS", t.__name__)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print("FAIL", t.__name__, ":", e)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
