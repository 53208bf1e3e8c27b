"""`cx serve` over real loopback HTTP with a real redis-server (production mode).

Batches, dedupe on replay, 401/400/413, /metrics moving, /ready following Redis, SIGHUP picking
up a rotated secret, SIGTERM draining a slow request, boot refusals, and unauthenticated
connectors hidden in production.
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


def test_batch_processed_then_deduped_on_replay():
    body = batch("acc-1", [f"b{i}" for i in range(10)])
    status, r = gw.post_batch(body, SECRET)
    assert status == 200, r
    assert r["summary"] == {"total": 10, "processed": 10, "queued": 0, "deduped": 0,
                            "failed": 0}, r
    assert r["results"][0]["dedupeKey"] == "dm:test:acc-1:msg:b0"
    status, r = gw.post_batch(body, SECRET)
    assert status == 200 and r["summary"]["deduped"] == 10 and r["summary"]["processed"] == 0, r


def test_unknown_account_fails_alone():
    body = json.dumps({"account": "acc-x", "items": [{"id": "u1", "text": "x"}]}).encode()
    status, r = gw.post_batch(body, SECRET)
    assert status == 200 and r["summary"]["failed"] == 1, r
    assert r["results"][0]["errorCode"] == "UNKNOWN_ACCOUNT", r


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

    caps = {"connector": "test", "capability": "inbound_messages"}
    assert delta("events_processed_total", **caps) == 3
    assert delta("events_deduped_total", **caps) == 3
    assert delta("serve_handled_total", **caps) == 3
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
    assert s["statuses"] == {"200": 1} and s["items"]["processed"] == 10, s
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
    assert status == 200 and r["summary"]["processed"] == 1, r
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
    status, r = gw.post_batch(batch("acc-1", ["d1"]), SECRET)
    assert status == 200 and r["summary"]["processed"] == 1, r


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
            test_health_ready_metrics_and_404,
            test_batch_processed_then_deduped_on_replay,
            test_unknown_account_fails_alone,
            test_bad_signature_is_401,
            test_malformed_body_is_400,
            test_body_over_the_limit_is_413,
            test_metrics_counters_move,
            test_cx_replay_resigns_and_dedupes,
            test_sighup_picks_up_rotated_secret,
            test_ready_follows_redis,
            test_unauthenticated_connector_hidden_in_production,
            test_sigterm_drains_a_slow_request,
            test_drain_deadline_bounds_shutdown,
        ])
    finally:
        teardown()
