/* The embedded dead-letter store (cx/dlq.h): one process, for development and tests.
 *
 * An array kept in dead-time order (appends are almost always at the end) under one mutex;
 * look-ups by id are linear. A development store holds few dead letters; anything larger
 * belongs in Redis.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cx/dlq.h"
#include "stores/durable_internal.h"

typedef struct {
    char *id;
    char *group;
    int64_t dead_ms;
    unsigned char *rec;
    size_t len;
} entry_t;

typedef struct embedded_dlq_s {
    cx_dlq_t base; /* first: the public view */
    pthread_mutex_t mu;
    entry_t *v;
    size_t n, cap;
} embedded_dlq_t;

static void entry_free(entry_t *e)
{
    free(e->id);
    free(e->group);
    free(e->rec);
}

static ssize_t find(const embedded_dlq_t *d, const char *id)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->v[i].id, id) == 0)
            return (ssize_t)i;
    return -1;
}

static void remove_at(embedded_dlq_t *d, size_t i)
{
    entry_free(&d->v[i]);
    memmove(&d->v[i], &d->v[i + 1], (d->n - i - 1) * sizeof d->v[0]);
    d->n--;
}

static int check_id(const char *id, size_t max, const char *what, cx_error_t *err)
{
    if (id == NULL || id[0] == '\0' || strnlen(id, max + 1) > max)
        return cx_error_set(err, CX_EINVAL, what, "%s empty or longer than %zu", what, max);
    return 0;
}

static int ed_put(cx_dlq_t *base, const char *id, const char *group, int64_t dead_ms,
                  const void *rec, size_t len, cx_error_t *err)
{
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    int rc = check_id(id, CX_DLQ_ID_MAX, "id", err);
    if (rc == 0)
        rc = check_id(group, CX_DLQ_GROUP_MAX, "group", err);
    if (rc != 0)
        return rc;
    entry_t e = {strdup(id), strdup(group), dead_ms, malloc(len ? len : 1), len};
    if (!e.id || !e.group || !e.rec) {
        entry_free(&e);
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded dead-letter store: out of memory");
    }
    memcpy(e.rec, rec, len);
    pthread_mutex_lock(&d->mu);
    ssize_t at = find(d, id);
    if (at >= 0)
        remove_at(d, (size_t)at);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        entry_t *v = realloc(d->v, cap * sizeof *v);
        if (v == NULL) {
            pthread_mutex_unlock(&d->mu);
            entry_free(&e);
            return cx_error_set(err, CX_ENOMEM, NULL, "embedded dead-letter store: out of memory");
        }
        d->v = v;
        d->cap = cap;
    }
    size_t i = d->n;
    while (i > 0 && d->v[i - 1].dead_ms > dead_ms)
        i--;
    memmove(&d->v[i + 1], &d->v[i], (d->n - i) * sizeof e);
    d->v[i] = e;
    d->n++;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int ed_get(cx_dlq_t *base, const char *id, unsigned char **rec, size_t *len, cx_error_t *err)
{
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    *rec = NULL;
    *len = 0;
    if (id == NULL)
        return cx_error_set(err, CX_EINVAL, "id", "id is NULL");
    pthread_mutex_lock(&d->mu);
    ssize_t at = find(d, id);
    int rc = 0;
    if (at < 0) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "no dead letter with this id");
    } else {
        entry_t *e = &d->v[at];
        *rec = malloc(e->len ? e->len : 1);
        if (*rec == NULL) {
            rc = cx_error_set(err, CX_ENOMEM, NULL, "embedded dead-letter store: out of memory");
        } else {
            memcpy(*rec, e->rec, e->len);
            *len = e->len;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static int ed_list(cx_dlq_t *base, size_t offset, size_t limit, cx_dlq_ref_t *out, size_t *n,
                   size_t *total, cx_error_t *err)
{
    (void)err;
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    *n = 0;
    pthread_mutex_lock(&d->mu);
    *total = d->n;
    for (size_t i = offset; i < d->n && *n < limit; i++) {
        snprintf(out[*n].id, sizeof out[*n].id, "%s", d->v[i].id);
        out[*n].dead_ms = d->v[i].dead_ms;
        (*n)++;
    }
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int ed_remove(cx_dlq_t *base, const char *id, int *removed, cx_error_t *err)
{
    (void)err;
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    pthread_mutex_lock(&d->mu);
    ssize_t at = id ? find(d, id) : -1;
    *removed = at >= 0;
    if (at >= 0)
        remove_at(d, (size_t)at);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int ed_purge(cx_dlq_t *base, int64_t before_ms, size_t *removed, cx_error_t *err)
{
    (void)err;
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    pthread_mutex_lock(&d->mu);
    size_t k = 0;
    while (k < d->n && d->v[k].dead_ms < before_ms)
        k++;
    for (size_t i = 0; i < k; i++)
        entry_free(&d->v[i]);
    memmove(d->v, d->v + k, (d->n - k) * sizeof d->v[0]);
    d->n -= k;
    *removed = k;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int ed_counts(cx_dlq_t *base, cx_dlq_count_t *out, size_t cap, size_t *n, cx_error_t *err)
{
    (void)err;
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    *n = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->n; i++) {
        size_t g = 0;
        while (g < *n && strcmp(out[g].group, d->v[i].group) != 0)
            g++;
        if (g == *n) {
            if (*n == cap)
                continue;
            snprintf(out[g].group, sizeof out[g].group, "%s", d->v[i].group);
            out[g].count = 0;
            (*n)++;
        }
        out[g].count++;
    }
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static int ed_ping(cx_dlq_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void ed_destroy(cx_dlq_t *base)
{
    embedded_dlq_t *d = (embedded_dlq_t *)base;
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        entry_free(&d->v[i]);
    free(d->v);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static const cx_dlq_ops_t EMBEDDED_OPS = {
    .put = ed_put,
    .get = ed_get,
    .list = ed_list,
    .remove = ed_remove,
    .purge = ed_purge,
    .counts = ed_counts,
    .ping = ed_ping,
    .destroy = ed_destroy,
};

int cx_dlq_embedded(const char *environment, cx_dlq_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc != 0)
        return rc;
    embedded_dlq_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded dead-letter store: out of memory");
    pthread_mutex_init(&d->mu, NULL);
    d->base.ops = &EMBEDDED_OPS;
    *out = &d->base;
    return 0;
}
