/* The embedded tenant rate limiter (cx/ratelimit.h): the same GCRA with reservations and daily
 * quotas as the Redis limiter (tenant_limits_redis.c), in one process, under one mutex. Buckets
 * live in an array searched linearly (a development limiter has few tenants); times are
 * CLOCK_REALTIME microseconds so a UTC day is a UTC day. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cx/ratelimit.h"
#include "stores/durable_internal.h"

typedef struct {
    char *key;
    int64_t tat_us;
    int64_t day;
    uint64_t count;
} bucket_t;

typedef struct embedded_rl_s {
    cx_ratelimit_t base; /* first: the public view */
    pthread_mutex_t mu;
    bucket_t *v;
    size_t n, cap;
} embedded_rl_t;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bucket_t *bucket(embedded_rl_t *rl, const char *key)
{
    for (size_t i = 0; i < rl->n; i++)
        if (strcmp(rl->v[i].key, key) == 0)
            return &rl->v[i];
    if (rl->n == rl->cap) {
        size_t cap = rl->cap ? rl->cap * 2 : 16;
        bucket_t *v = realloc(rl->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        rl->v = v;
        rl->cap = cap;
    }
    char *k = strdup(key);
    if (k == NULL)
        return NULL;
    rl->v[rl->n] = (bucket_t){k, 0, 0, 0};
    return &rl->v[rl->n++];
}

/* One item (under rl->mu). Returns 0 or CX_ENOMEM. */
static int acquire_one(embedded_rl_t *rl, const cx_ratelimit_check_t *checks, size_t n, int64_t now,
                       cx_ratelimit_result_t *out)
{
    bucket_t *b[CX_RATELIMIT_MAX_CHECKS];
    int64_t day = now / 1000000 / 86400;
    *out = (cx_ratelimit_result_t){0, 0, -1};
    for (size_t i = 0; i < n; i++) {
        if ((b[i] = bucket(rl, checks[i].key)) == NULL)
            return CX_ENOMEM;
        if (b[i]->day != day) {
            b[i]->day = day;
            b[i]->count = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (checks[i].daily_quota && b[i]->count >= checks[i].daily_quota) {
            out->delay_ms = (uint64_t)(((day + 1) * 86400 * 1000000 - now + 999) / 1000);
            out->limited_by = (int)i;
            return 0;
        }
    }
    int64_t at = now;
    for (size_t i = 0; i < n; i++) {
        int64_t T = (int64_t)checks[i].interval_us;
        if (T == 0)
            continue;
        int64_t burst = checks[i].burst ? checks[i].burst : 1;
        if (b[i]->tat_us < now)
            b[i]->tat_us = now;
        int64_t allow = b[i]->tat_us - (burst - 1) * T;
        if (allow > at) {
            at = allow;
            out->limited_by = (int)i;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int64_t T = (int64_t)checks[i].interval_us;
        if (T) {
            if (b[i]->tat_us < at)
                b[i]->tat_us = at;
            b[i]->tat_us += T;
        }
        if (checks[i].daily_quota)
            b[i]->count++;
    }
    if (at > now) {
        out->delay_ms = (uint64_t)((at - now + 999) / 1000);
        out->reserved = 1;
    } else {
        out->limited_by = -1;
    }
    return 0;
}

static int er_acquire(cx_ratelimit_t *base, const cx_ratelimit_request_t *items, size_t n,
                      cx_ratelimit_result_t *out, cx_error_t *err)
{
    embedded_rl_t *rl = (embedded_rl_t *)base;
    if (n > CX_RATELIMIT_BATCH_MAX || (n && (items == NULL || out == NULL)))
        return cx_error_set(err, CX_EINVAL, "items", "0..%d items", CX_RATELIMIT_BATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        if (items[i].n > CX_RATELIMIT_MAX_CHECKS || (items[i].n && items[i].checks == NULL))
            return cx_error_set(err, CX_EINVAL, "checks", "0..%d checks per item",
                                CX_RATELIMIT_MAX_CHECKS);
        for (size_t c = 0; c < items[i].n; c++) {
            const char *k = items[i].checks[c].key;
            if (k == NULL || k[0] == '\0' ||
                strnlen(k, CX_RATELIMIT_KEY_MAX + 1) > CX_RATELIMIT_KEY_MAX)
                return cx_error_set(err, CX_EINVAL, "key", "bucket key empty or too long");
        }
    }
    int64_t now = now_us();
    pthread_mutex_lock(&rl->mu);
    for (size_t i = 0; i < n; i++) {
        /* Buckets are created before anything is counted, so a failure admits nothing. */
        for (size_t c = 0; c < items[i].n; c++)
            if (bucket(rl, items[i].checks[c].key) == NULL) {
                pthread_mutex_unlock(&rl->mu);
                return cx_error_set(err, CX_ENOMEM, NULL, "embedded rate limiter: out of memory");
            }
    }
    for (size_t i = 0; i < n; i++)
        (void)acquire_one(rl, items[i].checks, items[i].n, now, &out[i]);
    pthread_mutex_unlock(&rl->mu);
    return 0;
}

static int er_ping(cx_ratelimit_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void er_destroy(cx_ratelimit_t *base)
{
    embedded_rl_t *rl = (embedded_rl_t *)base;
    if (rl == NULL)
        return;
    for (size_t i = 0; i < rl->n; i++)
        free(rl->v[i].key);
    free(rl->v);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static const cx_ratelimit_ops_t EMBEDDED_OPS = {
    .acquire = er_acquire,
    .ping = er_ping,
    .destroy = er_destroy,
};

int cx_ratelimit_embedded(const char *environment, cx_ratelimit_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc != 0)
        return rc;
    embedded_rl_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded rate limiter: out of memory");
    pthread_mutex_init(&rl->mu, NULL);
    rl->base.ops = &EMBEDDED_OPS;
    *out = &rl->base;
    return 0;
}
