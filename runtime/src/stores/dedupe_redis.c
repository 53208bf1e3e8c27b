/* The Redis dedupe store: claims shared by every gateway process (cx/dedupe_store.h).
 *
 * A batch costs one round trip per operation. Claims and completions, the two operations
 * every item pays for, are plain pipelined commands (one per key, each atomic on its own):
 *
 *   claim     SET key "v1|processing|<token>" NX GET PX ttl: the old value comes back when
 *             the key exists (DONE or IN_PROGRESS from it), nil when this claim set it;
 *   complete  SET key "v1|done|<token>" GET EX ttl: done wins; the old value tells whether
 *             this claim still held the key (rc 0) or another one did (CX_ETIMEOUT).
 *
 * Release and renew, the rare paths, need compare-and-set and are Lua scripts over the batch,
 * run with EVALSHA (EVAL once after a NOSCRIPT):
 *
 *   release   if GET key == "v1|processing|<token>": DEL key;
 *   renew     if GET key == "v1|processing|<token>": PEXPIRE key ttl (SET it when absent).
 *
 * A server older than Redis 7.0 answers SET ... NX GET with a syntax error; the store then
 * switches, once, to Lua scripts for claim and complete with the same semantics.
 *
 * Decisions:
 *   - Plain commands over one script per batch: a script's fixed cost in redis-server (about
 *     60 us for 10 keys on our machine, against about 2 us per plain SET) made Redis the
 *     bound of the whole gateway (docs/internals/dedupe-store.md has the figures).
 *   - Done wins. A completion writes "done" even over another claim's value (that claim's
 *     process took the key after ours lapsed): our handler did run, so the item is processed,
 *     and keeping the other claim would let a failure there release the key and a redelivery
 *     run the item a third time. The item's rc is CX_ETIMEOUT: it may have run twice.
 *   - A stored value the store cannot parse (a later format "v2|...", a foreign value, a key
 *     of another type) counts as DONE. Skipping an event can be repaired by a replay; running
 *     it twice (a second payment, a second message to a customer) cannot. The cost is that a
 *     rollback to this release skips keys a newer release is still processing.
 *   - The same key twice in one batch: the second sees the first's claim, IN_PROGRESS.
 *   - Every operation is idempotent for its own token (a claim finding its own value is
 *     OWNED, a complete finding its own "done" succeeds), so re-sending a batch whose reply
 *     was lost cannot produce a second owner.
 *   - A Redis error reply (OOM, READONLY, LOADING, NOAUTH, a script error) is CX_EUNAVAILABLE
 *     like a dead connection: either way the batch cannot be made durable, and the pipeline
 *     answers 503 so the provider retries.
 *   - complete records "done" on an absent key (a claim that lapsed with nobody else taking
 *     the key, or one a Redis restart lost): the handler ran, so its redelivery is a duplicate.
 * docs/internals/dedupe-store.md has the failure cases.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/dedupe_internal.h"
#include "stores/redis_conn.h"

/* Legacy (Redis < 7.0) claim. KEYS[i]: full keys. ARGV[1]: processing TTL in ms; ARGV[1 + i]:
 * KEYS[i]'s token. Returns one integer per key: 1 OWNED, 2 DONE, 3 IN_PROGRESS (cx_claim_state_t). */
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

/* Legacy (Redis < 7.0) complete. KEYS[i]: full keys. ARGV[2i - 1]: KEYS[i]'s token; ARGV[2i]:
 * its done TTL in seconds. Writes done (done wins) and returns one integer per key: 1 when
 * this claim held the key, had completed it, or the key was absent; 0 when another claim
 * held or completed it. */
static const char COMPLETE_LUA[] =
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local tok = ARGV[2 * i - 1]\n"
    "  local cur = redis.pcall('GET', KEYS[i])\n"
    "  if type(cur) == 'table' then\n"
    "    out[i] = 0\n" /* a key of another type: not ours, leave it */
    "  else\n"
    "    redis.call('SET', KEYS[i], 'v1|done|' .. tok, 'EX', ARGV[2 * i])\n"
    "    if cur == false or cur == 'v1|processing|' .. tok or cur == 'v1|done|' .. tok then\n"
    "      out[i] = 1\n"
    "    else\n"
    "      out[i] = 0\n"
    "    end\n"
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
    /* Set once when the server refuses SET ... NX GET (Redis < 7.0): claim and complete run
     * as scripts from then on. Per store, read and written by every caller's thread. */
    atomic_bool legacy;
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

/* ---- Plain commands (claim and complete on Redis >= 7.0) -------------------------------- */

#define PLAIN_ARGC 7 /* SET key value NX GET PX ttl */
#define VALUE_MAX 48 /* "v1|processing|" + token */
#define LEGACY 1     /* not an error: the server has no SET ... NX GET; use the scripts */

static const char PROCESSING[] = "v1|processing|";
static const char DONE[] = "v1|done|";

/* n commands of up to PLAIN_ARGC arguments, their values and replies, in one allocation. */
typedef struct plain_s {
    cx__redis_cmd_t *cmds;
    const char **argv;
    size_t *lens;
    redisReply **replies;
    char *values;
    void *mem;
} plain_t;

static int plain_init(plain_t *pl, size_t n, cx_error_t *err)
{
    size_t sz = n * (sizeof(cx__redis_cmd_t) + PLAIN_ARGC * (sizeof(char *) + sizeof(size_t)) +
                     sizeof(redisReply *) + VALUE_MAX);
    pl->mem = malloc(sz);
    if (pl->mem == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis dedupe store: out of memory");
    char *p = pl->mem;
    pl->cmds = (cx__redis_cmd_t *)(void *)p;
    p += n * sizeof(cx__redis_cmd_t);
    pl->argv = (const char **)(void *)p;
    p += n * PLAIN_ARGC * sizeof(char *);
    pl->lens = (size_t *)(void *)p;
    p += n * PLAIN_ARGC * sizeof(size_t);
    pl->replies = (redisReply **)(void *)p;
    p += n * sizeof(redisReply *);
    pl->values = p;
    return 0;
}

/* Command j: SET key <state><token> followed by the options in opts (nopts of them). */
static void plain_set(plain_t *pl, size_t j, const call_t *c, const char *state,
                      const char *token, const char *const *opts, const size_t *optlens,
                      int nopts)
{
    const char **argv = pl->argv + j * PLAIN_ARGC;
    size_t *lens = pl->lens + j * PLAIN_ARGC;
    char *v = pl->values + j * VALUE_MAX;
    size_t sl = strlen(state);
    memcpy(v, state, sl);
    memcpy(v + sl, token, CX__DEDUPE_TOKEN_LEN);
    argv[0] = "SET";
    lens[0] = 3;
    argv[1] = c->keys[j];
    lens[1] = c->keylens[j];
    argv[2] = v;
    lens[2] = sl + CX__DEDUPE_TOKEN_LEN;
    for (int k = 0; k < nopts; k++) {
        argv[3 + k] = opts[k];
        lens[3 + k] = optlens[k];
    }
    pl->cmds[j] = (cx__redis_cmd_t){3 + nopts, argv, lens};
}

static void plain_free(plain_t *pl, size_t n, int sent)
{
    if (sent)
        for (size_t j = 0; j < n; j++)
            freeReplyObject(pl->replies[j]);
    free(pl->mem);
}

static bool reply_is(const redisReply *r, int type, const char *prefix)
{
    size_t pl = strlen(prefix);
    return r->type == type && r->len >= pl && memcmp(r->str, prefix, pl) == 0;
}

static bool reply_eq(const redisReply *r, const char *state, const char *token)
{
    size_t sl = strlen(state);
    return r->type == REDIS_REPLY_STRING && r->len == sl + CX__DEDUPE_TOKEN_LEN &&
           memcmp(r->str, state, sl) == 0 && memcmp(r->str + sl, token, CX__DEDUPE_TOKEN_LEN) == 0;
}

static int refused(const redis_store_t *s, const redisReply *r, const char *op, cx_error_t *err)
{
    if (r->type != REDIS_REPLY_ERROR)
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s: unexpected reply",
                            cx__redis_pool_name(s->pool), op);
    int w = 0;
    while ((size_t)w < r->len && w < 32 && r->str[w] != ' ')
        w++;
    return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s refused (%.*s)",
                        cx__redis_pool_name(s->pool), op, w, r->str);
}

/* Claims items[0..n) (keys in c, tokens in the items). Returns 0, LEGACY, or an error. */
static int claim_plain(redis_store_t *s, cx_dedupe_item_t *items, size_t n, const call_t *c,
                       cx_error_t *err)
{
    plain_t pl = {0};
    int rc = plain_init(&pl, n, err);
    if (rc != 0)
        return rc;
    const char *opts[] = {"NX", "GET", "PX", c->args[0]};
    const size_t optlens[] = {2, 3, 2, c->arglens[0]};
    for (size_t i = 0; i < n; i++)
        plain_set(&pl, i, c, PROCESSING, items[i].token, opts, optlens, 4);
    rc = cx__redis_pipeline_joined(s->pool, pl.cmds, n, pl.replies, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *r = pl.replies[i];
        if (r->type == REDIS_REPLY_NIL || reply_eq(r, PROCESSING, items[i].token))
            items[i].state = CX_CLAIM_OWNED; /* set now, or our own claim sent again */
        else if (reply_is(r, REDIS_REPLY_STRING, PROCESSING))
            items[i].state = CX_CLAIM_IN_PROGRESS;
        else if (r->type == REDIS_REPLY_STRING || reply_is(r, REDIS_REPLY_ERROR, "WRONGTYPE"))
            items[i].state = CX_CLAIM_DONE; /* done, or a value we cannot parse */
        else if (reply_is(r, REDIS_REPLY_ERROR, "ERR syntax"))
            rc = LEGACY;
        else
            rc = refused(s, r, "claim", err);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        items[i].rc = 0;
        if (items[i].state != CX_CLAIM_OWNED)
            items[i].token[0] = '\0';
    }
    plain_free(&pl, n, 1);
    return rc;
}

/* Completes the m items of c (items[c->idx[j]]), TTLs in c->args[2j + 1]. Returns 0, LEGACY,
 * or an error (then every item's rc is set by the caller). */
static int complete_plain(redis_store_t *s, cx_dedupe_item_t *items, const call_t *c,
                          cx_error_t *err)
{
    plain_t pl = {0};
    int rc = plain_init(&pl, c->m, err);
    if (rc != 0)
        return rc;
    for (size_t j = 0; j < c->m; j++) {
        const char *opts[] = {"GET", "EX", c->args[2 * j + 1]};
        const size_t optlens[] = {3, 2, c->arglens[2 * j + 1]};
        plain_set(&pl, j, c, DONE, items[c->idx[j]].token, opts, optlens, 3);
    }
    rc = cx__redis_pipeline_joined(s->pool, pl.cmds, c->m, pl.replies, err);
    for (size_t j = 0; rc == 0 && j < c->m; j++) {
        const redisReply *r = pl.replies[j];
        cx_dedupe_item_t *it = &items[c->idx[j]];
        if (r->type == REDIS_REPLY_NIL || reply_eq(r, PROCESSING, it->token) ||
            reply_eq(r, DONE, it->token))
            it->rc = 0;
        else if (r->type == REDIS_REPLY_STRING || reply_is(r, REDIS_REPLY_ERROR, "WRONGTYPE"))
            it->rc = CX_ETIMEOUT; /* another claim held or completed the key */
        else if (reply_is(r, REDIS_REPLY_ERROR, "ERR syntax"))
            rc = LEGACY;
        else
            rc = refused(s, r, "complete", err);
    }
    plain_free(&pl, c->m, 1);
    return rc;
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
    if (!atomic_load(&s->legacy)) {
        rc = claim_plain(s, items, n, &c, err);
        if (rc != LEGACY)
            goto done;
        atomic_store(&s->legacy, true); /* nothing was set: every SET was refused */
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
    if (done && !atomic_load(&s->legacy)) {
        rc = complete_plain(s, items, &c, err);
        if (rc != LEGACY) {
            for (j = 0; rc != 0 && j < m; j++)
                items[c.idx[j]].rc = rc;
            free(c.mem);
            return rc;
        }
        atomic_store(&s->legacy, true);
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

void cx__dedupe_redis_use_scripts(cx_dedupe_store_t *base)
{
    atomic_store(&((redis_store_t *)base)->legacy, true);
}

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
