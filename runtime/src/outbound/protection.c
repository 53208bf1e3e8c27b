/* Outbound protection: the embedded token-bucket rate limiter (cx_outbound_limiter_embedded) and
 * the circuit breaker per (connector, account) used by cx_outbound_send.
 *
 * Token buckets. A bucket holds up to `burst` tokens and gains `rate_per_s` per second; a
 * send takes `cost` from every bucket that applies to it (provider, account, account and
 * recipient pair) or from none, so a refusal never half-consumes. The Redis limiter
 * (stores/outlimit_redis.c) does the same in one Lua script for several processes.
 *
 * Circuit breaker. A provider that answers 429 (after the HTTP client's own retries) or 401/403
 * again and again wants us to stop: hammering it prolongs rate limiting or locks the account.
 * After `threshold` such outcomes in a row for one (connector, account) the breaker opens:
 * sends are refused at once with CX_ECIRCUIT_OPEN (nothing claimed, nothing sent) for the open
 * period (at least the provider's Retry-After). Then one caller is let through as a probe
 * (half-open); its success closes the breaker, another 429/401 opens it again for twice as
 * long (capped). An outcome without a verdict (5xx, timeout, in doubt) neither trips nor
 * closes it; a lost probe (its caller never reported) is handed to another caller after
 * probe_timeout_ms. The breaker is per process: each process learns on its own, which costs
 * at most `threshold` extra requests per process.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outbound/outbound_internal.h"
#include "stores/intent_internal.h"

int64_t cx__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","c") != ("a","bc") */
    for (const char *p = b; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* ---- Embedded rate limiter ---------------------------------------------------------------- */

#define RL_MAX_BUCKETS 8
#define RL_KEY_MAX 256
#define RL_MAX_ENTRIES 100000

typedef struct bucket_s {
    struct bucket_s *next;
    uint64_t hash;
    double tokens;
    double ts_ms; /* monotonic */
    double burst, rate;
    char key[];
} bucket_t;

typedef struct emb_rl_s {
    cx_outbound_limiter_t base;
    pthread_mutex_t mu;
    bucket_t *table[1024];
    size_t count;
} emb_rl_t;

static bucket_t *rl_find(emb_rl_t *s, const char *key, uint64_t h)
{
    for (bucket_t *e = s->table[h & 1023]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Drops buckets that are full again (they hold no information). */
static void rl_sweep(emb_rl_t *s, double now)
{
    for (size_t i = 0; i < 1024; i++) {
        bucket_t **slot = &s->table[i];
        while (*slot) {
            bucket_t *e = *slot;
            if (e->tokens + (now - e->ts_ms) * e->rate / 1000.0 >= e->burst) {
                *slot = e->next;
                free(e);
                s->count--;
            } else {
                slot = &e->next;
            }
        }
    }
}

static int emb_take(cx_outbound_limiter_t *base, const cx_outbound_bucket_t *b, size_t n,
                    uint32_t *retry_after_ms, cx_error_t *err)
{
    emb_rl_t *s = (emb_rl_t *)base;
    if (retry_after_ms)
        *retry_after_ms = 0;
    if (n == 0)
        return 0;
    if (b == NULL || n > RL_MAX_BUCKETS)
        return cx_error_set(err, CX_EINVAL, "buckets", "1..%d buckets per take", RL_MAX_BUCKETS);
    for (size_t i = 0; i < n; i++) {
        size_t len = b[i].key ? strnlen(b[i].key, RL_KEY_MAX + 1) : 0;
        if (len == 0 || len > RL_KEY_MAX || !(b[i].rate_per_s > 0) || !(b[i].cost > 0) ||
            !(b[i].burst >= b[i].cost) || !isfinite(b[i].burst) || !isfinite(b[i].rate_per_s)) {
            char path[32];
            snprintf(path, sizeof path, "buckets[%zu]", i);
            return cx_error_set(err, CX_EINVAL, path,
                                "bucket needs a key, rate > 0, cost > 0, burst >= cost");
        }
    }
    bucket_t *e[RL_MAX_BUCKETS];
    double tokens[RL_MAX_BUCKETS];
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    double now = mono_ms_f();
    double wait = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = fnv1a(b[i].key, NULL);
        e[i] = rl_find(s, b[i].key, h);
        if (e[i] == NULL) {
            if (s->count >= RL_MAX_ENTRIES)
                rl_sweep(s, now);
            if (s->count >= RL_MAX_ENTRIES) {
                rc = cx_error_set(err, CX_ENOSPC, NULL, "embedded rate limiter full");
                goto out;
            }
            size_t len = strlen(b[i].key);
            e[i] = calloc(1, sizeof *e[i] + len + 1);
            if (e[i] == NULL) {
                rc = cx_error_set(err, CX_ENOMEM, NULL, "embedded rate limiter: out of memory");
                goto out;
            }
            memcpy(e[i]->key, b[i].key, len + 1);
            e[i]->hash = h;
            e[i]->tokens = b[i].burst;
            e[i]->ts_ms = now;
            e[i]->next = s->table[h & 1023];
            s->table[h & 1023] = e[i];
            s->count++;
        }
        e[i]->burst = b[i].burst;
        e[i]->rate = b[i].rate_per_s;
        double tk = e[i]->tokens;
        if (now > e[i]->ts_ms)
            tk = fmin(b[i].burst, tk + (now - e[i]->ts_ms) * b[i].rate_per_s / 1000.0);
        tokens[i] = tk;
        if (tk < b[i].cost) {
            double w = ceil((b[i].cost - tk) * 1000.0 / b[i].rate_per_s);
            if (w > wait)
                wait = w;
        }
    }
    if (wait > 0) {
        if (retry_after_ms)
            *retry_after_ms = wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait;
        rc = CX_ERATE_LIMITED;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        e[i]->tokens = tokens[i] - b[i].cost;
        e[i]->ts_ms = now;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int emb_ping(cx_outbound_limiter_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void emb_destroy(cx_outbound_limiter_t *base)
{
    emb_rl_t *s = (emb_rl_t *)base;
    if (s == NULL)
        return;
    for (size_t i = 0; i < 1024; i++) {
        bucket_t *e = s->table[i];
        while (e) {
            bucket_t *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const cx_outbound_limiter_ops_t EMB_RL_OPS = {
    .take = emb_take,
    .ping = emb_ping,
    .destroy = emb_destroy,
};

int cx_outbound_limiter_embedded(const char *environment, cx_outbound_limiter_t **out,
                                 cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__store_prefix(environment, "outlimit", prefix, err);
    if (rc != 0)
        return rc;
    emb_rl_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded rate limiter: out of memory");
    s->base.ops = &EMB_RL_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    pthread_mutex_init(&s->mu, NULL);
    *out = &s->base;
    return 0;
}

/* ---- Circuit breaker ---------------------------------------------------------------------- */

typedef struct br_entry_s {
    struct br_entry_s *next;
    uint64_t hash;
    cx_breaker_state_t state;
    uint32_t failures;   /* consecutive trips */
    uint32_t period_ms;  /* the current open period */
    int64_t open_until;  /* OPEN: refused until then */
    int64_t probe_since; /* HALF_OPEN: when the probe was handed out */
    char *account;       /* points into key */
    char key[];          /* connector NUL account NUL */
} br_entry_t;

struct cx__breaker_s {
    pthread_mutex_t mu;
    uint32_t threshold, open_ms, open_max_ms, probe_timeout_ms;
    br_entry_t *table[256];
};

int cx__breaker_new(uint32_t threshold, uint32_t open_ms, uint32_t open_max_ms,
                    uint32_t probe_timeout_ms, cx__breaker_t **out)
{
    cx__breaker_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return CX_ENOMEM;
    b->threshold = threshold ? threshold : 1;
    b->open_ms = open_ms;
    b->open_max_ms = open_max_ms < open_ms ? open_ms : open_max_ms;
    b->probe_timeout_ms = probe_timeout_ms;
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return 0;
}

void cx__breaker_free(cx__breaker_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < 256; i++) {
        br_entry_t *e = b->table[i];
        while (e) {
            br_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static br_entry_t *br_find(cx__breaker_t *b, const char *connector, const char *account,
                           bool create)
{
    if (account == NULL)
        account = "";
    uint64_t h = fnv1a(connector, account);
    for (br_entry_t *e = b->table[h & 255]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, connector) == 0 && strcmp(e->account, account) == 0)
            return e;
    if (!create)
        return NULL;
    size_t cl = strlen(connector), al = strlen(account);
    br_entry_t *e = calloc(1, sizeof *e + cl + al + 2);
    if (e == NULL)
        return NULL;
    memcpy(e->key, connector, cl + 1);
    e->account = e->key + cl + 1;
    memcpy(e->account, account, al + 1);
    e->hash = h;
    e->state = CX_BREAKER_CLOSED;
    e->period_ms = b->open_ms;
    e->next = b->table[h & 255];
    b->table[h & 255] = e;
    return e;
}

int cx__breaker_allow(cx__breaker_t *b, const char *connector, const char *account, int64_t now_ms,
                      int *probe, uint32_t *retry_after_ms)
{
    *probe = 0;
    *retry_after_ms = 0;
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    br_entry_t *e = br_find(b, connector, account, false);
    if (e == NULL || e->state == CX_BREAKER_CLOSED)
        goto out;
    if (e->state == CX_BREAKER_OPEN) {
        if (now_ms < e->open_until) {
            *retry_after_ms = (uint32_t)(e->open_until - now_ms);
            rc = CX_ECIRCUIT_OPEN;
            goto out;
        }
        e->state = CX_BREAKER_HALF_OPEN;
        e->probe_since = now_ms;
        *probe = 1;
        goto out;
    }
    /* HALF_OPEN: one probe at a time; a probe lost for too long is handed on */
    if (now_ms - e->probe_since >= (int64_t)b->probe_timeout_ms) {
        e->probe_since = now_ms;
        *probe = 1;
        goto out;
    }
    *retry_after_ms = 1000;
    rc = CX_ECIRCUIT_OPEN;
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static void br_open(cx__breaker_t *b, br_entry_t *e, uint32_t retry_after_ms, int64_t now_ms)
{
    (void)b;
    uint32_t d = e->period_ms > retry_after_ms ? e->period_ms : retry_after_ms;
    e->state = CX_BREAKER_OPEN;
    e->open_until = now_ms + d;
}

void cx__breaker_record(cx__breaker_t *b, const char *connector, const char *account,
                        cx__br_outcome_t outcome, int probe, uint32_t retry_after_ms,
                        int64_t now_ms)
{
    pthread_mutex_lock(&b->mu);
    br_entry_t *e = br_find(b, connector, account, outcome == CX__BR_TRIP);
    if (e == NULL)
        goto out; /* never tripped (or no memory: the breaker stays closed) */
    switch (outcome) {
    case CX__BR_SUCCESS:
        e->failures = 0;
        if (probe || e->state != CX_BREAKER_OPEN) {
            e->state = CX_BREAKER_CLOSED;
            e->period_ms = b->open_ms;
        }
        break;
    case CX__BR_TRIP:
        e->failures++;
        if (probe && e->state == CX_BREAKER_HALF_OPEN) {
            uint64_t p = (uint64_t)e->period_ms * 2;
            e->period_ms = p > b->open_max_ms ? b->open_max_ms : (uint32_t)p;
            br_open(b, e, retry_after_ms, now_ms);
        } else if (e->state == CX_BREAKER_CLOSED && e->failures >= b->threshold) {
            e->period_ms = b->open_ms;
            br_open(b, e, retry_after_ms, now_ms);
        }
        break;
    case CX__BR_NEUTRAL:
        if (probe && e->state == CX_BREAKER_HALF_OPEN) {
            /* no verdict: let the next caller probe at once */
            e->state = CX_BREAKER_OPEN;
            e->open_until = now_ms;
        }
        break;
    }
out:
    pthread_mutex_unlock(&b->mu);
}

cx_breaker_state_t cx__breaker_state(cx__breaker_t *b, const char *connector, const char *account,
                                     int64_t now_ms)
{
    (void)now_ms;
    pthread_mutex_lock(&b->mu);
    br_entry_t *e = br_find(b, connector, account, false);
    cx_breaker_state_t st = e ? e->state : CX_BREAKER_CLOSED;
    pthread_mutex_unlock(&b->mu);
    return st;
}
