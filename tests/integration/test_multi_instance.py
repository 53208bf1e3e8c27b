"""Three `cx serve` processes sharing one Redis: exactly-once handler runs across instances.

The same 1,000 items (100 signed batches of 10) are each delivered 10 times, the deliveries of
one batch spread over the three gateways and all 1,000 requests sent concurrently in a shuffled
order. The default handler of every process appends each processed dedupe key to one shared
file (--count-file, O_APPEND); counted outside the processes, it must hold exactly 1,000 lines
and 1,000 distinct keys.

Production runs queued by default: the responses count each item `queued` exactly once over
all 1,000 deliveries (every other delivery of it is `deduped`), and the handlers run afterwards
on the workers of any of the three processes, which share the Redis work queue. The test waits
(bounded, not a timed assertion) until the count file holds every key, stops the gateways, and
only then counts.
"""

import collections
import http.client
import json
import random
import threading

import cxtest
from cxtest import Redis, Serve, Workdir, batch, sign, wait_until

SECRET = "multi-instance-secret"
ITEMS = 1000
PER_BATCH = 10
DELIVERIES = 10
INSTANCES = 3
THREADS = 12


def test_exactly_once_across_three_instances():
    redis = Redis()
    work = Workdir(SECRET)
    count_file = work.file("handled.txt")
    gateways = []
    try:
        for n in range(INSTANCES):
            gateways.append(Serve(work, [
                "--env", "production", "--secrets", work.secrets, "--redis", redis.addr,
                "--connector-lib", cxtest.TEST_LIB, "--account", "test:acc-1=acme",
                "--count-file", count_file, "--log-level", "info"], name=f"gw{n}"))
        bodies = [batch("acc-1", [f"mi-{b}-{i}" for i in range(PER_BATCH)])
                  for b in range(ITEMS // PER_BATCH)]
        # Delivery k of batch b goes to gateway (b + k) % 3: every batch reaches all three.
        work_items = [(b, (b + k) % INSTANCES) for b in range(len(bodies))
                      for k in range(DELIVERIES)]
        random.Random(1234).shuffle(work_items)
        lock = threading.Lock()
        statuses = collections.Counter()
        per_gateway = collections.Counter()
        processed = [0]
        queued = [0]
        errors = []

        def worker(share):
            conns = {}
            try:
                for b, g in share:
                    conn = conns.get(g) or http.client.HTTPConnection(
                        "127.0.0.1", gateways[g].port, timeout=30)
                    conns[g] = conn
                    body = bodies[b]
                    conn.request("POST", "/webhook/test", body=body, headers={
                        "Content-Type": "application/json",
                        "X-Test-Signature": sign(SECRET, body)})
                    resp = conn.getresponse()
                    data = json.loads(resp.read())
                    with lock:
                        statuses[resp.status] += 1
                        per_gateway[g] += 1
                        processed[0] += data.get("summary", {}).get("processed", 0)
                        queued[0] += data.get("summary", {}).get("queued", 0)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                for c in conns.values():
                    c.close()

        threads = [threading.Thread(target=worker, args=(work_items[i::THREADS],))
                   for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        assert sum(statuses.values()) == len(work_items), statuses
        # Queued mode: a duplicate that arrives while another delivery holds the claim is
        # deduped (that delivery queued it durably, or answers 503 and is redelivered), so every
        # answer is 200 here (503 only if a store failed).
        assert set(statuses) <= {200, 503}, statuses
        assert all(per_gateway[g] > 0 for g in range(INSTANCES)), per_gateway
        assert processed[0] == 0 and queued[0] == ITEMS, (processed[0], queued[0], statuses)

        def count_lines():
            try:
                with open(count_file) as f:
                    return f.read().count("\n")
            except FileNotFoundError:
                return 0
        wait_until(lambda: count_lines() >= ITEMS, 180, step=0.1, what="every handler run")
        for g in gateways:
            assert g.stop() == 0
        with open(count_file) as f:
            lines = f.read().splitlines()
        assert len(lines) == ITEMS, len(lines)
        assert len(set(lines)) == ITEMS, len(set(lines))
        assert all(line.startswith("dm:test:acc-1:msg:mi-") for line in lines), lines[:3]
        print(f"   statuses {dict(statuses)}, requests per gateway {dict(per_gateway)}, "
              f"handler runs {len(lines)}")
    finally:
        for g in gateways:
            g.stop()
        redis.cleanup()
        work.cleanup()


if __name__ == "__main__":
    cxtest.require_binaries(redis=True)
    cxtest.run([test_exactly_once_across_three_instances])
