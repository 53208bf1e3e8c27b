#!/usr/bin/env python3
"""`cx parse` on every fixture yields exactly its expect.json.

Walks fixtures/<provider>/<case>/ (every directory holding request.json and expect.json; the
`secrets` directories are skipped), runs

    cx parse --request <case> --secrets fixtures/<provider>/secrets --now <conformance.json now>
             --account <every account of fixtures/<provider>/accounts.json> --log-level off

and compares the printed object with expect.json:

    status      the HTTP status (always)
    errorCode   the request-level error code of a refused request (401, 400, ...)
    body        the exact response body of a handshake (text)
    summary     the batch summary, exactly
    failed      {"<index>": "<errorCode>"} of the failed items, exactly
    events      the items that did not fail, in order (deduped ones included): type, dedupeKey,
                capability and tenantId, and any other key is a field of the event's proto3
                JSON (`data`), compared exactly, a sub-object whole; the same format
                cx-conformance reads (parse.expect_matches). An older form, "fields": {...}
                compared as a subset of `data`, is still read here (cx-conformance does not)

Each case runs twice and must print the same bytes (pinned clock, fixed correlation id).

    python3 tests/adapters/test_fixtures.py [--cx PATH] [--fixtures DIR] [CASE_SUBSTRING...]

The cx binary comes from --cx or $CX_BIN. Exit 0 when every case matches, 1 otherwise (each
mismatch is printed with its case and JSON path). Python 3 standard library only.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cases(fixtures, filters):
    for provider in sorted(os.listdir(fixtures)):
        pdir = os.path.join(fixtures, provider)
        if not os.path.isdir(pdir):
            continue
        for dirpath, dirnames, filenames in os.walk(pdir):
            dirnames[:] = sorted(d for d in dirnames if d != "secrets")
            if "request.json" in filenames and "expect.json" in filenames:
                name = os.path.relpath(dirpath, fixtures)
                if not filters or any(f in name for f in filters):
                    yield provider, pdir, dirpath, name


def provider_args(pdir):
    args = []
    secrets = os.path.join(pdir, "secrets")
    if os.path.isdir(secrets):
        args += ["--secrets", secrets]
    conf = os.path.join(pdir, "conformance.json")
    now = None
    if os.path.isfile(conf):
        with open(conf) as f:
            now = json.load(f).get("now")
    args += ["--now", str(now if now is not None else 1764403200)]
    acc = os.path.join(pdir, "accounts.json")
    if os.path.isfile(acc):
        with open(acc) as f:
            for connector, accounts in sorted(json.load(f).items()):
                for account, tenant in sorted(accounts.items()):
                    args += ["--account", "%s:%s=%s" % (connector, account, tenant)]
    return args


def subset(expected, actual, path, errors):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            errors.append("%s: expected an object, got %r" % (path, actual))
            return
        for k, v in expected.items():
            if k not in actual:
                errors.append("%s.%s: missing (expected %r)" % (path, k, v))
            else:
                subset(v, actual[k], "%s.%s" % (path, k), errors)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            errors.append("%s: expected %d items, got %r" % (path, len(expected), actual))
            return
        for i, (e, a) in enumerate(zip(expected, actual)):
            subset(e, a, "%s[%d]" % (path, i), errors)
    else:
        exact(expected, actual, path, errors)


def exact(expected, actual, path, errors):
    """Equality as JSON (numbers by value), naming the first differing path."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            errors.append("%s: expected %r, got %r" % (path, expected, actual))
            return
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                errors.append("%s.%s: missing (expected %r)" % (path, k, expected[k]))
            elif k not in expected:
                errors.append("%s.%s: not expected (got %r)" % (path, k, actual[k]))
            else:
                exact(expected[k], actual[k], "%s.%s" % (path, k), errors)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            errors.append("%s: expected %d items, got %r" % (path, len(expected), actual))
            return
        for i, (e, a) in enumerate(zip(expected, actual)):
            exact(e, a, "%s[%d]" % (path, i), errors)
    elif isinstance(expected, bool) or isinstance(actual, bool):
        if expected is not actual:
            errors.append("%s: expected %r, got %r" % (path, expected, actual))
    elif isinstance(expected, float) or (isinstance(expected, int) and isinstance(actual, float)):
        if not isinstance(actual, (int, float)) or not math.isclose(expected, actual, rel_tol=1e-12):
            errors.append("%s: expected %r, got %r" % (path, expected, actual))
    elif expected != actual:
        errors.append("%s: expected %r, got %r" % (path, expected, actual))


def check(expect, got):
    errors = []
    if got.get("status") != expect["status"]:
        errors.append("status: expected %r, got %r" % (expect["status"], got.get("status")))
    body = got.get("body")
    if "errorCode" in expect:
        code = body.get("errorCode") if isinstance(body, dict) else None
        if code != expect["errorCode"]:
            errors.append("body.errorCode: expected %r, got %r" % (expect["errorCode"], code))
    if "body" in expect:
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        if text != expect["body"]:
            errors.append("body: expected %r, got %r" % (expect["body"], text))
    if "summary" in expect:
        summary = body.get("summary") if isinstance(body, dict) else None
        if summary != expect["summary"]:
            errors.append("body.summary: expected %r, got %r" % (expect["summary"], summary))
    if "failed" in expect:
        results = body.get("results", []) if isinstance(body, dict) else []
        failed = {str(r["index"]): r.get("errorCode") for r in results if r.get("outcome") == "failed"}
        if failed != expect["failed"]:
            errors.append("failed items: expected %r, got %r" % (expect["failed"], failed))
    # The events are the items that did not fail, in order, deduped ones included (as
    # cx-conformance counts them); their data comes from the handler's copy with the same key.
    handled = got.get("events", [])
    by_key = {}
    for e in handled:
        by_key.setdefault(e.get("dedupeKey"), e)
    events = []
    results = body.get("results", []) if isinstance(body, dict) else []
    for r in results:
        if r.get("outcome") == "failed":
            continue
        e = dict(by_key.get(r.get("dedupeKey"), {}))
        e["type"] = r.get("type")
        e["dedupeKey"] = r.get("dedupeKey")
        events.append(e)
    if not results:
        events = handled
    want = expect.get("events", [])
    if len(events) != len(want):
        errors.append("events: expected %d, got %d: %s" % (
            len(want), len(events), [(e.get("type"), e.get("dedupeKey")) for e in events][:20]))
    for i, (w, e) in enumerate(zip(want, events)):
        for k, v in w.items():
            if k == "fields":
                # Older form: a subset of `data`. cx-conformance does not read it: prefer the
                # flat form above.
                subset(v, e.get("data"), "events[%d].data" % i, errors)
                continue
            if k in ("type", "dedupeKey", "capability", "tenantId"):
                got = e.get(k)
            else:
                got = (e.get("data") or {}).get(k)
            exact(v, got, "events[%d].%s" % (i, k), errors)
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cx", default=os.environ.get("CX_BIN"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "fixtures"))
    ap.add_argument("filters", nargs="*")
    a = ap.parse_args()
    if not a.cx:
        print("test_fixtures: give the cx binary with --cx or CX_BIN", file=sys.stderr)
        return 2
    n = failed = 0
    for provider, pdir, case, name in cases(a.fixtures, a.filters):
        n += 1
        with open(os.path.join(case, "expect.json")) as f:
            expect = json.load(f)
        cmd = [a.cx, "parse", "--request", case, "--log-level", "off"] + provider_args(pdir)
        runs = []
        for _ in range(2):
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
            runs.append(p)
        p = runs[0]
        if p.returncode != 0:
            failed += 1
            print("FAIL %s: cx parse exited %d: %s" % (name, p.returncode, p.stderr.decode(errors="replace").strip()))
            continue
        errors = check(expect, json.loads(p.stdout))
        if runs[1].stdout != p.stdout:
            errors.append("not deterministic: a second run printed other bytes")
        if errors:
            failed += 1
            print("FAIL %s" % name)
            for e in errors[:30]:
                print("    " + e)
        else:
            print("ok   %s" % name)
    if n == 0:
        print("test_fixtures: no fixture with expect.json under %s" % a.fixtures, file=sys.stderr)
        return 1
    print("%d cases, %d failed" % (n, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
