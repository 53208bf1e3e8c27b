/* The embedded token store (cx/oauth.h): the Redis store's semantics in one process.
 *
 * Per id: the sealed value and the fence of its writer, the fencing counter, and the refresh
 * lock (holder's fence, expiry on the monotonic clock). States live in their own table with an
 * expiry; expired ones are dropped when their bucket is touched. One mutex guards everything:
 * every operation is a few pointer moves and a copy of at most CX_TOKEN_VALUE_MAX bytes.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cx/oauth.h"

#define BUCKETS 1024
#define MAX_STATES (1u << 20)

typedef struct rec_s {
    struct rec_s *next;
    unsigned char *val; /* sealed; NULL when absent */
    size_t len;
    uint64_t val_fence; /* fence of the value's writer */
    uint64_t counter;   /* the newest fence handed out */
    uint64_t lock_fence;
    int64_t lock_until_ms;
    char id[];
} rec_t;

typedef struct state_s {
    struct state_s *next;
    unsigned char *val;
    size_t len;
    int64_t expires_ms;
    char state[CX_OAUTH_STATE_SIZE];
} state_t;

typedef struct emb_store_s {
    cx_token_store_t base; /* first: the public view */
    pthread_mutex_t mu;
    rec_t *recs[BUCKETS];
    state_t *states[BUCKETS];
    size_t nstates;
} emb_store_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static void wipe_free(unsigned char *p, size_t n)
{
    if (p) {
        OPENSSL_cleanse(p, n);
        free(p);
    }
}

static rec_t *find(emb_store_t *s, const char *id, int create)
{
    rec_t **slot = &s->recs[hash(id)], *r = *slot;
    while (r && strcmp(r->id, id) != 0)
        r = r->next;
    if (r == NULL && create) {
        size_t n = strlen(id) + 1;
        if ((r = calloc(1, sizeof *r + n)) == NULL)
            return NULL;
        memcpy(r->id, id, n);
        r->next = *slot;
        *slot = r;
    }
    return r;
}

static int bad_id(const char *id)
{
    return id == NULL || id[0] == '\0' || strlen(id) > 512;
}

static int emb_get(cx_token_store_t *base, const char *id, unsigned char *buf, size_t cap,
                   size_t *len, uint64_t *fence, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (bad_id(id) || buf == NULL || len == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad arguments");
    pthread_mutex_lock(&s->mu);
    rec_t *r = find(s, id, 0);
    int rc = 0;
    if (r == NULL || r->val == NULL)
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "token store: no token");
    else if (r->len > cap)
        rc = cx_error_set(err, CX_ENOSPC, NULL, "token store: buffer too small");
    else {
        memcpy(buf, r->val, r->len);
        *len = r->len;
        if (fence)
            *fence = r->val_fence;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int emb_put(cx_token_store_t *base, const char *id, const unsigned char *val, size_t len,
                   uint64_t fence, uint64_t *written, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (bad_id(id) || val == NULL || len == 0 || len > CX_TOKEN_VALUE_MAX)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad arguments");
    unsigned char *copy = malloc(len);
    if (copy == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    memcpy(copy, val, len);
    pthread_mutex_lock(&s->mu);
    rec_t *r = find(s, id, 1);
    int rc = 0;
    if (r == NULL) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    } else {
        if (fence == 0)
            fence = ++r->counter;
        /* Fencing: only the newest fence writes, and never over a value of a newer one. */
        if (fence != r->counter || (r->val && r->val_fence >= fence)) {
            rc = CX_ECONFLICT;
        } else {
            wipe_free(r->val, r->len);
            r->val = copy;
            r->len = len;
            r->val_fence = fence;
            copy = NULL;
            if (written)
                *written = fence;
        }
    }
    pthread_mutex_unlock(&s->mu);
    wipe_free(copy, len);
    return rc;
}

static int emb_lock(cx_token_store_t *base, const char *id, uint32_t ttl_ms, uint64_t *fence,
                    cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (bad_id(id) || fence == NULL || ttl_ms == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad arguments");
    int64_t now = mono_ms();
    pthread_mutex_lock(&s->mu);
    rec_t *r = find(s, id, 1);
    int rc = 0;
    if (r == NULL)
        rc = cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    else if (r->lock_fence && now < r->lock_until_ms)
        rc = CX_EIN_PROGRESS;
    else {
        *fence = r->lock_fence = ++r->counter;
        r->lock_until_ms = now + ttl_ms;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int emb_unlock(cx_token_store_t *base, const char *id, uint64_t fence, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (bad_id(id))
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad arguments");
    pthread_mutex_lock(&s->mu);
    rec_t *r = find(s, id, 0);
    if (r && r->lock_fence == fence)
        r->lock_fence = 0;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int emb_del(cx_token_store_t *base, const char *id, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (bad_id(id))
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad arguments");
    pthread_mutex_lock(&s->mu);
    rec_t *r = find(s, id, 0);
    if (r) {
        r->counter++; /* fences off any refresh in flight */
        wipe_free(r->val, r->len);
        r->val = NULL;
        r->len = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Drops the bucket's expired states. */
static void sweep(emb_store_t *s, state_t **slot, int64_t now)
{
    while (*slot) {
        state_t *st = *slot;
        if (st->expires_ms <= now) {
            *slot = st->next;
            wipe_free(st->val, st->len);
            free(st);
            s->nstates--;
        } else {
            slot = &st->next;
        }
    }
}

static int emb_state_put(cx_token_store_t *base, const char *state, const unsigned char *val,
                         size_t len, uint32_t ttl_s, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (state == NULL || strlen(state) >= CX_OAUTH_STATE_SIZE || val == NULL || len == 0 ||
        len > CX_TOKEN_VALUE_MAX || ttl_s == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad state");
    state_t *st = calloc(1, sizeof *st);
    unsigned char *copy = malloc(len);
    if (st == NULL || copy == NULL) {
        free(st);
        free(copy);
        return cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    }
    memcpy(copy, val, len);
    st->val = copy;
    st->len = len;
    strcpy(st->state, state);
    int64_t now = mono_ms();
    st->expires_ms = now + (int64_t)ttl_s * 1000;
    pthread_mutex_lock(&s->mu);
    state_t **slot = &s->states[hash(state)];
    sweep(s, slot, now);
    int rc = 0;
    if (s->nstates >= MAX_STATES) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "token store: too many pending authorisations");
    } else {
        st->next = *slot;
        *slot = st;
        s->nstates++;
        st = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (st) {
        wipe_free(st->val, st->len);
        free(st);
    }
    return rc;
}

static int emb_state_take(cx_token_store_t *base, const char *state, unsigned char *buf, size_t cap,
                          size_t *len, cx_error_t *err)
{
    emb_store_t *s = (emb_store_t *)base;
    if (state == NULL || buf == NULL || len == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad state");
    int64_t now = mono_ms();
    pthread_mutex_lock(&s->mu);
    state_t **slot = &s->states[hash(state)];
    sweep(s, slot, now);
    while (*slot && strcmp((*slot)->state, state) != 0)
        slot = &(*slot)->next;
    state_t *st = *slot;
    int rc = 0;
    if (st == NULL) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "token store: unknown state");
    } else {
        *slot = st->next; /* usable once, whatever happens next */
        s->nstates--;
        if (st->len > cap) {
            rc = cx_error_set(err, CX_ENOSPC, NULL, "token store: buffer too small");
        } else {
            memcpy(buf, st->val, st->len);
            *len = st->len;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (st) {
        wipe_free(st->val, st->len);
        free(st);
    }
    return rc;
}

static int emb_ping(cx_token_store_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void emb_destroy(cx_token_store_t *base)
{
    emb_store_t *s = (emb_store_t *)base;
    if (s == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (rec_t *r = s->recs[b], *n; r; r = n) {
            n = r->next;
            wipe_free(r->val, r->len);
            free(r);
        }
        for (state_t *st = s->states[b], *n; st; st = n) {
            n = st->next;
            wipe_free(st->val, st->len);
            free(st);
        }
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const cx_token_store_ops_t EMB_OPS = {
    .get = emb_get,
    .put = emb_put,
    .lock = emb_lock,
    .unlock = emb_unlock,
    .del = emb_del,
    .state_put = emb_state_put,
    .state_take = emb_state_take,
    .ping = emb_ping,
    .destroy = emb_destroy,
};

int cx_token_store_embedded(cx_token_store_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    emb_store_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        *out = NULL;
        return cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    }
    s->base.ops = &EMB_OPS;
    pthread_mutex_init(&s->mu, NULL);
    *out = &s->base;
    return 0;
}
