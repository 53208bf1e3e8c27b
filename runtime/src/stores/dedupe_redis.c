/* The Redis dedupe store: claims shared by every gateway process (cx/dedupe_store.h).
 *
 * Each operation is one Lua script over the whole batch, run with EVALSHA (EVAL once after a
 * NOSCRIPT), so a batch costs one round trip and each key's check-and-set is atomic:
 *
 *   claim     SET key "v1|processing|<token>" NX PX ttl; if the key exists, GET it and
 *             answer DONE or IN_PROGRESS from its value;
 *   complete  if GET key is "v1|processing|<token>" or absent: SET key "v1|done|<token>" EX ttl;
 *   release   if GET key == "v1|processing|<token>": DEL key.
 *
 * Decisions:
 *   - A stored value the script cannot parse (a later format "v2|...", a foreign value, a key
 *     of another type) counts as DONE. Skipping an event can be repaired by a replay; running
 *     it twice (a second payment, a second message to a customer) cannot. The cost is that a
 *     rollback to this release skips keys a newer release is still processing.
 *   - The same key twice in one batch: the second sees the first's claim, IN_PROGRESS.
 *   - Every script is idempotent for its own token (a claim finding its own value is OWNED,
 *     a complete finding its own "done" succeeds), so re-sending a batch whose reply was lost
 *     cannot produce a second owner.
 *   - A Redis error reply (OOM, READONLY, LOADING, NOAUTH, a script error) is CX_EUNAVAILABLE
 *     like a dead connection: either way the batch cannot be made durable, and the pipeline
 *     answers 503 so the provider retries.
 *   - complete records "done" on an absent key (a claim that lapsed with nobody else taking
 *     the key, or one a Redis restart lost): the handler ran, so its redelivery is a duplicate.
 * docs/internals/dedupe-store.md has the failure cases.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/dedupe_internal.h"
#include "stores/redis_conn.h"

/* KEYS[i]: full keys. ARGV[1]: processing TTL in ms; ARGV[1 + i]: KEYS[i]'s token.
 * Returns one integer per key: 1 OWNED, 2 DONE, 3 IN_PROGRESS (cx_claim_state_t). */
static const char CLAIM_LUA[] =
    "local ttl = ARGV[1]\n"
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local v = 'v1|processing|' .. ARGV[i + 1]\n"
    "  if redis.call('SET', KEYS[i], v, 'NX', 'PX', ttl) then\n"
    "    out[i] = 1\n"
    "  else\n"
    "    local cur = redis.pcall('GET', KEYS[i])\n"
    "    if cur == v then\n"
    "      out[i] = 1\n" /* our own claim: this batch was sent again */
    "    elseif type(cur) == 'string' and string.sub(cur, 1, 14) == 'v1|processing|' then\n"
    "      out[i] = 3\n"
    "    else\n"
    "      out[i] = 2\n" /* v1|done|..., or a value we cannot parse: DONE */
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[i]: full keys. ARGV[2i - 1]: KEYS[i]'s token; ARGV[2i]: its done TTL in seconds.
 * Returns one integer per key: 1 done, 0 another claim holds or completed the key.
 * An absent key is recorded done too: the claim lapsed (slow handler, or a Redis restart
 * lost it) but nobody else took the key, and the handler did run, so a redelivery must be
 * deduped rather than run it again. */
static const char COMPLETE_LUA[] =
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local tok = ARGV[2 * i - 1]\n"
    "  local cur = redis.pcall('GET', KEYS[i])\n"
    "  if cur == 'v1|processing|' .. tok or cur == false then\n"
    "    redis.call('SET', KEYS[i], 'v1|done|' .. tok, 'EX', ARGV[2 * i])\n"
    "    out[i] = 1\n"
    "  elseif cur == 'v1|done|' .. tok then\n"
    "    out[i] = 1\n"
    "  else\n"
    "    out[i] = 0\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[i]: full keys. ARGV[i]: KEYS[i]'s token. Returns one integer per key: 1 released (or
 * already gone), 0 another claim or a done value holds the key. */
static const char RELEASE_LUA[] = "local out = {}\n"
                                  "for i = 1, #KEYS do\n"
                                  "  local cur = redis.pcall('GET', KEYS[i])\n"
                                  "  if cur == 'v1|processing|' .. ARGV[i] then\n"
                                  "    redis.call('DEL', KEYS[i])\n"
                                  "    out[i] = 1\n"
                                  "  elseif cur == false then\n"
                                  "    out[i] = 1\n"
                                  "  else\n"
                                  "    out[i] = 0\n"
                                  "  end\n"
                                  "end\n"
                                  "return out\n";

/* KEYS[i]: full keys. ARGV[1]: TTL in ms; ARGV[1 + i]: KEYS[i]'s token. Returns one integer
 * per key: 1 OWNED (renewed, or claimed again when absent), 2 DONE, 3 IN_PROGRESS. */
static const char RENEW_LUA[] =
    "local ttl = ARGV[1]\n"
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local v = 'v1|processing|' .. ARGV[i + 1]\n"
    "  local cur = redis.pcall('GET', KEYS[i])\n"
    "  if cur == v then\n"
    "    redis.call('PEXPIRE', KEYS[i], ttl)\n"
    "    out[i] = 1\n"
    "  elseif cur == false then\n"
    "    redis.call('SET', KEYS[i], v, 'PX', ttl)\n"
    "    out[i] = 1\n"
    "  elseif type(cur) == 'string' and string.sub(cur, 1, 14) == 'v1|processing|' then\n"
    "    out[i] = 3\n"
    "  else\n"
    "    out[i] = 2\n"
    "  end\n"
    "end\n"
    "return out\n";

typedef struct redis_store_s {
    cx_dedupe_store_t base; /* first: the public view */
    size_t prefix_len;
    cx__redis_pool_t *pool;
    cx__redis_script_t claim;
    cx__redis_script_t complete;
    cx__redis_script_t release;
    cx__redis_script_t renew;
} redis_store_t;

/* The arguments of one script call, built in one allocation. */
typedef struct call_s {
    size_t m;    /* keys sent */
    size_t *idx; /* items[idx[j]] is key j */
    const char **keys;
    size_t *keylens;
    const char **args;
    size_t *arglens;
    size_t nargs;
    char *keybuf; /* prefixed keys, back to back */
    char *numbuf; /* decimal TTLs, 16 bytes each */
    void *mem;
} call_t;

static int call_init(call_t *c, size_t m, size_t keybytes, size_t nargs, size_t nnums,
                     cx_error_t *err)
{
    size_t sz = m * (sizeof(size_t) * 2 + sizeof(char *)) +
                nargs * (sizeof(char *) + sizeof(size_t)) + nnums * 16 + keybytes;
    memset(c, 0, sizeof *c);
    c->mem = malloc(sz ? sz : 1);
    if (c->mem == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis dedupe store: out of memory");
    /* Pointer-sized arrays first, then bytes: every member stays aligned. */
    char *p = c->mem;
    c->idx = (size_t *)(void *)p;
    p += m * sizeof(size_t);
    c->keylens = (size_t *)(void *)p;
    p += m * sizeof(size_t);
    c->arglens = (size_t *)(void *)p;
    p += nargs * sizeof(size_t);
    c->keys = (const char **)(void *)p;
    p += m * sizeof(char *);
    c->args = (const char **)(void *)p;
    p += nargs * sizeof(char *);
    c->numbuf = p;
    p += nnums * 16;
    c->keybuf = p;
    c->m = m;
    return 0;
}

/* Appends prefix + key as key number j of c (keybuf has room: call_init sized it). */
static void call_key(call_t *c, size_t j, char **cursor, const redis_store_t *s, const char *key,
                     size_t len)
{
    char *k = *cursor;
    memcpy(k, s->base.prefix, s->prefix_len);
    memcpy(k + s->prefix_len, key, len);
    c->keys[j] = k;
    c->keylens[j] = s->prefix_len + len;
    *cursor = k + s->prefix_len + len;
}

/* Turns a script reply into n integers; anything else is CX_EUNAVAILABLE. */
static int reply_ints(const redis_store_t *s, const redisReply *r, size_t n, const char *op,
                      cx_error_t *err)
{
    if (r->type == REDIS_REPLY_ERROR) {
        int w = 0;
        while ((size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s refused (%.*s)",
                            cx__redis_pool_name(s->pool), op, w, r->str);
    }
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = r->element[i]->type == REDIS_REPLY_INTEGER;
    if (!ok)
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s: unexpected reply",
                            cx__redis_pool_name(s->pool), op);
    return 0;
}

static void clear_tokens(cx_dedupe_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        items[i].token[0] = '\0';
}

static int redis_claim(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                       uint32_t processing_ttl_ms, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    int rc = cx__dedupe_check_claim(items, n, processing_ttl_ms, NULL, err);
    if (rc != 0 || n == 0)
        return rc;
    size_t keybytes = 0;
    for (size_t i = 0; i < n; i++)
        keybytes += s->prefix_len + strlen(items[i].key);
    call_t c;
    rc = call_init(&c, n, keybytes, n + 1, 1, err);
    if (rc != 0)
        return rc;
    rc = cx__dedupe_new_tokens(items, n, err);
    if (rc != 0)
        goto done;
    char *cursor = c.keybuf;
    int ttl_len = snprintf(c.numbuf, 16, "%u", (unsigned)processing_ttl_ms);
    c.args[0] = c.numbuf;
    c.arglens[0] = (size_t)ttl_len;
    for (size_t i = 0; i < n; i++) {
        c.idx[i] = i;
        call_key(&c, i, &cursor, s, items[i].key, strlen(items[i].key));
        c.args[1 + i] = items[i].token;
        c.arglens[1 + i] = CX__DEDUPE_TOKEN_LEN;
    }
    redisReply *r = NULL;
    rc =
        cx__redis_eval(s->pool, &s->claim, n, c.keys, c.keylens, n + 1, c.args, c.arglens, &r, err);
    if (rc == 0)
        rc = reply_ints(s, r, n, "claim", err);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            long long v = r->element[i]->integer;
            items[i].state = v == 1   ? CX_CLAIM_OWNED
                             : v == 3 ? CX_CLAIM_IN_PROGRESS
                                      : CX_CLAIM_DONE;
            items[i].rc = 0;
            if (items[i].state != CX_CLAIM_OWNED)
                items[i].token[0] = '\0';
        }
    }
    freeReplyObject(r);
done:
    if (rc != 0)
        clear_tokens(items, n);
    free(c.mem);
    return rc;
}

/* complete (done = true) and release: the items that pass cx__dedupe_check_owned go to the
 * script; the others get CX_EINVAL without a round trip. */
static int redis_finish(redis_store_t *s, cx_dedupe_item_t *items, size_t n, bool done,
                        cx_error_t *err)
{
    const char *op = done ? "complete" : "release";
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0) {
        if (items && n <= CX_DEDUPE_BATCH_MAX)
            cx__dedupe_set_rc(items, n, rc);
        return rc;
    }
    size_t m = 0, keybytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        items[i].rc = cx__dedupe_check_owned(&items[i], &len);
        if (items[i].rc == 0) {
            m++;
            keybytes += s->prefix_len + len;
        }
    }
    if (m == 0)
        return 0;
    size_t per = done ? 2 : 1;
    call_t c;
    rc = call_init(&c, m, keybytes, m * per, done ? m : 0, err);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            if (items[i].rc == 0)
                items[i].rc = rc;
        return rc;
    }
    char *cursor = c.keybuf;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].rc != 0)
            continue;
        c.idx[j] = i;
        call_key(&c, j, &cursor, s, items[i].key, strlen(items[i].key));
        c.args[per * j] = items[i].token;
        c.arglens[per * j] = CX__DEDUPE_TOKEN_LEN;
        if (done) {
            uint32_t ttl = items[i].done_ttl_s ? items[i].done_ttl_s : CX_DEDUPE_DEFAULT_DONE_TTL_S;
            char *num = c.numbuf + 16 * j;
            c.args[per * j + 1] = num;
            c.arglens[per * j + 1] = (size_t)snprintf(num, 16, "%u", (unsigned)ttl);
        }
        j++;
    }
    redisReply *r = NULL;
    rc = cx__redis_eval(s->pool, done ? &s->complete : &s->release, m, c.keys, c.keylens, m * per,
                        c.args, c.arglens, &r, err);
    if (rc == 0)
        rc = reply_ints(s, r, m, op, err);
    for (j = 0; j < m; j++) {
        cx_dedupe_item_t *it = &items[c.idx[j]];
        if (rc != 0)
            it->rc = rc;
        else
            it->rc = r->element[j]->integer == 1 ? 0 : CX_ETIMEOUT;
    }
    freeReplyObject(r);
    free(c.mem);
    return rc;
}

static int redis_complete(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                          cx_error_t *err)
{
    return redis_finish((redis_store_t *)base, items, n, true, err);
}

static int redis_release(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                         cx_error_t *err)
{
    return redis_finish((redis_store_t *)base, items, n, false, err);
}

static int redis_renew(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                       uint32_t ttl_ms, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0)
        return rc;
    if (ttl_ms == 0)
        return cx_error_set(err, CX_EINVAL, "ttl_ms", "renew TTL is 0");
    size_t m = 0, keybytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        items[i].rc = cx__dedupe_check_owned(&items[i], &len);
        if (items[i].rc == 0) {
            m++;
            keybytes += s->prefix_len + len;
        }
    }
    if (m == 0)
        return 0;
    call_t c;
    rc = call_init(&c, m, keybytes, m + 1, 1, err);
    if (rc != 0)
        return rc;
    char *cursor = c.keybuf;
    int ttl_len = snprintf(c.numbuf, 16, "%u", (unsigned)ttl_ms);
    c.args[0] = c.numbuf;
    c.arglens[0] = (size_t)ttl_len;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].rc != 0)
            continue;
        c.idx[j] = i;
        call_key(&c, j, &cursor, s, items[i].key, strlen(items[i].key));
        c.args[1 + j] = items[i].token;
        c.arglens[1 + j] = CX__DEDUPE_TOKEN_LEN;
        j++;
    }
    redisReply *r = NULL;
    rc = cx__redis_eval(s->pool, &s->renew, m, c.keys, c.keylens, m + 1, c.args, c.arglens, &r,
                        err);
    if (rc == 0)
        rc = reply_ints(s, r, m, "renew", err);
    if (rc == 0) {
        for (j = 0; j < m; j++) {
            long long v = r->element[j]->integer;
            items[c.idx[j]].state = v == 1   ? CX_CLAIM_OWNED
                                    : v == 3 ? CX_CLAIM_IN_PROGRESS
                                             : CX_CLAIM_DONE;
        }
    }
    freeReplyObject(r);
    free(c.mem);
    return rc;
}

static int redis_ping(cx_dedupe_store_t *base, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_STATUS || r->len != 4 || memcmp(r->str, "PONG", 4) != 0) {
        int w = 0;
        while (r->type == REDIS_REPLY_ERROR && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        rc = cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: PING refused (%.*s)",
                          cx__redis_pool_name(s->pool), w, r->str ? r->str : "");
    }
    freeReplyObject(r);
    return rc;
}

static void redis_destroy(cx_dedupe_store_t *base)
{
    redis_store_t *s = (redis_store_t *)base;
    if (s == NULL)
        return;
    cx__redis_pool_destroy(s->pool);
    free(s);
}

static const cx_dedupe_store_ops_t REDIS_OPS = {
    .claim = redis_claim,
    .complete = redis_complete,
    .release = redis_release,
    .ping = redis_ping,
    .destroy = redis_destroy,
    .renew = redis_renew,
};

int cx_dedupe_store_redis(const char *environment, const cx_redis_options_t *opts,
                          cx_dedupe_store_t **out, cx_error_t *err)
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
        return cx_error_set(err, CX_ENOMEM, NULL, "redis dedupe store: out of memory");
    s->base.ops = &REDIS_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    s->prefix_len = strlen(prefix);
    if (cx__redis_script_init(&s->claim, CLAIM_LUA) != 0 ||
        cx__redis_script_init(&s->complete, COMPLETE_LUA) != 0 ||
        cx__redis_script_init(&s->release, RELEASE_LUA) != 0 ||
        cx__redis_script_init(&s->renew, RENEW_LUA) != 0) {
        free(s);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the dedupe scripts");
    }
    rc = cx__redis_pool_create(opts, &s->pool, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}
