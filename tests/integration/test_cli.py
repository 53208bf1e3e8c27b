"""`cx parse`, `cx validate`, `cx version`, `cx replay` errors and help, run as processes."""

import glob
import hashlib
import json
import os
import shutil
import tempfile

import cxtest
from cxtest import run_cx

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "cases", "test_batch")
NOW = "1764403200"

GOOD_DM = {
    "channel": {"channel": "test", "accountId": "acc-1"},
    "tenantId": "acme",
    "messageId": "m1",
    "conversation": {"id": "c1", "kind": "CONVERSATION_KIND_DIRECT"},
    "sender": {"id": "u1", "kind": "ACTOR_KIND_USER"},
    "direction": "MESSAGE_DIRECTION_INBOUND",
    "contentType": "MESSAGE_CONTENT_TYPE_TEXT",
    "occurredAt": "2025-11-29T08:00:00Z",
    "text": "hi",
}


def parse(*args, case=CASE):
    return run_cx(["parse", "--connector-lib", cxtest.TEST_LIB, "--request", case, "--now", NOW,
                   "--log-level", "off"] + list(args))


# ---- version --------------------------------------------------------------------------------

def test_version_is_stable_and_names_the_schema_digest():
    rc1, out1, _ = run_cx(["version"])
    rc2, out2, _ = run_cx(["version"])
    assert rc1 == 0 and rc2 == 0 and out1 == out2, (out1, out2)
    lines = out1.splitlines()
    assert len(lines) == 3, out1
    assert lines[0].startswith("cx ") and lines[0].count(".") == 2, lines[0]
    schemas = os.path.join(cxtest.SOURCE_DIR, "schemas")
    files = sorted(os.path.relpath(p, schemas)
                   for p in glob.glob(os.path.join(schemas, "**", "*.proto"), recursive=True))
    h = hashlib.sha256()
    for f in files:
        with open(os.path.join(schemas, f), "rb") as fh:
            h.update(fh.read())
    assert lines[1] == "schemas sha256:" + h.hexdigest(), (lines[1], h.hexdigest())
    assert lines[2].startswith("commit ") and len(lines[2]) > len("commit "), lines[2]
    rc, out, _ = run_cx(["--version"])
    assert rc == 0 and out == out1


# ---- validate -------------------------------------------------------------------------------

def test_validate_good_file_and_stdin():
    d = tempfile.mkdtemp(prefix="cx-it-")
    try:
        path = os.path.join(d, "dm.json")
        with open(path, "w") as f:
            json.dump(GOOD_DM, f)
        rc, out, err = run_cx(["validate", "cx.messaging.v1.DirectMessage", path])
        assert rc == 0 and out == "", (rc, out, err)
        rc, out, err = run_cx(["validate", "cx.messaging.v1.direct_message", "-"],
                              stdin=json.dumps(GOOD_DM).encode())
        assert rc == 0, (rc, out, err)
    finally:
        shutil.rmtree(d)


def test_validate_prints_every_violation():
    bad = dict(GOOD_DM)
    del bad["sender"]
    del bad["direction"]
    rc, out, err = run_cx(["validate", "cx.messaging.v1.DirectMessage", "-"],
                          stdin=json.dumps(bad).encode())
    assert rc == 1, (rc, out, err)
    lines = out.splitlines()
    assert "sender: required: is required" in lines, out
    assert "direction: required: is required" in lines, out
    assert all(line.count(": ") >= 2 for line in lines), out


def test_validate_decoding_errors_and_usage():
    rc, out, _ = run_cx(["validate", "cx.messaging.v1.DirectMessage", "-"],
                        stdin=b'{"messageId": "m1", "bogus": 1}')
    assert rc == 1 and out.startswith("bogus: json.unknown_field: "), out
    rc, out, _ = run_cx(["validate", "cx.messaging.v1.DirectMessage", "-"], stdin=b"{")
    assert rc == 1 and ": json.syntax: " in out, out
    rc, _, err = run_cx(["validate", "cx.nope.v1.Nothing", "-"], stdin=b"{}")
    assert rc == 2 and err.count("\n") == 1 and "unknown type" in err, err
    rc, _, err = run_cx(["validate", "cx.messaging.v1.DirectMessage", "/nonexistent/x.json"])
    assert rc == 1 and err.count("\n") == 1 and "/nonexistent/x.json" in err, err
    rc, _, err = run_cx(["validate"])
    assert rc == 2, err
    rc, out, _ = run_cx(["validate", "--list"])
    assert rc == 0 and "cx.messaging.v1.DirectMessage" in out


# ---- parse ----------------------------------------------------------------------------------

def test_parse_prints_the_expected_events():
    with open(os.path.join(CASE, "expect.json")) as f:
        expect = json.load(f)
    rc, out, err = parse()
    assert rc == 0, (rc, err)
    assert out.count("\n") == 1, "one JSON object on one line"
    got = json.loads(out)
    assert got["status"] == expect["status"]
    assert got["body"]["summary"] == expect["summary"], got["body"]
    failed = {str(r["index"]): r["errorCode"] for r in got["body"]["results"]
              if r["outcome"] == "failed"}
    assert failed == expect["failed"], failed
    events = [{"type": e["type"], "dedupeKey": e["dedupeKey"], "capability": e["capability"],
               "tenantId": e["tenantId"], "messageId": e["data"]["messageId"]}
              for e in got["events"]]
    assert events == expect["events"], events
    assert got["events"][0]["data"]["occurredAt"] == "2025-11-29T08:00:00Z"
    # Deterministic: the same bytes on a second run (pinned clock, fixed correlation id).
    assert parse()[1] == out


def test_parse_accounts_from_flags_and_unknown_accounts():
    d = tempfile.mkdtemp(prefix="cx-it-")
    try:
        case = os.path.join(d, "case")
        shutil.copytree(CASE, case)
        os.remove(os.path.join(case, "accounts.json"))
        rc, out, _ = parse(case=case)
        assert rc == 0
        got = json.loads(out)
        assert got["events"] == [], got
        codes = [r.get("errorCode") for r in got["body"]["results"]]
        assert codes == ["UNKNOWN_ACCOUNT"] * 3 + ["MALFORMED"], codes
        rc, out, _ = parse("--account", "test:acc-1=globex", "--connector", "test", case=case)
        got = json.loads(out)
        assert [e["tenantId"] for e in got["events"]] == ["globex", "globex"], got
        # request.json itself works as --request, and so does a bare argument.
        rc, out2, _ = run_cx(["parse", os.path.join(case, "request.json"), "--connector-lib",
                              cxtest.TEST_LIB, "--now", NOW, "--log-level", "off",
                              "--account", "test:acc-1=globex"])
        assert rc == 0 and out2 == out
    finally:
        shutil.rmtree(d)


def test_parse_bad_signature_and_handshake():
    d = tempfile.mkdtemp(prefix="cx-it-")
    try:
        # Another secret: the captured signature no longer verifies.
        rc, out, _ = parse("--secrets", d)
        got = json.loads(out)
        assert rc == 0 and got["status"] in (401, 503) and got["events"] == [], got
        case = os.path.join(d, "hs")
        os.makedirs(case)
        with open(os.path.join(case, "request.json"), "w") as f:
            json.dump({"method": "GET", "path": "/webhook/test?challenge=abc%20123"}, f)
        rc, out, _ = parse(case=case)
        got = json.loads(out)
        assert rc == 0 and got == {"status": 200, "body": "abc 123", "events": []}, got
    finally:
        shutil.rmtree(d)


def test_parse_bad_input_is_one_line_and_exit_1_or_2():
    d = tempfile.mkdtemp(prefix="cx-it-")
    try:
        rc, out, err = parse(case=os.path.join(d, "missing"))
        assert rc == 1 and out == "" and err.count("\n") == 1, (rc, err)
        with open(os.path.join(d, "request.json"), "w") as f:
            f.write('{"method": "POST", "path": "/webhook/test", "body_file": "nope.json"}')
        rc, _, err = parse(case=d)
        assert rc == 1 and "nope.json" in err and err.count("\n") == 1, err
        with open(os.path.join(d, "request.json"), "w") as f:
            f.write('{"method": "POST"')
        rc, _, err = parse(case=d)
        assert rc == 1 and "request.json" in err and err.count("\n") == 1, err
        rc, _, err = parse("--connector", "nope")
        assert rc == 2 and "no connector 'nope'" in err, err
        rc, _, err = run_cx(["parse", "--request", CASE, "--connector-lib", "/nonexistent.so"])
        assert rc == 78 and err.count("\n") == 1, (rc, err)
        rc, _, err = run_cx(["parse"])
        assert rc == 2 and "--request" in err, err
    finally:
        shutil.rmtree(d)


# ---- replay, help ----------------------------------------------------------------------------

def test_replay_errors():
    rc, _, err = run_cx(["replay", CASE])
    assert rc == 2 and "--to" in err, err
    rc, _, err = run_cx(["replay", CASE, "--to", "ftp://x"])
    assert rc == 2, err
    rc, _, err = run_cx(["replay", "/nonexistent-dir", "--to", "http://127.0.0.1:1"])
    assert rc == 1 and "no captured request" in err, err
    port = cxtest.free_port()
    rc, out, err = run_cx(["replay", CASE, "--to", f"http://127.0.0.1:{port}", "--json"])
    assert rc == 69, (rc, err)
    assert json.loads(out)["transportErrors"] == 1, out


def test_help_for_every_subcommand():
    for sub in ("serve", "parse", "replay", "validate", "version", "dlq"):
        rc, out, _ = run_cx([sub, "--help"])
        assert rc == 0 and out.startswith("usage: cx " + sub) and "example" in out, (sub, out)
        rc, out2, _ = run_cx(["help", sub])
        assert rc == 0 and out2 == out
    rc, out, _ = run_cx(["help"])
    assert rc == 0 and "exit codes" in out
    rc, _, err = run_cx(["frobnicate"])
    assert rc == 2 and err.count("\n") == 1, err
    rc, _, _ = run_cx([])
    assert rc == 2


if __name__ == "__main__":
    cxtest.require_binaries()
    cxtest.run([
        test_version_is_stable_and_names_the_schema_digest,
        test_validate_good_file_and_stdin,
        test_validate_prints_every_violation,
        test_validate_decoding_errors_and_usage,
        test_parse_prints_the_expected_events,
        test_parse_accounts_from_flags_and_unknown_accounts,
        test_parse_bad_signature_and_handshake,
        test_parse_bad_input_is_one_line_and_exit_1_or_2,
        test_replay_errors,
        test_help_for_every_subcommand,
    ])
