/* The Redis token store (cx/oauth.h), shared by every process.
 *
 *   cx:<env>:oauth:{<id>}:token   "v1|<fence>|<base64 of the sealed token>"
 *   cx:<env>:oauth:{<id>}:fence   the fencing counter (INCR)
 *   cx:<env>:oauth:{<id>}:lock    the refresh lock: the holder's fence, SET ... PX ttl
 *   cx:<env>:oauth:state:<state>  "v1|<base64 of the sealed state>", EX ttl
 *
 * Each operation is one Lua script (or one command), atomic in Redis:
 *   lock    if the lock is free: fence = INCR counter; SET lock fence PX ttl;
 *   put     only if the caller's fence is the counter's current value (no lock or write was
 *           handed out since) and newer than the stored value's; fence 0 = INCR first;
 *   unlock  DEL the lock only if it still holds the caller's fence;
 *   take    GET + DEL of a state (usable once).
 * The counter never expires: a fence, once handed out, is never handed out again, which is
 * what makes a lapsed holder's late write detectable.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/aead.h"
#include "cx/oauth.h"
#include "stores/dedupe_internal.h" /* cx__dedupe_prefix: the environment rules */
#include "stores/redis_conn.h"

/* KEYS: token, fence. ARGV: fence ("0" = take a new one), value. Returns {1, fence} or
 * {0, the fence that won}. */
static const char PUT_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local f = tonumber(ARGV[1])\n"
    "if f == 0 then f = redis.call('INCR', KEYS[2])\n"
    "elseif f ~= cur then return {0, cur} end\n"
    "local old = redis.call('GET', KEYS[1])\n"
    "if old then\n"
    "  local of = tonumber(string.match(old, '^v1|(%d+)|'))\n"
    "  if of and of >= f then return {0, of} end\n"
    "end\n"
    "redis.call('SET', KEYS[1], 'v1|' .. string.format('%d', f) .. '|' .. ARGV[2])\n"
    "return {1, f}\n";

/* KEYS: lock, fence. ARGV: ttl in ms. Returns the new fence, or 0 when the lock is held. */
static const char LOCK_LUA[] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
                               "local f = redis.call('INCR', KEYS[2])\n"
                               "redis.call('SET', KEYS[1], f, 'PX', ARGV[1])\n"
                               "return f\n";

/* KEYS: lock. ARGV: fence. */
static const char UNLOCK_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                 "  return redis.call('DEL', KEYS[1])\n"
                                 "end\n"
                                 "return 0\n";

/* KEYS: token, fence. */
static const char DEL_LUA[] = "redis.call('INCR', KEYS[2])\n"
                              "return redis.call('DEL', KEYS[1])\n";

/* KEYS: state. Returns its value (then gone) or nil. */
static const char TAKE_LUA[] = "local v = redis.call('GET', KEYS[1])\n"
                               "if v then redis.call('DEL', KEYS[1]) end\n"
                               "return v\n";

typedef struct redis_store_s {
    cx_token_store_t base; /* first: the public view */
    char prefix[96];       /* "cx:<env>:oauth:" */
    cx__redis_pool_t *pool;
    cx__redis_script_t put, lock, unlock, del, take;
} redis_store_t;

typedef struct keys_s {
    char token[700], fence[700], lock[700];
} keys_t;

static int make_keys(const redis_store_t *s, const char *id, keys_t *k, cx_error_t *err)
{
    if (id == NULL || id[0] == '\0' || strlen(id) > 512)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad id");
    snprintf(k->token, sizeof k->token, "%s{%s}:token", s->prefix, id);
    snprintf(k->fence, sizeof k->fence, "%s{%s}:fence", s->prefix, id);
    snprintf(k->lock, sizeof k->lock, "%s{%s}:lock", s->prefix, id);
    return 0;
}

static int refused(const redis_store_t *s, const redisReply *r, const char *op, cx_error_t *err)
{
    if (r && r->type == REDIS_REPLY_ERROR) {
        int w = 0;
        while ((size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: token %s refused (%.*s)",
                            cx__redis_pool_name(s->pool), op, w, r->str);
    }
    return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: token %s: unexpected reply",
                        cx__redis_pool_name(s->pool), op);
}

static int eval(redis_store_t *s, const cx__redis_script_t *sc, size_t nkeys, const char **keys,
                size_t nargs, const char **args, const size_t *arglens, redisReply **r,
                cx_error_t *err)
{
    size_t keylens[3];
    for (size_t i = 0; i < nkeys; i++)
        keylens[i] = strlen(keys[i]);
    return cx__redis_eval(s->pool, sc, nkeys, keys, keylens, nargs, args, arglens, r, err);
}

/* "v1|<digits>|<base64>" -> fence and the decoded bytes. */
static int parse_value(const char *v, size_t n, unsigned char *buf, size_t cap, size_t *len,
                       uint64_t *fence)
{
    if (n < 5 || memcmp(v, "v1|", 3) != 0)
        return CX_ECONFIG;
    size_t i = 3;
    uint64_t f = 0;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        f = f * 10 + (uint64_t)(v[i++] - '0');
    if (i == 3 || i >= n || v[i] != '|')
        return CX_ECONFIG;
    i++;
    long got = cx__b64_decode(v + i, n - i, buf, cap);
    if (got < 0)
        return (n - i) / 4 * 3 > cap ? CX_ENOSPC : CX_ECRYPTO;
    *len = (size_t)got;
    if (fence)
        *fence = f;
    return 0;
}

static int r_get(cx_token_store_t *base, const char *id, unsigned char *buf, size_t cap,
                 size_t *len, uint64_t *fence, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    keys_t k;
    int rc = make_keys(s, id, &k, err);
    if (rc != 0)
        return rc;
    const char *argv[] = {"GET", k.token};
    cx__redis_cmd_t cmd = {2, argv, NULL};
    redisReply *r;
    if ((rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err)) != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "token store: no token");
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = refused(s, r, "get", err);
    } else {
        rc = parse_value(r->str, r->len, buf, cap, len, fence);
        if (rc == CX_ECONFIG)
            cx_error_set(err, rc, NULL, "token store: value in an unknown format (newer release?)");
        else if (rc != 0)
            cx_error_set(err, rc, NULL, "token store: unreadable value");
    }
    freeReplyObject(r);
    return rc;
}

static int r_put(cx_token_store_t *base, const char *id, const unsigned char *val, size_t len,
                 uint64_t fence, uint64_t *written, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    keys_t k;
    int rc = make_keys(s, id, &k, err);
    if (rc != 0)
        return rc;
    if (val == NULL || len == 0 || len > CX_TOKEN_VALUE_MAX)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad value");
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *b64 = malloc(cap);
    if (b64 == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "token store: out of memory");
    long n = cx__b64_encode(val, len, b64, cap);
    char f[24];
    snprintf(f, sizeof f, "%" PRIu64, fence);
    const char *keys[2] = {k.token, k.fence};
    const char *args[2] = {f, b64};
    size_t lens[2] = {strlen(f), (size_t)n};
    redisReply *r;
    rc = eval(s, &s->put, 2, keys, 2, args, lens, &r, err);
    free(b64);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        rc = refused(s, r, "put", err);
    else if (r->element[0]->integer != 1)
        rc = CX_ECONFLICT;
    else if (written)
        *written = (uint64_t)r->element[1]->integer;
    freeReplyObject(r);
    return rc;
}

static int r_lock(cx_token_store_t *base, const char *id, uint32_t ttl_ms, uint64_t *fence,
                  cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    keys_t k;
    int rc = make_keys(s, id, &k, err);
    if (rc != 0)
        return rc;
    if (fence == NULL || ttl_ms == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad lock");
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", ttl_ms);
    const char *keys[2] = {k.lock, k.fence};
    const char *args[1] = {ttl};
    size_t lens[1] = {strlen(ttl)};
    redisReply *r;
    if ((rc = eval(s, &s->lock, 2, keys, 1, args, lens, &r, err)) != 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = refused(s, r, "lock", err);
    else if (r->integer == 0)
        rc = CX_EIN_PROGRESS;
    else
        *fence = (uint64_t)r->integer;
    freeReplyObject(r);
    return rc;
}

static int r_unlock(cx_token_store_t *base, const char *id, uint64_t fence, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    keys_t k;
    int rc = make_keys(s, id, &k, err);
    if (rc != 0)
        return rc;
    char f[24];
    snprintf(f, sizeof f, "%" PRIu64, fence);
    const char *keys[1] = {k.lock};
    const char *args[1] = {f};
    size_t lens[1] = {strlen(f)};
    redisReply *r;
    if ((rc = eval(s, &s->unlock, 1, keys, 1, args, lens, &r, err)) != 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = refused(s, r, "unlock", err);
    freeReplyObject(r);
    return rc;
}

static int r_del(cx_token_store_t *base, const char *id, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    keys_t k;
    int rc = make_keys(s, id, &k, err);
    if (rc != 0)
        return rc;
    const char *keys[2] = {k.token, k.fence};
    redisReply *r;
    if ((rc = eval(s, &s->del, 2, keys, 0, NULL, NULL, &r, err)) != 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = refused(s, r, "del", err);
    freeReplyObject(r);
    return rc;
}

static int state_key(const redis_store_t *s, const char *state, char *out, size_t cap,
                     cx_error_t *err)
{
    if (state == NULL || state[0] == '\0' || strlen(state) >= CX_OAUTH_STATE_SIZE)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad state");
    snprintf(out, cap, "%sstate:%s", s->prefix, state);
    return 0;
}

static int r_state_put(cx_token_store_t *base, const char *state, const unsigned char *val,
                       size_t len, uint32_t ttl_s, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    char key[256];
    int rc = state_key(s, state, key, sizeof key, err);
    if (rc != 0)
        return rc;
    if (val == NULL || len == 0 || len > 4096 || ttl_s == 0)
        return cx_error_set(err, CX_EINVAL, NULL, "token store: bad state value");
    char b64[4096 * 4 / 3 + 16], v[sizeof b64 + 4], ttl[16];
    long n = cx__b64_encode(val, len, b64, sizeof b64);
    int vl = snprintf(v, sizeof v, "v1|%s", b64);
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    const char *argv[] = {"SET", key, v, "EX", ttl};
    size_t lens[] = {3, strlen(key), (size_t)vl, 2, strlen(ttl)};
    cx__redis_cmd_t cmd = {5, argv, lens};
    redisReply *r;
    (void)n;
    if ((rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err)) != 0)
        return rc;
    if (r->type != REDIS_REPLY_STATUS)
        rc = refused(s, r, "state", err);
    freeReplyObject(r);
    return rc;
}

static int r_state_take(cx_token_store_t *base, const char *state, unsigned char *buf, size_t cap,
                        size_t *len, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    char key[256];
    int rc = state_key(s, state, key, sizeof key, err);
    if (rc != 0)
        return rc;
    const char *keys[1] = {key};
    redisReply *r;
    if ((rc = eval(s, &s->take, 1, keys, 0, NULL, NULL, &r, err)) != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "token store: unknown state");
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = refused(s, r, "state", err);
    } else if (r->len < 4 || memcmp(r->str, "v1|", 3) != 0) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "token store: state in an unknown format");
    } else {
        long got = cx__b64_decode(r->str + 3, r->len - 3, buf, cap);
        if (got < 0)
            rc = cx_error_set(err, CX_ENOSPC, NULL, "token store: unreadable state");
        else
            *len = (size_t)got;
    }
    freeReplyObject(r);
    return rc;
}

static int r_ping(cx_token_store_t *base, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_STATUS)
        rc = refused(s, r, "ping", err);
    freeReplyObject(r);
    return rc;
}

static void r_destroy(cx_token_store_t *base)
{
    redis_store_t *s = (redis_store_t *)base;
    if (s == NULL)
        return;
    cx__redis_pool_destroy(s->pool);
    free(s);
}

static const cx_token_store_ops_t REDIS_OPS = {
    .get = r_get,
    .put = r_put,
    .lock = r_lock,
    .unlock = r_unlock,
    .del = r_del,
    .state_put = r_state_put,
    .state_take = r_state_take,
    .ping = r_ping,
    .destroy = r_destroy,
};

int cx_token_store_redis(const char *environment, const cx_redis_options_t *opts,
                         cx_token_store_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__dedupe_prefix(environment, prefix, err);
    if (rc != 0)
        return rc;
    redis_store_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis token store: out of memory");
    s->base.ops = &REDIS_OPS;
    size_t pl = strlen(prefix);
    snprintf(s->prefix, sizeof s->prefix, "%.*soauth:", (int)(pl - strlen("dedupe:")), prefix);
    if (cx__redis_script_init(&s->put, PUT_LUA) != 0 ||
        cx__redis_script_init(&s->lock, LOCK_LUA) != 0 ||
        cx__redis_script_init(&s->unlock, UNLOCK_LUA) != 0 ||
        cx__redis_script_init(&s->del, DEL_LUA) != 0 ||
        cx__redis_script_init(&s->take, TAKE_LUA) != 0) {
        free(s);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the token store scripts");
    }
    rc = cx__redis_pool_create(opts, &s->pool, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}
