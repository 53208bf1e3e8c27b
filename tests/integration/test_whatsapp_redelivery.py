"""One WhatsApp batch delivered 100 times through `cx serve` with Redis: each item's handler
runs once.

fixtures/whatsapp/batch_multi_entry (two entries, four changes, five items: two messages, a
delivered status, an account review update and a reaction) is posted 100 times with its Meta
signature (`X-Hub-Signature-256` under the fixture's fake app secret) to `cx serve` in
production with a real redis-server and the built-in WhatsApp connector:

    a wave of 8 concurrent deliveries  (the handler sleeps, so 7 overlap the one that runs)
    20 sequential deliveries
    9 more waves of 8 concurrent ones  (100 in all)

The default handler appends each dedupe key it runs to a count file (`--count-file`, one
O_APPEND write per line); read outside the processes, the file must hold each of the five keys
of the fixture's expect.json exactly once. The same with two gateways sharing the Redis (the
deliveries alternate between them).

Each run is repeated in every handler mode `cx serve` can be put in: its production default,
inline and queued. In queued mode the handlers run after the 200, so the test waits (bounded,
never a timed assertion) until the count file is complete and the work queue is empty, stops
the gateways, and only then counts; Redis must hold no stream entry afterwards.

The response rule differs by mode (docs/pipeline.md): a delivery that arrives while another
holds the items' claims is answered 503 inline (those items `IN_PROGRESS`; the provider
retries, and dedupe makes that safe) and 200 `deduped` in queued mode. Every other delivery is
200, and the processed + queued items of all 100 responses add up to exactly five.

The mode each run actually got is read from the responses (`queued` items or not), and the
last check fails when a mode was never reached: how `cx serve` selects it has changed
(`CX_HANDLER_MODE` today, a `handler_mode` configuration key once it exists; see MODES).
"""

import collections
import http.client
import json
import os
import socket
import threading
import time

import cxtest
from cxtest import Redis, Serve, Workdir, metric, sign, wait_until

FIXTURES = os.path.join(cxtest.SOURCE_DIR, "fixtures", "whatsapp")
CASE = os.path.join(FIXTURES, "batch_multi_entry")
SECRETS = os.path.join(FIXTURES, "secrets")
ACCOUNTS = ["106540352242922", "102290129340398"]  # phone number id, WABA id (account updates)

WAVE = 8
SEQUENTIAL = 20
DELIVERIES = 100
HANDLER_DELAY_MS = 20   # per item: the first delivery's handlers outlast the overlapping ones
WAIT_S = 180            # the bound on every wait for asynchronous handlers (generous: CI is slow)

# (label, environment, configuration file): how `cx serve` is put in each mode. The
# configuration key is used when this build knows it (probed once, see main).
MODES = [("default", {}, None),
         ("inline", {"CX_HANDLER_MODE": "inline"}, {"handler_mode": "inline"}),
         ("queued", {"CX_HANDLER_MODE": "queued"}, {"handler_mode": "queued"})]

config_key_supported = False
observed_modes = set()


def load_case():
    with open(os.path.join(CASE, "request.json")) as f:
        req = json.load(f)
    with open(os.path.join(CASE, req["body_file"]), "rb") as f:
        body = f.read()
    with open(os.path.join(CASE, "expect.json")) as f:
        expect = json.load(f)
    with open(os.path.join(SECRETS, "whatsapp", "app_secret"), "rb") as f:
        secret = f.read().rstrip(b"\n")
    keys = [e["dedupeKey"] for e in expect["events"]]
    assert len(keys) == len(set(keys)) == expect["summary"]["total"] == 5, keys
    return req["path"], body, secret, keys


# ---- a minimal Redis client (RESP), to look at the store from outside ------------------------

def _read_reply(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise AssertionError("redis: " + rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise AssertionError(f"redis: unexpected reply {line!r}")


def redis_call(port, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(out)
        with s.makefile("rb") as f:
            return _read_reply(f)


def stream_lengths(port):
    """Every stream key in Redis and its length (XLEN: acknowledged entries are deleted)."""
    cursor, keys = "0", []
    while True:
        cursor, batch = redis_call(port, "SCAN", cursor, "TYPE", "stream", "COUNT", 1000)
        keys += batch
        if cursor == "0":
            return {k: redis_call(port, "XLEN", k) for k in sorted(set(keys))}


# ---- the run ------------------------------------------------------------------------------------

def post(port, path, body, secret):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def count_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def deliver_100_times(instances, env, config):
    path, body, secret, keys = load_case()
    redis = Redis()
    work = Workdir()
    count_file = work.file("handled.txt")
    gateways = []
    try:
        args = ["--env", "production", "--secrets", SECRETS, "--redis", redis.addr,
                "--connectors", "whatsapp", "--count-file", count_file,
                "--test-handler-delay-ms", str(HANDLER_DELAY_MS), "--log-level", "info"]
        for a in ACCOUNTS:
            args += ["--account", f"whatsapp:{a}=acme"]
        if config is not None:
            with open(work.file("serve.json"), "w") as f:
                json.dump(config, f)
            args += ["--config", work.file("serve.json")]
        for n in range(instances):
            gateways.append(Serve(work, args, env=env, name=f"gw{n}"))

        # The plan: for each delivery, its wave, or None when it is sent alone.
        waves = (DELIVERIES - SEQUENTIAL) // WAVE
        plan = [0] * WAVE + [None] * SEQUENTIAL + [w for w in range(1, waves) for _ in range(WAVE)]
        assert len(plan) == DELIVERIES, len(plan)

        responses = [None] * DELIVERIES
        errors = []

        def one(i):
            try:
                responses[i] = post(gateways[i % instances].port, path, body, secret)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"delivery {i}: {e!r}")

        i = 0
        while i < DELIVERIES:
            if plan[i] is None:
                one(i)
                i += 1
                continue
            barrier = threading.Barrier(WAVE)

            def concurrent(k):
                barrier.wait(30)
                one(k)

            threads = [threading.Thread(target=concurrent, args=(i + k,)) for k in range(WAVE)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            i += WAVE
        assert not errors, errors[:3]
        assert all(r is not None for r in responses)

        statuses = collections.Counter(s for s, _ in responses)
        sums = collections.Counter()
        for status, r in responses:
            s = r.get("summary") or {}
            for k in ("processed", "queued", "deduped", "failed"):
                sums[k] += s.get(k, 0)
        mode = "queued" if sums["queued"] else "inline"
        observed_modes.add(mode)

        # Exactly five items were taken on across the 100 responses, by one delivery or, inline,
        # split between overlapping ones (each ran only the items it claimed).
        assert sums["processed"] + sums["queued"] == len(keys), (sums, statuses)
        if mode == "queued":
            assert sums["processed"] == 0, sums
        for n, (status, r) in enumerate(responses):
            s = r["summary"]
            assert s["total"] == len(keys), (n, r)
            if status == 200:
                assert s["failed"] == 0, (n, r)
                assert s["processed"] + s["queued"] + s["deduped"] == len(keys), (n, r)
                continue
            # Only inline, and only in the first wave, can a delivery find items held by a
            # running one: 503, those items failed IN_PROGRESS, transient (nothing is
            # dead-lettered), and the provider's redelivery is answered from the store.
            assert status == 503 and mode == "inline" and plan[n] == 0, (n, status, mode, r)
            failed = [x for x in r["results"] if x.get("outcome") == "failed"]
            assert len(failed) == s["failed"] > 0, (n, r)
            assert all(x.get("errorCode") == "IN_PROGRESS" and x.get("permanent") is False
                       for x in failed), (n, r)
        # Everything after the first wave finds the items done or held by the queue: deduped.
        for n, (status, r) in enumerate(responses[WAVE:], WAVE):
            assert status == 200 and r["summary"]["deduped"] == len(keys), (n, status, r)

        # The handlers: wait (bounded) until the count file has every key, and in queued mode
        # until the work queue is empty, then stop the gateways and count.
        wait_until(lambda: len(count_lines(count_file)) >= len(keys), WAIT_S, 0.05,
                   what=f"{len(keys)} handler runs in {count_file}")
        if mode == "queued":
            complete_at = time.monotonic()

            def queue_empty():
                # Gauges are refreshed by each process every second: only a scrape taken well
                # after the count file was complete is evidence that nothing is left.
                if time.monotonic() < complete_at + 2.5:
                    return False
                for g in gateways:
                    m = g.metrics()
                    if "queue_depth" not in m:
                        return False
                    if any(metric(m, k) for k in ("queue_depth", "queue_pending",
                                                  "queue_scheduled")):
                        return False
                return True
            wait_until(queue_empty, WAIT_S, 0.1, what="an empty work queue")
        handled = sum(sum(v for k, v in g.metrics().items()
                          if k.startswith("serve_handled_total{")) for g in gateways)
        for g in gateways:
            assert g.stop() == 0, g.log_text()[-2000:]

        lines = count_lines(count_file)
        runs = collections.Counter(lines)
        assert runs == collections.Counter(keys), (
            f"handler runs per key: {dict(runs)}; expected each of {keys} once")
        assert handled == len(keys), handled
        leftover = {k: v for k, v in stream_lengths(redis.port).items() if v}
        assert not leftover, f"stream entries left in Redis: {leftover}"
        print(f"   {instances} gateway(s), {mode}: statuses {dict(statuses)}, items "
              f"processed {sums['processed']} queued {sums['queued']} deduped {sums['deduped']} "
              f"failed {sums['failed']}; handler runs {len(lines)} for {len(runs)} keys")
    except BaseException:
        for n, g in enumerate(gateways):
            print(f"   gateway {n} (exit {g.proc.poll()}), last log lines:\n"
                  + "\n".join(g.log_text().splitlines()[-8:]))
        raise
    finally:
        for g in gateways:
            g.stop()
        redis.cleanup()
        work.cleanup()


def probe_config_key():
    """Whether this build's `cx serve` takes `handler_mode` in its configuration file."""
    work = Workdir()
    try:
        with open(work.file("serve.json"), "w") as f:
            json.dump({"handler_mode": "inline"}, f)
        try:
            gw = Serve(work, ["--config", work.file("serve.json"), "--connectors", "whatsapp",
                              "--secrets", SECRETS])
        except AssertionError as e:
            if "handler_mode" in str(e):
                return False
            raise
        gw.stop()
        return True
    finally:
        work.cleanup()


def make_test(label, env, config, instances):
    def test():
        deliver_100_times(instances, env, config if config_key_supported else None)
    test.__name__ = (f"test_batch_100_times_{'one_gateway' if instances == 1 else 'two_gateways'}"
                     f"_{label}_mode")
    return test


def test_both_modes_were_exercised():
    assert observed_modes == {"inline", "queued"}, (
        f"only {sorted(observed_modes)} ran: the way cx serve selects its handler mode changed "
        f"(MODES in this file)")


if __name__ == "__main__":
    cxtest.require_binaries(redis=True)
    config_key_supported = probe_config_key()
    print(f"handler_mode configuration key: {'yes' if config_key_supported else 'no'}")
    cxtest.run([make_test(label, env, config, instances)
                for label, env, config in MODES for instances in (1, 2)]
               + [test_both_modes_were_exercised])
