/* The embedded intent store (cx/outbound.h): an in-process hash table of encoded v1 values
 * with expiry, behind one mutex. It applies exactly the transitions of the Redis scripts
 * (intent_redis.c), on the same value format, so tests of one hold for the other. For
 * development and tests: it is exactly-once within one process only. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/intent_internal.h"

#define DEFAULT_MAX_KEYS (1u << 20)

typedef struct entry_s {
    struct entry_s *next;
    uint64_t hash;
    int64_t expires_ms; /* wall clock */
    size_t vlen;
    char *value;
    char key[]; /* NUL-terminated */
} entry_t;

typedef struct emb_s {
    cx_intent_store_t base; /* first: the public view */
    pthread_mutex_t mu;
    entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t max_keys;
} emb_t;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void entry_free(entry_t *e)
{
    if (e) {
        free(e->value);
        free(e);
    }
}

/* Finds key (removing it when expired). *slot is the link pointing at the result. */
static entry_t *find(emb_t *s, const char *key, uint64_t h, int64_t now, entry_t ***slot_out)
{
    entry_t **slot = &s->buckets[h & (s->nbuckets - 1)];
    while (*slot) {
        entry_t *e = *slot;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            if (e->expires_ms <= now) {
                *slot = e->next;
                entry_free(e);
                s->count--;
                break;
            }
            if (slot_out)
                *slot_out = slot;
            return e;
        }
        slot = &e->next;
    }
    return NULL;
}

static void sweep(emb_t *s, int64_t now)
{
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry_t **slot = &s->buckets[i];
        while (*slot) {
            entry_t *e = *slot;
            if (e->expires_ms <= now) {
                *slot = e->next;
                entry_free(e);
                s->count--;
            } else {
                slot = &e->next;
            }
        }
    }
}

static void grow(emb_t *s)
{
    size_t nb = s->nbuckets * 2;
    entry_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry_t *e = s->buckets[i];
        while (e) {
            entry_t *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

/* Replaces e's value with a copy of v. */
static int set_value(entry_t *e, const char *v, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return CX_ENOMEM;
    memcpy(copy, v, n);
    copy[n] = '\0';
    free(e->value);
    e->value = copy;
    e->vlen = n;
    return 0;
}

static int insert(emb_t *s, const char *key, size_t len, uint64_t h, const char *v, size_t n,
                  int64_t expires, int64_t now, cx_error_t *err)
{
    if (s->count >= s->max_keys) {
        sweep(s, now);
        if (s->count >= s->max_keys)
            return cx_error_set(err, CX_ENOSPC, NULL, "embedded intent store full (%zu keys)",
                                s->max_keys);
    }
    entry_t *e = calloc(1, sizeof *e + len + 1);
    if (e == NULL || set_value(e, v, n) != 0) {
        free(e);
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded intent store: out of memory");
    }
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->expires_ms = expires;
    e->next = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = e;
    if (++s->count > s->nbuckets)
        grow(s);
    return 0;
}

static int emb_claim(cx_intent_store_t *base, const char *key, uint32_t lease_ms, uint32_t ttl_s,
                     cx_intent_t *out, cx_error_t *err)
{
    emb_t *s = (emb_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    if (lease_ms == 0 || ttl_s == 0)
        return cx_error_set(err, CX_EINVAL, "lease_ms", "intent lease or TTL is 0");
    char token[CX_DEDUPE_TOKEN_SIZE];
    rc = cx__intent_new_token(token, err);
    if (rc != 0)
        return rc;
    static _Thread_local char v[CX__INTENT_VALUE_MAX];
    uint64_t h = fnv1a(key, len);
    pthread_mutex_lock(&s->mu);
    int64_t now = cx__intent_wall_ms();
    entry_t *e = find(s, key, h, now, NULL);
    if (e == NULL) {
        int n = cx__intent_encode(CX__INTENT_SENDING, token, now, now + lease_ms,
                                  CX__INTENT_SENDING_TAIL, strlen(CX__INTENT_SENDING_TAIL), v);
        rc = insert(s, key, len, h, v, (size_t)n, now + (int64_t)ttl_s * 1000, now, err);
        pthread_mutex_unlock(&s->mu);
        if (rc == 0) {
            cx__intent_decode(v, (size_t)n, out);
            out->mine = 1;
        }
        return rc;
    }
    cx__intent_decode(e->value, e->vlen, out);
    if (out->state == CX_INTENT_SENDING && out->lease_until_ms <= now) {
        /* the owner died or overran its lease: the request may have gone out */
        int n = cx__intent_encode(CX__INTENT_IN_DOUBT, out->token, now, 0, CX__INTENT_DOUBT_TAIL,
                                  strlen(CX__INTENT_DOUBT_TAIL), v);
        rc = set_value(e, v, (size_t)n);
        if (rc == 0) {
            cx__intent_decode(v, (size_t)n, out);
            out->lapsed = 1;
        } else {
            rc = cx_error_set(err, CX_ENOMEM, NULL, "embedded intent store: out of memory");
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int emb_get(cx_intent_store_t *base, const char *key, cx_intent_t *out, cx_error_t *err)
{
    emb_t *s = (emb_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    entry_t *e = find(s, key, fnv1a(key, len), cx__intent_wall_ms(), NULL);
    if (e)
        cx__intent_decode(e->value, e->vlen, out);
    else
        cx__intent_none(out);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int emb_finish(cx_intent_store_t *base, const char *key, const cx_intent_t *rec,
                      uint32_t ttl_s, cx_intent_t *out, cx_error_t *err)
{
    emb_t *s = (emb_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    const char *word = cx__intent_state_word(rec->state);
    if (word == NULL || rec->state == CX_INTENT_SENDING || ttl_s == 0 || rec->token[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "rec", "finish needs DONE, FAILED or IN_DOUBT");
    static _Thread_local char tail[CX__INTENT_TAIL_MAX];
    static _Thread_local char v[CX__INTENT_VALUE_MAX];
    int tn = cx__intent_encode_tail(rec, tail);
    if (tn < 0)
        return cx_error_set(err, CX_EINVAL, "rec", "intent field too long");
    uint64_t h = fnv1a(key, len);
    pthread_mutex_lock(&s->mu);
    int64_t now = cx__intent_wall_ms();
    entry_t *e = find(s, key, h, now, NULL);
    if (e) {
        cx__intent_decode(e->value, e->vlen, out);
        bool ours = strcmp(out->token, rec->token) == 0 &&
                    (out->state == CX_INTENT_SENDING || out->state == CX_INTENT_IN_DOUBT);
        if (!ours) {
            pthread_mutex_unlock(&s->mu);
            return 0; /* reconciled meanwhile, or another claim: keep what is there */
        }
    }
    int n = cx__intent_encode(word, rec->token, now, 0, tail, (size_t)tn, v);
    if (e) {
        rc = set_value(e, v, (size_t)n);
        if (rc == 0)
            e->expires_ms = now + (int64_t)ttl_s * 1000;
        else
            rc = cx_error_set(err, CX_ENOMEM, NULL, "embedded intent store: out of memory");
    } else {
        rc = insert(s, key, len, h, v, (size_t)n, now + (int64_t)ttl_s * 1000, now, err);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == 0) {
        cx__intent_decode(v, (size_t)n, out);
        out->mine = 1;
    }
    return rc;
}

static int emb_release(cx_intent_store_t *base, const char *key, const char *token, cx_error_t *err)
{
    emb_t *s = (emb_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    if (token == NULL || token[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "token", "release needs the claim's token");
    static _Thread_local cx_intent_t cur;
    pthread_mutex_lock(&s->mu);
    entry_t **slot = NULL;
    entry_t *e = find(s, key, fnv1a(key, len), cx__intent_wall_ms(), &slot);
    if (e) {
        cx__intent_decode(e->value, e->vlen, &cur);
        if (cur.state == CX_INTENT_SENDING && strcmp(cur.token, token) == 0) {
            *slot = e->next;
            entry_free(e);
            s->count--;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int emb_reconcile(cx_intent_store_t *base, const char *key, cx_intent_state_t state,
                         const char *pmid, cx_intent_t *out, cx_error_t *err)
{
    emb_t *s = (emb_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    if (state != CX_INTENT_DONE && state != CX_INTENT_FAILED)
        return cx_error_set(err, CX_EINVAL, "status", "reconcile to DONE or FAILED only");
    static _Thread_local cx_intent_t rec;
    static _Thread_local char tail[CX__INTENT_TAIL_MAX];
    static _Thread_local char v[CX__INTENT_VALUE_MAX];
    cx__intent_none(&rec);
    if (pmid && strlen(pmid) > CX_INTENT_ID_MAX)
        return cx_error_set(err, CX_EINVAL, "provider_message_id", "provider id too long");
    snprintf(rec.provider_message_id, sizeof rec.provider_message_id, "%s", pmid ? pmid : "");
    rec.code = state == CX_INTENT_DONE ? 0 : CX_EPROVIDER_REJECTED;
    int tn = cx__intent_encode_tail(&rec, tail);
    pthread_mutex_lock(&s->mu);
    int64_t now = cx__intent_wall_ms();
    entry_t *e = find(s, key, fnv1a(key, len), now, NULL);
    if (e == NULL) {
        pthread_mutex_unlock(&s->mu);
        cx__intent_none(out);
        return cx_error_set(err, CX_ENOTFOUND, "key", "no intent under this key");
    }
    cx__intent_decode(e->value, e->vlen, out);
    if (out->state == CX_INTENT_SENDING || out->state == CX_INTENT_IN_DOUBT) {
        int n = cx__intent_encode(cx__intent_state_word(state), out->token, now, 0, tail,
                                  (size_t)tn, v);
        rc = set_value(e, v, (size_t)n);
        if (rc == 0) {
            cx__intent_decode(v, (size_t)n, out);
            out->mine = 1;
        } else {
            rc = cx_error_set(err, CX_ENOMEM, NULL, "embedded intent store: out of memory");
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int emb_ping(cx_intent_store_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void emb_destroy(cx_intent_store_t *base)
{
    emb_t *s = (emb_t *)base;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry_t *e = s->buckets[i];
        while (e) {
            entry_t *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const cx_intent_store_ops_t EMB_OPS = {
    .claim = emb_claim,
    .get = emb_get,
    .finish = emb_finish,
    .release = emb_release,
    .reconcile = emb_reconcile,
    .ping = emb_ping,
    .destroy = emb_destroy,
};

int cx_intent_store_embedded(const char *environment, size_t max_keys, cx_intent_store_t **out,
                             cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__store_prefix(environment, "intent", prefix, err);
    if (rc != 0)
        return rc;
    emb_t *s = calloc(1, sizeof *s);
    if (s)
        s->buckets = calloc(64, sizeof *s->buckets);
    if (s == NULL || s->buckets == NULL) {
        free(s);
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded intent store: out of memory");
    }
    s->nbuckets = 64;
    s->max_keys = max_keys ? max_keys : DEFAULT_MAX_KEYS;
    s->base.ops = &EMB_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    pthread_mutex_init(&s->mu, NULL);
    *out = &s->base;
    return 0;
}
