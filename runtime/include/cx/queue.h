/* The work queue of queued mode: durable items, consumer ownership and a retry schedule.
 *
 * In queued mode (docs/durable-processing.md) the pipeline appends each claimed item to the
 * queue and acks the provider; worker threads (cx_runtime_start_workers) fetch items, run
 * their handler and acknowledge them. The queue gives three guarantees:
 *
 *   durable    enqueue returns 0 only once the store has every item (for Redis: the XADD
 *              replies were received), so a 200 never acks an item that is not stored;
 *   owned      a fetched item belongs to one consumer until it is acknowledged, scheduled
 *              again, or its consumer stops touching it for reclaim_idle_ms (a crashed or
 *              stalled process): then fetch hands it to another consumer (XAUTOCLAIM);
 *   scheduled  schedule() atomically acknowledges an item and puts a new version of it (the
 *              retry, or a rate-limited item) into a schedule, from which fetch moves it back
 *              into the queue once it is due. Nothing is ever dropped.
 *
 * Payloads are opaque bytes (the runtime's job records, runtime/src/inbound/job.h).
 *
 * Implementations: the embedded queue (one process: development, tests) and Redis (a Stream
 * with a consumer group, a sorted set as the schedule; every transition is one Lua script, so
 * it is atomic). Both are thread-safe. This interface follows cx/dedupe_store.h: a struct of
 * function pointers, an embedded implementation and a Redis one.
 *
 *     cx_queue_payload_t p = {job, job_len};
 *     if (q->ops->enqueue(q, &p, 1, &err) != 0) return 503;          // not durable: retry
 *     ...
 *     cx_queue_msg_t m[16]; size_t n;
 *     q->ops->fetch(q, "host-1234", 16, 100, 30000, m, &n, &err);     // a worker
 *     ... run; q->ops->ack(q, (const char *[]){m[0].id}, 1, &err); cx_queue_msgs_free(m, n);
 */
#ifndef CX_QUEUE_H
#define CX_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for an entry id ("1764403200123-17") and its NUL. */
#define CX_QUEUE_ID_SIZE 48
/* The longest consumer name, without the NUL. */
#define CX_QUEUE_CONSUMER_MAX 96
/* The most entries one call accepts. */
#define CX_QUEUE_BATCH_MAX 10000

/* One payload to enqueue (borrowed for the call). */
typedef struct cx_queue_payload_s {
    const void *data;
    size_t len;
    uint32_t delay_ms; /* 0: into the queue; else into the schedule, due after this delay
                          (the store's clock): a rate-limited item */
} cx_queue_payload_t;

/* One fetched entry. data is malloc'd and owned by the caller: cx_queue_msgs_free(). */
typedef struct cx_queue_msg_s {
    char id[CX_QUEUE_ID_SIZE]; /* the entry's id, for ack/schedule/touch */
    unsigned char *data;
    size_t len;
} cx_queue_msg_t;

/* What the queue holds now (gauges: queue_depth, queue_oldest_age_seconds). */
typedef struct cx_queue_stats_s {
    uint64_t depth;      /* entries in the queue: waiting plus being handled */
    uint64_t pending;    /* of those, delivered to a consumer and not acknowledged yet */
    uint64_t scheduled;  /* entries in the schedule (retries, rate-limited items) */
    double oldest_age_s; /* age of the oldest entry in the queue; 0 when empty */
} cx_queue_stats_t;

typedef struct cx_queue_s cx_queue_t;

typedef struct cx_queue_ops_s {
    /* Appends n payloads (n <= CX_QUEUE_BATCH_MAX) in one round trip, each into the queue or,
     * with a delay, into the schedule. Returns 0 only when the store acknowledged every one;
     * CX_EUNAVAILABLE (then some may have been stored: the runtime's dedupe claims make a second
     * copy harmless), CX_EINVAL, CX_ENOMEM. */
    int (*enqueue)(cx_queue_t *q, const cx_queue_payload_t *payloads, size_t n, cx_error_t *err);
    /* Delivers at most max entries to consumer into out[0..*n): first moves due scheduled
     * entries into the queue, then, when reclaim_idle_ms > 0, takes over entries another
     * consumer has not touched for reclaim_idle_ms (from time to time, not on every call),
     * then new entries, waiting up to block_ms when there are none. *n = 0 after the wait.
     * consumer: 1..CX_QUEUE_CONSUMER_MAX characters, unique per process. Returns 0,
     * CX_EUNAVAILABLE, CX_EINVAL, CX_ENOMEM; on error *n = 0 and nothing is owned. */
    int (*fetch)(cx_queue_t *q, const char *consumer, size_t max, uint32_t block_ms,
                 uint32_t reclaim_idle_ms, cx_queue_msg_t *out, size_t *n, cx_error_t *err);
    /* Acknowledges (removes) entries, whoever holds them. One round trip. Unknown ids are
     * ignored. Returns 0, CX_EUNAVAILABLE, CX_EINVAL, CX_ENOMEM. */
    int (*ack)(cx_queue_t *q, const char *const *ids, size_t n, cx_error_t *err);
    /* Atomically: acknowledges entry id, only while consumer still holds it, and adds payload
     * to the schedule, due delay_ms from now (the store's clock). id NULL: only schedules.
     * *lost = 1 (nothing done) when consumer no longer holds id: another consumer took it
     * over, and will finish it. Returns 0, CX_EUNAVAILABLE, CX_EINVAL, CX_ENOMEM. */
    int (*schedule)(cx_queue_t *q, const char *consumer, const char *id, const void *payload,
                    size_t len, uint32_t delay_ms, int *lost, cx_error_t *err);
    /* A heartbeat: resets the idle time of entries consumer holds, so no other consumer takes
     * them over while their handler runs. lost[i] = 1 for an entry consumer no longer holds.
     * One round trip. Returns 0, CX_EUNAVAILABLE, CX_EINVAL, CX_ENOMEM. */
    int (*touch)(cx_queue_t *q, const char *consumer, const char *const *ids, size_t n,
                 unsigned char *lost, cx_error_t *err);
    /* Fills *out. Returns 0 or CX_EUNAVAILABLE. */
    int (*stats)(cx_queue_t *q, cx_queue_stats_t *out, cx_error_t *err);
    /* 0 when the store answers, else CX_EUNAVAILABLE. */
    int (*ping)(cx_queue_t *q, cx_error_t *err);
    /* Frees the queue. No call may be running on it. */
    void (*destroy)(cx_queue_t *q);
} cx_queue_ops_t;

struct cx_queue_s {
    const cx_queue_ops_t *ops; /* read-only */
    char name[64];             /* read-only: "<environment>/<queue name>", for logs */
};

/* The embedded in-process queue (development and tests: items live as long as the process).
 * environment: [A-Za-z0-9._-]{1,64}. name: the queue ([A-Za-z0-9._-]{1,32}), NULL = "inbound".
 * Returns 0, CX_EINVAL, CX_ENOMEM. Thread-safe.
 *
 *     cx_queue_t *q; cx_queue_embedded("development", NULL, &q, &err);
 */
CX_API int cx_queue_embedded(const char *environment, const char *name, cx_queue_t **out,
                             cx_error_t *err);

/* The Redis queue: the Stream `cx:<environment>:queue:{<name>}` read through the consumer
 * group "workers" (created on first use, and again after a Redis restart lost it), and the
 * sorted set `cx:<environment>:queue:{<name>}:scheduled` (score: due time in ms, Redis clock).
 * The braces are a cluster hash tag: every key of a queue is in one slot. Blocking fetches
 * wait at most half the command timeout. opts as for cx_dedupe_store_redis (strings copied;
 * give a pool_size covering the worker threads plus the request threads). Returns 0,
 * CX_EINVAL, CX_ENOMEM, CX_ENOT_IMPLEMENTED (built without Redis). Thread-safe; not
 * fork-safe.
 *
 *     cx_redis_options_t o = {.host = "127.0.0.1", .port = 6379, .pool_size = 16};
 *     cx_queue_redis("production", NULL, &o, &q, &err);
 */
CX_API int cx_queue_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                          cx_queue_t **out, cx_error_t *err);

/* Frees q (may be NULL). */
static inline void cx_queue_destroy(cx_queue_t *q)
{
    if (q)
        q->ops->destroy(q);
}

/* Frees the data of n fetched entries (msgs may be NULL when n is 0). */
CX_API void cx_queue_msgs_free(cx_queue_msg_t *msgs, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* CX_QUEUE_H */
