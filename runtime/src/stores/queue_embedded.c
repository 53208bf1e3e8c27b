/* The embedded work queue (cx/queue.h): one process, for development and tests.
 *
 * Same semantics as the Redis queue: entries are "ready" (never delivered, or given back) or
 * "pending" (delivered to a consumer, with the time it was last touched); fetch takes over
 * pending entries idle for reclaim_idle_ms, and the schedule holds entries until they are due.
 * One mutex guards everything; a condition variable (CLOCK_MONOTONIC) wakes blocked fetches
 * when something is enqueued or scheduled. Lists are linear: a development queue holds few
 * pending entries, and ready entries are taken from the head.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cx/queue.h"
#include "stores/durable_internal.h"

typedef struct node_s {
    struct node_s *prev, *next;
    uint64_t seq;
    int64_t enq_ms;                        /* monotonic: when it entered the queue (oldest age) */
    int64_t touched_ms;                    /* monotonic: delivered or touched last (pending only) */
    char owner[CX_QUEUE_CONSUMER_MAX + 1]; /* "" while ready */
    unsigned char *data;
    size_t len;
} node_t;

typedef struct {
    node_t *head, *tail;
    size_t n;
} list_t;

typedef struct {
    int64_t due_ms; /* monotonic */
    unsigned char *data;
    size_t len;
} sched_t;

typedef struct embedded_queue_s {
    cx_queue_t base; /* first: the public view */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    list_t ready, pending;
    sched_t *sched;
    size_t n_sched, cap_sched;
    uint64_t seq;
} embedded_queue_t;

static void list_push(list_t *l, node_t *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->n++;
}

static void list_unlink(list_t *l, node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->n--;
}

static int parse_id(const char *id, uint64_t *seq)
{
    if (id == NULL || strncmp(id, "e-", 2) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(id + 2, &end, 10);
    if (errno || *end || end == id + 2)
        return -1;
    *seq = v;
    return 0;
}

static node_t *find(list_t *l, uint64_t seq)
{
    for (node_t *n = l->head; n; n = n->next)
        if (n->seq == seq)
            return n;
    return NULL;
}

static node_t *node_new(embedded_queue_t *q, const void *data, size_t len, int64_t now)
{
    node_t *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->data = malloc(len ? len : 1);
    if (n->data == NULL) {
        free(n);
        return NULL;
    }
    if (len)
        memcpy(n->data, data, len);
    n->len = len;
    n->seq = ++q->seq;
    n->enq_ms = now;
    return n;
}

static void node_free(node_t *n)
{
    if (n) {
        free(n->data);
        free(n);
    }
}

static int eq_enqueue(cx_queue_t *base, const cx_queue_payload_t *p, size_t n, cx_error_t *err)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    if (n > CX_QUEUE_BATCH_MAX || (n && p == NULL))
        return cx_error_set(err, CX_EINVAL, "payloads", "0..%d payloads", CX_QUEUE_BATCH_MAX);
    int64_t now = cx__mono_now_ms();
    size_t delayed = 0;
    for (size_t i = 0; i < n; i++)
        delayed += p[i].delay_ms > 0;
    pthread_mutex_lock(&q->mu);
    if (delayed && q->n_sched + delayed > q->cap_sched) {
        size_t cap = q->cap_sched ? q->cap_sched : 64;
        while (cap < q->n_sched + delayed)
            cap *= 2;
        sched_t *v = realloc(q->sched, cap * sizeof *v);
        if (v == NULL) {
            pthread_mutex_unlock(&q->mu);
            return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
        }
        q->sched = v;
        q->cap_sched = cap;
    }
    list_t added = {0};
    size_t n_sched0 = q->n_sched;
    for (size_t i = 0; i < n; i++) {
        if (p[i].delay_ms > 0) {
            unsigned char *copy = malloc(p[i].len ? p[i].len : 1);
            if (copy == NULL)
                goto nomem;
            memcpy(copy, p[i].data, p[i].len);
            q->sched[q->n_sched++] = (sched_t){now + p[i].delay_ms, copy, p[i].len};
            continue;
        }
        node_t *nd = node_new(q, p[i].data, p[i].len, now);
        if (nd == NULL)
            goto nomem;
        list_push(&added, nd);
    }
    while (added.head) {
        node_t *h = added.head;
        list_unlink(&added, h);
        list_push(&q->ready, h);
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
nomem:
    /* All or nothing. */
    while (added.head) {
        node_t *h = added.head;
        list_unlink(&added, h);
        node_free(h);
    }
    while (q->n_sched > n_sched0)
        free(q->sched[--q->n_sched].data);
    pthread_mutex_unlock(&q->mu);
    return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
}

/* Moves due scheduled entries to the ready list (under mu). Returns the next due time of
 * what stays scheduled, or INT64_MAX. */
static int64_t promote(embedded_queue_t *q, int64_t now)
{
    int64_t next = INT64_MAX;
    size_t w = 0;
    for (size_t i = 0; i < q->n_sched; i++) {
        sched_t *s = &q->sched[i];
        if (s->due_ms <= now) {
            node_t *nd = calloc(1, sizeof *nd);
            if (nd != NULL) {
                nd->data = s->data;
                nd->len = s->len;
                nd->seq = ++q->seq;
                nd->enq_ms = now;
                list_push(&q->ready, nd);
                continue;
            }
            /* No memory for the node: keep it scheduled, try again next time. */
        }
        if (s->due_ms < next)
            next = s->due_ms;
        q->sched[w++] = *s;
    }
    q->n_sched = w;
    return next;
}

static int deliver(node_t *nd, const char *consumer, int64_t now, cx_queue_msg_t *m)
{
    m->data = malloc(nd->len ? nd->len : 1);
    if (m->data == NULL)
        return -1;
    memcpy(m->data, nd->data, nd->len);
    m->len = nd->len;
    snprintf(m->id, sizeof m->id, "e-%" PRIu64, nd->seq);
    snprintf(nd->owner, sizeof nd->owner, "%s", consumer);
    nd->touched_ms = now;
    return 0;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int eq_fetch(cx_queue_t *base, const char *consumer, size_t max, uint32_t block_ms,
                    uint32_t reclaim_idle_ms, cx_queue_msg_t *out, size_t *n, cx_error_t *err)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    *n = 0;
    if (consumer == NULL || consumer[0] == '\0' ||
        strnlen(consumer, CX_QUEUE_CONSUMER_MAX + 1) > CX_QUEUE_CONSUMER_MAX)
        return cx_error_set(err, CX_EINVAL, "consumer", "consumer name empty or too long");
    if (max == 0)
        return 0;
    int64_t start = cx__mono_now_ms();
    pthread_mutex_lock(&q->mu);
    for (;;) {
        int64_t now = cx__mono_now_ms();
        int64_t next_due = promote(q, now);
        if (reclaim_idle_ms) {
            for (node_t *nd = q->pending.head; nd && *n < max; nd = nd->next) {
                if (now - nd->touched_ms < (int64_t)reclaim_idle_ms)
                    continue;
                if (deliver(nd, consumer, now, &out[*n]) != 0)
                    goto nomem;
                (*n)++;
            }
        }
        while (*n < max && q->ready.head) {
            node_t *nd = q->ready.head;
            if (deliver(nd, consumer, now, &out[*n]) != 0)
                goto nomem;
            list_unlink(&q->ready, nd);
            list_push(&q->pending, nd);
            (*n)++;
        }
        int64_t left = (int64_t)block_ms - (now - start);
        if (*n > 0 || left <= 0)
            break;
        int64_t wait = next_due == INT64_MAX ? left : next_due - now;
        if (wait > left)
            wait = left;
        if (wait < 1)
            wait = 1;
        struct timespec ts;
        deadline_after(&ts, wait);
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
nomem:
    pthread_mutex_unlock(&q->mu);
    /* Entries handed out so far stay pending for this consumer and are reclaimed later;
     * the caller owns nothing after a failure. */
    cx_queue_msgs_free(out, *n);
    *n = 0;
    return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
}

static int eq_ack(cx_queue_t *base, const char *const *ids, size_t n, cx_error_t *err)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    if (n && ids == NULL)
        return cx_error_set(err, CX_EINVAL, "ids", "ids is NULL");
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;
        if (parse_id(ids[i], &seq) != 0)
            continue;
        node_t *nd = find(&q->pending, seq);
        list_t *l = &q->pending;
        if (nd == NULL) {
            nd = find(&q->ready, seq);
            l = &q->ready;
        }
        if (nd) {
            list_unlink(l, nd);
            node_free(nd);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int eq_schedule(cx_queue_t *base, const char *consumer, const char *id, const void *payload,
                       size_t len, uint32_t delay_ms, int *lost, cx_error_t *err)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    *lost = 0;
    unsigned char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
    memcpy(copy, payload, len);
    pthread_mutex_lock(&q->mu);
    if (q->n_sched == q->cap_sched) {
        size_t cap = q->cap_sched ? q->cap_sched * 2 : 64;
        sched_t *s = realloc(q->sched, cap * sizeof *s);
        if (s == NULL) {
            pthread_mutex_unlock(&q->mu);
            free(copy);
            return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
        }
        q->sched = s;
        q->cap_sched = cap;
    }
    if (id != NULL) {
        uint64_t seq;
        node_t *nd = parse_id(id, &seq) == 0 ? find(&q->pending, seq) : NULL;
        if (nd == NULL || consumer == NULL || strcmp(nd->owner, consumer) != 0) {
            pthread_mutex_unlock(&q->mu);
            free(copy);
            *lost = 1;
            return 0;
        }
        list_unlink(&q->pending, nd);
        node_free(nd);
    }
    q->sched[q->n_sched++] = (sched_t){cx__mono_now_ms() + delay_ms, copy, len};
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int eq_touch(cx_queue_t *base, const char *consumer, const char *const *ids, size_t n,
                    unsigned char *lost, cx_error_t *err)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    if (n && (ids == NULL || lost == NULL || consumer == NULL))
        return cx_error_set(err, CX_EINVAL, "ids", "ids, lost and consumer are required");
    int64_t now = cx__mono_now_ms();
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;
        node_t *nd = parse_id(ids[i], &seq) == 0 ? find(&q->pending, seq) : NULL;
        lost[i] = nd == NULL || strcmp(nd->owner, consumer) != 0;
        if (!lost[i])
            nd->touched_ms = now;
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int eq_stats(cx_queue_t *base, cx_queue_stats_t *out, cx_error_t *err)
{
    (void)err;
    embedded_queue_t *q = (embedded_queue_t *)base;
    int64_t now = cx__mono_now_ms();
    pthread_mutex_lock(&q->mu);
    int64_t oldest = q->ready.head ? q->ready.head->enq_ms : INT64_MAX;
    for (node_t *nd = q->pending.head; nd; nd = nd->next)
        if (nd->enq_ms < oldest)
            oldest = nd->enq_ms;
    out->depth = q->ready.n + q->pending.n;
    out->pending = q->pending.n;
    out->scheduled = q->n_sched;
    out->oldest_age_s = oldest == INT64_MAX ? 0 : (double)(now - oldest) / 1000.0;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int eq_ping(cx_queue_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void eq_destroy(cx_queue_t *base)
{
    embedded_queue_t *q = (embedded_queue_t *)base;
    if (q == NULL)
        return;
    list_t *lists[2] = {&q->ready, &q->pending};
    for (int k = 0; k < 2; k++)
        while (lists[k]->head) {
            node_t *h = lists[k]->head;
            list_unlink(lists[k], h);
            node_free(h);
        }
    for (size_t i = 0; i < q->n_sched; i++)
        free(q->sched[i].data);
    free(q->sched);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static const cx_queue_ops_t EMBEDDED_OPS = {
    .enqueue = eq_enqueue,
    .fetch = eq_fetch,
    .ack = eq_ack,
    .schedule = eq_schedule,
    .touch = eq_touch,
    .stats = eq_stats,
    .ping = eq_ping,
    .destroy = eq_destroy,
};

int cx_queue_embedded(const char *environment, const char *name, cx_queue_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (name == NULL)
        name = "inbound";
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc == 0)
        rc = cx__store_check_name(name, 32, "queue name", err);
    if (rc != 0)
        return rc;
    embedded_queue_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&q->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        free(q);
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded queue: out of memory");
    }
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&q->mu, NULL);
    q->base.ops = &EMBEDDED_OPS;
    snprintf(q->base.name, sizeof q->base.name, "%s/%s", environment, name);
    *out = &q->base;
    return 0;
}
