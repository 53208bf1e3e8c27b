/* Rate limits and daily quotas, shared by every process (GCRA with reservations).
 *
 * The gateway asks the limiter when it queues a batch (and a worker asks for an item queued
 * without an admission, before it runs it). For each item, acquire() checks every bucket that
 * applies to it (the tenant's, the tenant's for this capability) atomically:
 *
 *   rate   GCRA (the generic cell rate algorithm: one "theoretical arrival time" per bucket,
 *          interval_us apart, burst admitted at once). When a bucket is full the item does
 *          not wait anywhere: acquire() *reserves* the earliest slot every bucket allows and
 *          returns its delay; the item goes into the schedule due then (not into the queue,
 *          so workers never see it early) and runs at that time without asking again.
 *          Reservations pace a flood exactly (one slot each, no thundering herd) and nothing
 *          is dropped.
 *   quota  items per UTC day (the store's clock). An item over a quota reserves nothing and
 *          is delayed until the next UTC day, where it is checked again.
 *
 * Implementations: embedded (one process) and Redis (one Lua script over all the items of a
 * call, using the Redis server's clock, so every process shares one time line). Thread-safe.
 *
 *     cx_ratelimit_check_t c = {.key = "{acme}:t", .interval_us = 50000, .burst = 5};
 *     cx_ratelimit_request_t q = {&c, 1};
 *     cx_ratelimit_result_t r;
 *     if (rl->ops->acquire(rl, &q, 1, &r, &err) == 0 && r.delay_ms == 0) run_now();
 */
#ifndef CX_RATELIMIT_H
#define CX_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most buckets one item checks, and the most items one acquire() takes. */
#define CX_RATELIMIT_MAX_CHECKS 8
#define CX_RATELIMIT_BATCH_MAX 1000
/* The longest bucket key, without the NUL. */
#define CX_RATELIMIT_KEY_MAX 256

/* One bucket. key is borrowed for the call. */
typedef struct cx_ratelimit_check_s {
    const char *key;      /* the bucket, e.g. "{acme}:t" (a cluster hash tag per tenant) */
    uint64_t interval_us; /* 1e6 / items per second; 0 = no rate limit on this bucket */
    uint32_t burst;       /* items admitted at once; 0 = 1 */
    uint64_t daily_quota; /* items per UTC day; 0 = none */
} cx_ratelimit_check_t;

/* One item: the buckets it needs. */
typedef struct cx_ratelimit_request_s {
    const cx_ratelimit_check_t *checks;
    size_t n; /* 0..CX_RATELIMIT_MAX_CHECKS; 0 = not limited */
} cx_ratelimit_request_t;

typedef struct cx_ratelimit_result_s {
    uint64_t delay_ms; /* 0: run now; else run after this delay */
    int reserved;      /* 1: a slot at now + delay_ms is reserved (run then, without asking
                          again); 0 with a delay: over a daily quota, ask again then */
    int limited_by;    /* index of the check that set the delay, -1 when none */
} cx_ratelimit_result_t;

typedef struct cx_ratelimit_s cx_ratelimit_t;

typedef struct cx_ratelimit_ops_s {
    /* For each of n items (n <= CX_RATELIMIT_BATCH_MAX), in order and in one atomic step (one
     * round trip): checks its buckets and admits (counts) it in every one of them unless a
     * quota is exhausted; out[i] is item i's result. Returns 0, CX_EUNAVAILABLE, CX_EINVAL,
     * CX_ENOMEM (then no item was admitted). */
    int (*acquire)(cx_ratelimit_t *rl, const cx_ratelimit_request_t *items, size_t n,
                   cx_ratelimit_result_t *out, cx_error_t *err);
    /* 0 when the store answers, else CX_EUNAVAILABLE. */
    int (*ping)(cx_ratelimit_t *rl, cx_error_t *err);
    void (*destroy)(cx_ratelimit_t *rl);
} cx_ratelimit_ops_t;

struct cx_ratelimit_s {
    const cx_ratelimit_ops_t *ops; /* read-only */
};

/* The embedded limiter (one process; CLOCK_REALTIME for days, CLOCK_MONOTONIC for rates).
 * Returns 0, CX_EINVAL, CX_ENOMEM. */
CX_API int cx_ratelimit_embedded(const char *environment, cx_ratelimit_t **out, cx_error_t *err);

/* The Redis limiter: keys `cx:<env>:limits:<key>` (the theoretical arrival time, expiring when it
 * is in the past) and `cx:<env>:limits:<key>:q:<UTC day>` (the day's count, kept two days).
 * Returns 0, CX_EINVAL, CX_ENOMEM, CX_ENOT_IMPLEMENTED (built without Redis). */
CX_API int cx_ratelimit_redis(const char *environment, const cx_redis_options_t *opts,
                              cx_ratelimit_t **out, cx_error_t *err);

static inline void cx_ratelimit_destroy(cx_ratelimit_t *rl)
{
    if (rl)
        rl->ops->destroy(rl);
}

#ifdef __cplusplus
}
#endif

#endif /* CX_RATELIMIT_H */
