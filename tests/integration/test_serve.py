"""`cx serve` over real loopback HTTP with a real redis-server (production mode).

Batches, dedupe on replay, 401/400/413, /metrics moving, /ready following Redis, SIGHUP picking
up a rotated secret, SIGTERM draining a slow request, boot refusals, unauthenticated
connectors hidden in production, and the handler mode: production runs queued by default (the
response counts items `queued`, the process's workers run the handlers afterwards, so the tests
wait for them, bounded, never a timed assertion), `handler_mode` / CX_HANDLER_MODE select
inline, and the worker, retry and rate-limit keys reach the runtime.
"""

import http.client
import json
import os
import signal
import socket
import threading
import time

import cxtest
from cxtest import Redis, Serve, Workdir, batch, metric, sign, wait_until

SECRET = "s3cr3t-current"
MAX_BODY = 65536

redis = None
work = None
gw = None  # the shared production gateway


def production_args(extra=()):
    return ["--env", "production", "--config", work.file("serve.json"), "--redis", redis.addr,
            "--connector-lib", cxtest.TEST_LIB] + list(extra)


def setup():
    global redis, work, gw
    redis = Redis()
    work = Workdir(SECRET)
    with open(work.file("serve.json"), "w") as f:
        json.dump({"secrets_dir": "secrets", "max_body_bytes": MAX_BODY,
                   "accounts": {"test": {"acc-1": "acme", "acc-2": "globex"}},
                   "limits": {"max_connections": 256, "connection_timeout_s": 10},
                   "log_level": "info"}, f)
    gw = Serve(work, production_args())


def teardown():
    if gw:
        gw.stop()
    if redis:
        redis.cleanup()
    if work:
        work.cleanup()


# ---- boot -------------------------------------------------------------------------------------

def test_production_without_redis_exits_78_with_one_line():
    rc, out, err = cxtest.run_cx(["serve", "--env", "production", "--secrets", work.secrets,
                                  "--connector-lib", cxtest.TEST_LIB, "--listen", "127.0.0.1:0",
                                  "--log-level", "off"])
    assert rc == 78, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cx serve: ") and "Redis" in lines[0], err


def test_production_without_secret_exits_78():
    empty = Workdir()
    os.remove(os.path.join(empty.secrets, "test", "secret"))
    try:
        rc, _, err = cxtest.run_cx(["serve", "--env", "production", "--secrets", empty.secrets,
                                    "--redis", redis.addr, "--connector-lib", cxtest.TEST_LIB,
                                    "--connectors", "test",
                                    "--listen", "127.0.0.1:0", "--log-level", "off"])
        assert rc == 78, (rc, err)
        assert "test/secret" in err and len(err.strip().splitlines()) == 1, err
    finally:
        empty.cleanup()


def test_unknown_connector_in_list_exits_78():
    rc, _, err = cxtest.run_cx(["serve", "--secrets", work.secrets, "--connectors", "nope",
                                "--listen", "127.0.0.1:0", "--log-level", "off"])
    assert rc == 78, (rc, err)
    assert "no connector 'nope'" in err and len(err.strip().splitlines()) == 1, err


def test_unreachable_redis_exits_69():
    rc, _, err = cxtest.run_cx(["serve", "--env", "production", "--secrets", work.secrets,
                                "--redis", f"127.0.0.1:{cxtest.free_port()}",
                                "--connector-lib", cxtest.TEST_LIB, "--connectors", "test",
                                "--listen", "127.0.0.1:0", "--log-level", "off"])
    assert rc == 69, (rc, err)
    assert len(err.strip().splitlines()) == 1, err


def test_bad_flags_and_config_exit_2_and_78():
    rc, _, err = cxtest.run_cx(["serve", "--listen", "nowhere"])
    assert rc == 2 and err.startswith("cx serve: --listen"), (rc, err)
    rc, _, err = cxtest.run_cx(["serve", "--frobnicate"])
    assert rc == 2 and "unknown option '--frobnicate'" in err, (rc, err)
    bad = work.file("bad.json")
    with open(bad, "w") as f:
        f.write('{"listen": "127.0.0.1:0", "max_body_byte": 10}')
    rc, _, err = cxtest.run_cx(["serve", "--config", bad])
    assert rc == 78 and "max_body_byte" in err and len(err.strip().splitlines()) == 1, (rc, err)
    with open(bad, "w") as f:
        f.write('{"listen": ')
    rc, _, err = cxtest.run_cx(["serve", "--config", bad])
    assert rc == 78 and "bad.json" in err, (rc, err)
    rc, _, err = cxtest.run_cx(["serve"], env={"CX_ENV": "prod"})
    assert rc == 78 and "CX_ENV" in err, (rc, err)


def test_environment_overrides_file_and_flags_override_environment():
    # The file says development, CX_ENV says production (so Redis is required: 78), and the
    # flag says development again (so it starts).
    cfg = work.file("dev.json")
    with open(cfg, "w") as f:
        json.dump({"environment": "development", "listen": "127.0.0.1:0"}, f)
    rc, _, err = cxtest.run_cx(["serve", "--config", cfg, "--log-level", "off",
                                "--connector-lib", cxtest.TEST_LIB],
                               env={"CX_ENV": "production", "CX_SECRETS_DIR": work.secrets})
    assert rc == 78, (rc, err)
    s = Serve(work, ["--config", cfg, "--env", "development", "--connector-lib", cxtest.TEST_LIB],
              env={"CX_ENV": "production"})
    try:
        status, _, body = s.request("GET", "/health")
        assert status == 200 and json.loads(body) == {"status": "ok"}
    finally:
        assert s.stop() == 0


# ---- handler mode and the durable-processing keys ---------------------------------------------

def workers_line(s):
    return next((line for line in s.log_lines() if line.get("msg") == "queue workers started"),
                None)


def handled(*gateways):
    return sum(metric(g.metrics(), "serve_handled_total", **CAPS) for g in gateways)


def wait_handled(gateways, at_least):
    """Queued gateways sharing one Redis share its work queue: any of their workers may run an
    item, so the handler runs are summed over all of them (bounded wait, a guard only)."""
    wait_until(lambda: handled(*gateways) >= at_least, 60, step=0.05,
               what=f"{at_least} handler runs")
    return handled(*gateways)


def write_config(name, cfg):
    path = work.file(name)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def test_production_defaults_to_queued_mode():
    assert gw.listening_line()["handler_mode"] == "queued", gw.listening_line()
    w = workers_line(gw)
    assert w and w["workers"] == 8 * os.cpu_count(), w  # the library default: 8 per core


def test_development_defaults_to_inline_mode():
    s = Serve(work, ["--secrets", work.secrets, "--connector-lib", cxtest.TEST_LIB,
                     "--account", "test:acc-1=acme"], name="dev-inline")
    try:
        assert s.listening_line()["handler_mode"] == "inline", s.listening_line()
        assert workers_line(s) is None
        status, r = s.post_batch(batch("acc-1", ["dev1", "dev2"]), SECRET)
        assert status == 200 and r["summary"]["processed"] == 2 and r["summary"]["queued"] == 0, r
    finally:
        assert s.stop() == 0


def test_handler_mode_inline_when_configured_and_environment_overrides_it():
    cfg = write_config("inline.json", {"secrets_dir": "secrets", "handler_mode": "inline",
                                       "accounts": {"test": {"acc-1": "acme"}}})
    s = Serve(work, ["--env", "production", "--config", cfg, "--redis", redis.addr,
                     "--connector-lib", cxtest.TEST_LIB], name="prod-inline")
    try:
        assert s.listening_line()["handler_mode"] == "inline", s.listening_line()
        assert workers_line(s) is None
        status, r = s.post_batch(batch("acc-1", [f"in{i}" for i in range(5)]), SECRET)
        assert status == 200, r
        assert r["summary"] == {"total": 5, "processed": 5, "queued": 0, "deduped": 0,
                                "failed": 0}, r
        # Inline: the handlers ran before the answer.
        assert metric(s.metrics(), "serve_handled_total", **CAPS) == 5
    finally:
        assert s.stop() == 0
    before = handled(gw)
    s = Serve(work, ["--env", "production", "--config", cfg, "--redis", redis.addr,
                     "--connector-lib", cxtest.TEST_LIB], env={"CX_HANDLER_MODE": "queued"},
              name="prod-env-queued")
    try:
        assert s.listening_line()["handler_mode"] == "queued", s.listening_line()
        status, r = s.post_batch(batch("acc-1", ["env1", "env2"]), SECRET)
        assert status == 200 and r["summary"]["queued"] == 2, r
        assert wait_handled([gw, s], before + 2) == before + 2
    finally:
        assert s.stop() == 0


def test_bad_handler_mode_and_durable_keys_exit_78_naming_the_key():
    cases = [
        ({"handler_mode": "sometimes"}, "handler_mode"),
        ({"handler_mode": True}, "handler_mode"),
        ({"workers": "4"}, "workers"),
        ({"workers": 0}, "workers"),
        ({"tenant_concurrency": -1}, "tenant_concurrency"),
        ({"worker_claim_ttl_ms": 1.5}, "worker_claim_ttl_ms"),
        ({"queued_claim_ttl_ms": None}, "queued_claim_ttl_ms"),
        ({"retry": 3}, "retry"),
        ({"retry": {"max_attempt": 3}}, "retry.max_attempt"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"retry": {"base_delay_ms": 5000, "max_delay_ms": 100}}, "retry.base_delay_ms"),
        ({"rate_limits": {"tenant": "acme"}}, "rate_limits"),
        ({"rate_limits": ["acme"]}, "rate_limits[0]"),
        ({"rate_limits": [{"tenant": "acme", "per_sec": 1}]}, "rate_limits[0].per_sec"),
        ({"rate_limits": [{"tenant": "acme", "per_second": "1"}]}, "rate_limits[0].per_second"),
        ({"rate_limits": [{"per_day": 10}, {"tenant": ""}]}, "rate_limits[1].tenant"),
        ({"rate_limits": [{"tenant": "acme"}]}, "rate_limits[0]"),
        ({"handler_mode": "queued", "handler_deadline_ms": 20000,
          "worker_claim_ttl_ms": 15000}, "worker_claim_ttl_ms"),
    ]
    for cfg, key in cases:
        path = write_config("bad-durable.json", dict(cfg, listen="127.0.0.1:0"))
        rc, _, err = cxtest.run_cx(["serve", "--config", path, "--log-level", "off"])
        lines = err.strip().splitlines()
        assert rc == 78, (cfg, rc, err)
        assert len(lines) == 1 and lines[0].startswith("cx serve: ") and key in lines[0], (cfg,
                                                                                           err)
    rc, _, err = cxtest.run_cx(["serve", "--log-level", "off"], env={"CX_HANDLER_MODE": "fast"})
    assert rc == 78 and "CX_HANDLER_MODE" in err and len(err.strip().splitlines()) == 1, (rc, err)


def test_worker_retry_and_rate_limit_keys_reach_the_runtime():
    cfg = write_config("durable.json", {
        "secrets_dir": "secrets",
        "accounts": {"test": {"acc-1": "acme", "acc-2": "globex"}},
        "workers": 2, "tenant_concurrency": 1, "worker_claim_ttl_ms": 20000,
        "queued_claim_ttl_ms": 600000,
        "retry": {"max_attempts": 3, "base_delay_ms": 200, "max_delay_ms": 5000, "max_age_s": 600},
        # globex: 20 items/s, one at once; acme: no limit
        "rate_limits": [{"tenant": "globex", "per_second": 20, "burst": 1},
                        {"tenant": "*", "capability": "inbound_messages", "per_day": 1000000}]})
    before = handled(gw)
    s = Serve(work, ["--env", "production", "--config", cfg, "--redis", redis.addr,
                     "--connector-lib", cxtest.TEST_LIB], name="durable-keys")
    try:
        w = workers_line(s)
        assert w, s.log_text()[-2000:]
        assert (w["workers"], w["tenant_concurrency"], w["worker_claim_ttl_ms"]) == (2, 1, 20000), w
        assert (w["retry_max_attempts"], w["retry_base_delay_ms"], w["retry_max_delay_ms"],
                w["retry_max_age_s"]) == (3, 200, 5000, 600), w
        # One batch of 10 for the limited tenant: all queued (200), the first admitted at once,
        # the other 9 delayed to their reserved slots (50 ms apart), none dropped.
        status, r = s.post_batch(batch("acc-2", [f"rl{i}" for i in range(10)]), SECRET)
        assert status == 200 and r["summary"]["queued"] == 10, r
        status, r = s.post_batch(batch("acc-1", [f"un{i}" for i in range(10)]), SECRET)
        assert status == 200 and r["summary"]["queued"] == 10, r
        m = s.metrics()
        assert metric(m, "rate_limited_total", tenant="globex") == 9, m
        assert metric(m, "rate_limited_total", tenant="acme") == 0, m
        assert wait_handled([gw, s], before + 20) == before + 20
    finally:
        assert s.stop() == 0


# ---- the gateway ------------------------------------------------------------------------------

def test_health_ready_metrics_and_404():
    status, headers, body = gw.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["content-type"] == "application/json"
    status, _, body = gw.request("GET", "/ready")
    assert status == 200, body
    status, headers, body = gw.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    status, _, body = gw.request("GET", "/nope")
    assert status == 404 and json.loads(body)["errorCode"] == "NOT_FOUND"
    status, _, body = gw.request("POST", "/webhook/unknown-connector", b"{}")
    assert status == 404, (status, body)
    status, headers, body = gw.request("DELETE", "/health")
    assert status == 405 and "GET" in headers.get("allow", "")


CAPS = {"connector": "test", "capability": "inbound_messages"}


def test_batch_queued_run_by_the_workers_then_deduped_on_replay():
    before = metric(gw.metrics(), "serve_handled_total", **CAPS)
    body = batch("acc-1", [f"b{i}" for i in range(10)])
    status, r = gw.post_batch(body, SECRET)
    assert status == 200, r
    assert r["summary"] == {"total": 10, "processed": 0, "queued": 10, "deduped": 0,
                            "failed": 0}, r
    assert r["results"][0]["dedupeKey"] == "dm:test:acc-1:msg:b0"
    assert all(x["outcome"] == "queued" for x in r["results"]), r
    gw.wait_metric("serve_handled_total", before + 10, **CAPS)
    status, r = gw.post_batch(body, SECRET)
    assert status == 200 and r["summary"]["deduped"] == 10 and r["summary"]["queued"] == 0, r
    # Deduped, so nothing ran again (the replay queued nothing that could still run).
    assert metric(gw.metrics(), "serve_handled_total", **CAPS) == before + 10


def test_unknown_account_fails_alone():
    body = json.dumps({"account": "acc-x", "items": [{"id": "u1", "text": "x"}]}).encode()
    status, r = gw.post_batch(body, SECRET)
    assert status == 200 and r["summary"]["failed"] == 1, r
    assert r["results"][0]["errorCode"] == "UNKNOWN_ACCOUNT", r


def dlq(*args, env=None):
    rc, out, err = cxtest.run_cx(["dlq"] + list(args) + ["--redis", redis.addr,
                                                         "--env", "production"], env=env)
    return rc, out, err


def test_cx_dlq_list_show_replay_purge():
    # An item of an unmapped account is dead-lettered (invalid, UNKNOWN_ACCOUNT) in the
    # request; `cx dlq` sees it in the shared Redis store.
    body = json.dumps({"account": "acc-z", "items": [{"id": "z1", "from": "+14155550123",
                                                      "text": "x"}]}).encode()
    status, r = gw.post_batch(body, SECRET)
    assert status == 200 and r["summary"]["failed"] == 1, r
    rc, out, err = dlq("list", "--json")
    assert rc == 0, (rc, err)
    listed = json.loads(out)
    mine = [d for d in listed["items"] if d["accountId"] == "acc-z"]
    assert len(mine) == 1 and listed["total"] >= 1, listed
    d = mine[0]
    assert (d["reason"], d["errorCode"], d["errorClass"]) == ("invalid", "UNKNOWN_ACCOUNT",
                                                              "config"), d
    rc, out, err = dlq("list")
    assert rc == 0 and d["id"] in out and "dead letters" in out, (rc, out, err)
    rc, out, err = dlq("show", d["id"])
    assert rc == 0, (rc, err)
    shown = json.loads(out)
    assert shown["id"] == d["id"] and shown["event"]["messageId"] == "z1", shown
    # Replayed while the account is still unknown: refused, kept.
    rc, out, err = dlq("replay", d["id"], "--secrets", work.secrets)
    assert rc == 1 and "not replayed" in out and "UNKNOWN_ACCOUNT" in out, (rc, out, err)
    # With the account mapped: claimed, queued, run once by the gateway's workers.
    before = metric(gw.metrics(), "serve_handled_total", **CAPS)
    rc, out, err = dlq("replay", d["id"], "--secrets", work.secrets, "--account",
                       "test:acc-z=acme")
    assert rc == 0 and out.strip() == f"{d['id']}: queued", (rc, out, err)
    gw.wait_metric("serve_handled_total", before + 1, **CAPS)
    rc, _, err = dlq("show", d["id"])
    assert rc == 1, (rc, err)  # replayed: no longer a dead letter
    # Purge: everything, then the store is empty.
    assert gw.post_batch(batch("acc-y", ["y1", "y2"]), SECRET)[1]["summary"]["failed"] == 2
    rc, out, err = dlq("purge", "--all")
    assert rc == 0 and out.startswith("removed "), (rc, out, err)
    rc, out, err = dlq("list", "--json")
    assert rc == 0 and json.loads(out)["total"] == 0, out
    # Usage and configuration errors.
    rc, _, err = cxtest.run_cx(["dlq", "frobnicate", "--redis", redis.addr])
    assert rc == 2, (rc, err)
    rc, _, err = cxtest.run_cx(["dlq", "show", "--redis", redis.addr])
    assert rc == 2, (rc, err)
    rc, _, err = cxtest.run_cx(["dlq", "list"], env={"CX_REDIS": ""})
    assert rc == 78 and "--redis" in err, (rc, err)


def test_bad_signature_is_401():
    body = batch("acc-1", ["s1"])
    status, r = gw.post_batch(body, "wrong-secret")
    assert status == 401 and r["errorCode"] == "BAD_SIGNATURE", r
    status, r = gw.post_batch(body, None)
    assert status == 401, r


def test_malformed_body_is_400():
    body = b"this is not json"
    status, r = gw.post_batch(body, SECRET)
    assert status == 400 and r["errorCode"] == "MALFORMED", r


def test_body_over_the_limit_is_413():
    body = b'{"account":"acc-1","items":[' + b" " * (MAX_BODY + 10) + b"]}"
    status, r = gw.post_batch(body, SECRET)
    assert status == 413 and r["errorCode"] == "TOO_LARGE", r
    # Without a Content-Length (chunked), the limit is enforced on what arrives.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    chunks = (b"x" * 4096 for _ in range(MAX_BODY // 4096 + 4))
    conn.request("POST", "/webhook/test", body=chunks,
                 headers={"X-Test-Signature": "sha256=00"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413, resp.status
    assert json.loads(resp.read())["errorCode"] == "TOO_LARGE"
    conn.close()
    # Exactly at the limit is fine (and then fails on its signature, not its size).
    body = b" " * MAX_BODY
    status, _ = gw.post_batch(body, "wrong")
    assert status == 401, status


def test_metrics_counters_move():
    before = gw.metrics()
    body = batch("acc-2", [f"m{i}" for i in range(3)])
    assert gw.post_batch(body, SECRET)[0] == 200
    assert gw.post_batch(body, SECRET)[0] == 200
    gw.post_batch(body, "wrong")
    after = gw.metrics()

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("events_queued_total", **CAPS) == 3
    assert delta("events_deduped_total", **CAPS) == 3
    gw.wait_metric("events_processed_total", metric(before, "events_processed_total", **CAPS) + 3,
                   **CAPS)
    after = gw.metrics()
    assert delta("events_processed_total", **CAPS) == 3
    assert delta("serve_handled_total", **CAPS) == 3
    assert delta("webhook_requests_total", connector="test", status="200") == 2
    assert delta("webhook_requests_total", connector="test", status="401") == 1
    assert delta("http_requests_total", route="webhook", method="POST", status="200") == 2
    assert delta("http_requests_total", route="webhook", method="POST", status="401") == 1
    # The scrape before this one was counted too.
    assert delta("http_requests_total", route="metrics", method="GET", status="200") >= 1


def test_cx_replay_resigns_and_dedupes():
    case = work.file("replay-case")
    os.makedirs(case, exist_ok=True)
    body = batch("acc-1", [f"r{i}" for i in range(10)])
    with open(os.path.join(case, "body.json"), "wb") as f:
        f.write(body)
    with open(os.path.join(case, "request.json"), "w") as f:
        json.dump({"method": "POST", "path": "/webhook/test",
                   "headers": {"Content-Type": "application/json",
                               "X-Test-Signature": sign("the-provider-secret", body)},
                   "body_file": "body.json"}, f)
    url = f"http://127.0.0.1:{gw.port}"
    # As captured, the provider's signature does not match this gateway's secret.
    rc, out, err = cxtest.run_cx(["replay", case, "--to", url, "--json"])
    assert rc == 0, (rc, err)
    s = json.loads(out)
    assert s["sent"] == 1 and s["statuses"] == {"401": 1}, s
    # Re-signed with the gateway's secret: processed, then deduped.
    rc, out, err = cxtest.run_cx(["replay", case, "--to", url, "--secrets", work.secrets,
                                  "--json"])
    assert rc == 0, (rc, err)
    s = json.loads(out)
    assert s["statuses"] == {"200": 1} and s["items"]["queued"] == 10, s
    rc, out, err = cxtest.run_cx(["replay", case, case, "--to", url, "--secrets", work.secrets,
                                  "--concurrency", "2", "--rate", "50"])
    assert rc == 0, (rc, err)
    assert "sent        2 requests" in out and "deduped 20" in out and "p99" in out, out


def test_sighup_picks_up_rotated_secret():
    new = "s3cr3t-rotated"
    assert gw.post_batch(batch("acc-1", ["h0"]), SECRET)[0] == 200  # the old one is cached
    work.write_secret("test", "secret", new)
    status, _ = gw.post_batch(batch("acc-1", ["h1"]), new)
    assert status == 401, "the secret changed before SIGHUP"
    n = gw.log_text().count("secrets reloaded")
    gw.signal(signal.SIGHUP)
    wait_until(lambda: gw.log_text().count("secrets reloaded") > n, what="secrets reloaded")
    status, r = gw.post_batch(batch("acc-1", ["h1"]), new)
    assert status == 200 and r["summary"]["queued"] == 1, r
    assert gw.post_batch(batch("acc-1", ["h2"]), SECRET)[0] == 401
    # Rotation with the previous value beside it: both are accepted.
    work.write_secret("test", "secret.previous", new)
    work.write_secret("test", "secret", SECRET)
    gw.signal(signal.SIGHUP)
    wait_until(lambda: gw.log_text().count("secrets reloaded") > n + 1, what="second reload")
    assert gw.post_batch(batch("acc-1", ["h3"]), SECRET)[0] == 200
    assert gw.post_batch(batch("acc-1", ["h4"]), new)[0] == 200


def test_ready_follows_redis():
    assert gw.request("GET", "/ready")[0] == 200
    redis.stop()
    try:
        wait_until(lambda: gw.request("GET", "/ready")[0] == 503, 15, what="/ready 503")
        status, body = gw.post_batch(batch("acc-1", ["d1"]), SECRET)
        assert status == 503, (status, body)
        assert gw.request("GET", "/health")[0] == 200  # alive, just not ready
    finally:
        redis.restart()
    wait_until(lambda: gw.request("GET", "/ready")[0] == 200, 15, what="/ready 200 again")
    before = metric(gw.metrics(), "serve_handled_total", **CAPS)
    status, r = gw.post_batch(batch("acc-1", ["d1"]), SECRET)
    assert status == 200 and r["summary"]["queued"] == 1, r
    # The workers found the restarted (empty) Redis again: the item runs.
    gw.wait_metric("serve_handled_total", before + 1, **CAPS)


# ---- unauthenticated connectors, signals --------------------------------------------------------

def test_unauthenticated_connector_hidden_in_production():
    if not cxtest.NOAUTH_LIB:
        return
    args = production_args(["--connector-lib", cxtest.NOAUTH_LIB])
    s = Serve(work, args, name="noauth")
    try:
        status, _, body = s.request("POST", "/webhook/noauth", b"{}")
        assert status == 404, (status, body)
        assert any(line.get("connector") == "noauth" and line.get("outcome") == "hidden"
                   for line in s.log_lines()), s.log_text()
        assert s.post_batch(batch("acc-1", ["n1"]), SECRET)[0] == 200  # the others still run
    finally:
        assert s.stop() == 0
    cfg = work.file("expose.json")
    with open(cfg, "w") as f:
        json.dump({"secrets_dir": "secrets", "expose_unauthenticated_connectors": True}, f)
    s = Serve(work, ["--env", "production", "--config", cfg, "--redis", redis.addr,
                     "--connector-lib", cxtest.TEST_LIB, "--connector-lib", cxtest.NOAUTH_LIB],
              name="expose")
    try:
        status, _, body = s.request("POST", "/webhook/noauth", b"{}")
        assert status == 200 and json.loads(body)["summary"]["total"] == 0, (status, body)
    finally:
        assert s.stop() == 0


def test_concurrent_webhooks_share_one_pipeline_call():
    """Requests that arrive while the pipeline thread is busy wait in the gateway's queue and
    are then run together, in one call (one claim and one completion round trip for all);
    each still gets its own answer, and every item runs once."""
    with open(work.file("batching.json"), "w") as f:
        json.dump({"pipeline_threads": 1, "handler_mode": "inline"}, f)
    s = Serve(work, ["--config", work.file("batching.json"), "--secrets", work.secrets,
                     "--connector-lib", cxtest.TEST_LIB, "--account", "test:acc-1=acme",
                     "--test-handler-delay-ms", "100"], name="batching")
    try:
        results = {}

        def post(i):
            results[i] = s.post_batch(batch("acc-1", [f"b{i}-0", f"b{i}-1"]), SECRET)

        first = threading.Thread(target=post, args=(0,))
        first.start()
        # The first request is inside its slow handlers; the others queue behind it.
        wait_until(lambda: metric(s.metrics(), "serve_handled_total", connector="test",
                                  capability="inbound_messages") >= 1, 10,
                   what="the first handler")
        rest = [threading.Thread(target=post, args=(i,)) for i in range(1, 9)]
        for t in rest:
            t.start()
        for t in [first] + rest:
            t.join(30)
        for i in range(9):
            status, body = results[i]
            assert status == 200, (i, status, body)
            assert body["summary"]["processed"] == 2, (i, body)
        m = s.metrics()
        assert metric(m, "serve_handled_total", connector="test",
                      capability="inbound_messages") == 18
        calls = metric(m, "http_batch_requests_count", route="webhook")
        assert metric(m, "http_batch_requests_sum", route="webhook") == 9
        # Fewer calls than requests: some call took several of them.
        assert calls < 9, calls
        assert metric(m, "http_batch_requests_bucket", route="webhook", le="1") < calls
    finally:
        s.stop()


def test_sigterm_drains_a_slow_request():
    s = Serve(work, ["--secrets", work.secrets, "--connector-lib", cxtest.TEST_LIB,
                     "--account", "test:acc-1=acme", "--test-handler-delay-ms", "1500"],
              name="drain")
    result = {}

    def slow():
        try:
            result["status"], result["body"] = s.post_batch(batch("acc-1", ["slow"]), SECRET)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)  # the request is inside its 1.5 s handler
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in s.log_text(), 5, what="the draining log line")
    # No new connections while draining.
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=2) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = c.recv(100)
        refused = got == b""
    except OSError:
        refused = True
    assert refused, "a new connection was served while draining"
    rc = s.wait(15)
    t.join(15)
    assert result.get("status") == 200, result
    assert result["body"]["summary"]["processed"] == 1, result
    assert rc == 0, (rc, s.log_text()[-2000:])
    assert time.monotonic() - t0 < 10
    assert "drained; exiting" in s.log_text()
    s.stop()


def test_drain_deadline_bounds_shutdown():
    cfg = work.file("drain.json")
    with open(cfg, "w") as f:
        json.dump({"secrets_dir": "secrets", "drain_timeout_s": 1}, f)
    s = Serve(work, ["--config", cfg, "--connector-lib", cxtest.TEST_LIB,
                     "--account", "test:acc-1=acme", "--test-handler-delay-ms", "4000"],
              name="deadline")
    t = threading.Thread(target=lambda: _ignore(s.post_batch, batch("acc-1", ["stuck"]), SECRET))
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    rc = s.wait(10)
    elapsed = time.monotonic() - t0
    t.join(10)
    assert rc == 70, (rc, s.log_text()[-1000:])
    assert 0.9 < elapsed < 3, elapsed
    assert '"outcome":"abandoned"' in s.log_text() and '"in_flight":1' in s.log_text()
    s.stop()


def _ignore(fn, *args):
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the connection is cut on purpose
        pass


if __name__ == "__main__":
    cxtest.require_binaries(redis=True)
    setup()
    try:
        cxtest.run([
            test_production_without_redis_exits_78_with_one_line,
            test_production_without_secret_exits_78,
            test_unknown_connector_in_list_exits_78,
            test_unreachable_redis_exits_69,
            test_bad_flags_and_config_exit_2_and_78,
            test_environment_overrides_file_and_flags_override_environment,
            test_production_defaults_to_queued_mode,
            test_development_defaults_to_inline_mode,
            test_handler_mode_inline_when_configured_and_environment_overrides_it,
            test_bad_handler_mode_and_durable_keys_exit_78_naming_the_key,
            test_worker_retry_and_rate_limit_keys_reach_the_runtime,
            test_health_ready_metrics_and_404,
            test_batch_queued_run_by_the_workers_then_deduped_on_replay,
            test_unknown_account_fails_alone,
            test_cx_dlq_list_show_replay_purge,
            test_bad_signature_is_401,
            test_malformed_body_is_400,
            test_body_over_the_limit_is_413,
            test_metrics_counters_move,
            test_cx_replay_resigns_and_dedupes,
            test_sighup_picks_up_rotated_secret,
            test_ready_follows_redis,
            test_unauthenticated_connector_hidden_in_production,
            test_concurrent_webhooks_share_one_pipeline_call,
            test_sigterm_drains_a_slow_request,
            test_drain_deadline_bounds_shutdown,
        ])
    finally:
        teardown()
