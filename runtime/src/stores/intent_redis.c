/* The Redis intent store (cx/outbound.h): intents shared by every process on one Redis.
 *
 * Each operation is one Lua script on one key, so its check-and-set is atomic, and the clock
 * that judges leases is Redis's own (TIME), the same for every caller. Values are the v1
 * format of cx/outbound.h, written here and parsed in C (intent_common.c).
 *
 *   claim      absent -> "v1|sending|<token>|now|now+lease|..." EX ttl; a `sending` value whose
 *              lease ended -> "v1|in_doubt|<same token>|..." (KEEPTTL); else unchanged.
 *   finish     if the value is sending/in_doubt with our token (or absent): the outcome, EX ttl.
 *   release    if the value is sending with our token: DEL.
 *   reconcile  sending/in_doubt -> done/failed with the echoed provider id (KEEPTTL).
 *
 * With wait_replicas, the claim script and "WAIT n timeout" go out in one write on the same
 * connection (WAIT applies to that connection's writes): when fewer replicas acknowledge, the
 * claim is withdrawn and the send fails before the provider is called, so a failover cannot
 * forget an intent whose request went out.
 *
 * A value that is not a string (another type under our key) or not v1 reads as IN_DOUBT (not
 * resent, not reported done). KEEPTTL needs Redis >= 6.0.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/intent_internal.h"
#include "stores/redis_conn.h"

#define LUA_NOW                                                                                    \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "local function f(x) return string.format('%.0f', x) end\n"

/* KEYS[1]; ARGV: token, lease ms, ttl s, sending tail, in-doubt tail. -> {mine, value} */
static const char CLAIM_LUA[] =
    LUA_NOW "local cur = redis.pcall('GET', KEYS[1])\n"
            "if type(cur) == 'table' then return {0, ''} end\n"
            "if not cur then\n"
            "  local v = 'v1|sending|' .. ARGV[1] .. '|' .. f(now) .. '|' ..\n"
            "            f(now + tonumber(ARGV[2])) .. '|' .. ARGV[4]\n"
            "  redis.call('SET', KEYS[1], v, 'EX', ARGV[3])\n"
            "  return {1, v}\n"
            "end\n"
            "local st, tok, lease = string.match(cur, '^v1|([%a_]+)|(%x*)|%d+|(%d+)|')\n"
            "if st == 'sending' and tok == ARGV[1] then return {1, cur} end\n"
            "if st == 'sending' and tonumber(lease) <= now then\n"
            "  cur = 'v1|in_doubt|' .. tok .. '|' .. f(now) .. '|0|' .. ARGV[5]\n"
            "  redis.call('SET', KEYS[1], cur, 'KEEPTTL')\n"
            "  return {2, cur}\n"
            "end\n"
            "return {0, cur}\n";

/* KEYS[1]; ARGV: token, state word, tail, ttl s. -> {mine, value} */
static const char FINISH_LUA[] =
    LUA_NOW "local cur = redis.pcall('GET', KEYS[1])\n"
            "if type(cur) == 'table' then return {0, ''} end\n"
            "if cur then\n"
            "  local st, tok = string.match(cur, '^v1|([%a_]+)|(%x*)|')\n"
            "  if tok ~= ARGV[1] or (st ~= 'sending' and st ~= 'in_doubt') then\n"
            "    return {0, cur}\n"
            "  end\n"
            "end\n"
            "local v = 'v1|' .. ARGV[2] .. '|' .. ARGV[1] .. '|' .. f(now) .. '|0|' .. ARGV[3]\n"
            "redis.call('SET', KEYS[1], v, 'EX', ARGV[4])\n"
            "return {1, v}\n";

/* KEYS[1]; ARGV: token. -> 1 deleted, 0 not ours */
static const char RELEASE_LUA[] =
    "local cur = redis.pcall('GET', KEYS[1])\n"
    "local want = 'v1|sending|' .. ARGV[1] .. '|'\n"
    "if type(cur) == 'string' and string.sub(cur, 1, #want) == want then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* KEYS[1]; ARGV: state word, tail. -> {-1, ''} absent, {mine, value} */
static const char RECONCILE_LUA[] =
    LUA_NOW "local cur = redis.pcall('GET', KEYS[1])\n"
            "if not cur then return {-1, ''} end\n"
            "if type(cur) == 'table' then return {0, ''} end\n"
            "local st, tok = string.match(cur, '^v1|([%a_]+)|(%x*)|')\n"
            "if st == 'sending' or st == 'in_doubt' then\n"
            "  local v = 'v1|' .. ARGV[1] .. '|' .. tok .. '|' .. f(now) .. '|0|' .. ARGV[2]\n"
            "  redis.call('SET', KEYS[1], v, 'KEEPTTL')\n"
            "  return {1, v}\n"
            "end\n"
            "return {0, cur}\n";

typedef struct redis_store_s {
    cx_intent_store_t base; /* first: the public view */
    size_t prefix_len;
    cx__redis_pool_t *pool;
    int wait_replicas;
    uint32_t wait_timeout_ms;
    cx__redis_script_t claim, finish, release, reconcile;
} redis_store_t;

/* prefix + key into buf (CX_DEDUPE_KEY_MAX + 96 bytes). */
static size_t full_key(const redis_store_t *s, const char *key, size_t len, char *buf)
{
    memcpy(buf, s->base.prefix, s->prefix_len);
    memcpy(buf + s->prefix_len, key, len);
    buf[s->prefix_len + len] = '\0';
    return s->prefix_len + len;
}

static int refused(const redis_store_t *s, const redisReply *r, const char *op, cx_error_t *err)
{
    int w = 0;
    while (r->str && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
        w++;
    return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: intent %s refused (%.*s)",
                        cx__redis_pool_name(s->pool), op, w, r->str ? r->str : "");
}

/* {int, string} replies of claim, finish and reconcile. */
static int pair_reply(const redis_store_t *s, const redisReply *r, const char *op, long long *flag,
                      cx_intent_t *out, cx_error_t *err)
{
    if (r->type == REDIS_REPLY_ERROR)
        return refused(s, r, op, err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        (r->element[1]->type != REDIS_REPLY_STRING && r->element[1]->type != REDIS_REPLY_STATUS))
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: intent %s: unexpected reply",
                            cx__redis_pool_name(s->pool), op);
    *flag = r->element[0]->integer;
    cx__intent_decode(r->element[1]->str, r->element[1]->len, out);
    return 0;
}

/* Runs the claim script followed by WAIT on the same connection (one write). */
static int claim_and_wait(redis_store_t *s, const char *const *args, const size_t *lens,
                          size_t nargs, const char *fk, size_t fklen, redisReply **reply,
                          long long *acks, cx_error_t *err)
{
    const char *argv[16];
    size_t argl[16];
    argv[0] = "EVALSHA";
    argl[0] = 7;
    argv[1] = s->claim.sha1;
    argl[1] = 40;
    argv[2] = "1";
    argl[2] = 1;
    argv[3] = fk;
    argl[3] = fklen;
    for (size_t i = 0; i < nargs; i++) {
        argv[4 + i] = args[i];
        argl[4 + i] = lens[i];
    }
    char n[16], t[16];
    snprintf(n, sizeof n, "%d", s->wait_replicas);
    snprintf(t, sizeof t, "%u", (unsigned)s->wait_timeout_ms);
    const char *wargv[3] = {"WAIT", n, t};
    cx__redis_cmd_t cmds[2] = {{(int)(4 + nargs), argv, argl}, {3, wargv, NULL}};
    redisReply *r[2];
    int rc = cx__redis_pipeline(s->pool, cmds, 2, r, err);
    if (rc == 0 && r[0]->type == REDIS_REPLY_ERROR && r[0]->len >= 8 &&
        memcmp(r[0]->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r[0]);
        freeReplyObject(r[1]);
        argv[0] = "EVAL";
        argl[0] = 4;
        argv[1] = s->claim.source;
        argl[1] = strlen(s->claim.source);
        rc = cx__redis_pipeline(s->pool, cmds, 2, r, err);
    }
    if (rc != 0)
        return rc;
    *reply = r[0];
    *acks = r[1]->type == REDIS_REPLY_INTEGER ? r[1]->integer : -1;
    freeReplyObject(r[1]);
    return 0;
}

static int redis_release(cx_intent_store_t *base, const char *key, const char *token,
                         cx_error_t *err);

static int redis_claim(cx_intent_store_t *base, const char *key, uint32_t lease_ms, uint32_t ttl_s,
                       cx_intent_t *out, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
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
    char fk[CX_DEDUPE_KEY_MAX + 96], lease[16], ttl[16];
    size_t fklen = full_key(s, key, len, fk);
    snprintf(lease, sizeof lease, "%u", (unsigned)lease_ms);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)ttl_s);
    const char *args[5] = {token, lease, ttl, CX__INTENT_SENDING_TAIL, CX__INTENT_DOUBT_TAIL};
    size_t lens[5] = {strlen(token), strlen(lease), strlen(ttl), strlen(CX__INTENT_SENDING_TAIL),
                      strlen(CX__INTENT_DOUBT_TAIL)};
    const char *keys[1] = {fk};
    redisReply *r = NULL;
    long long acks = 0;
    if (s->wait_replicas > 0)
        rc = claim_and_wait(s, args, lens, 5, fk, fklen, &r, &acks, err);
    else
        rc = cx__redis_eval(s->pool, &s->claim, 1, keys, &fklen, 5, args, lens, &r, err);
    if (rc != 0)
        return rc;
    long long mine = 0;
    rc = pair_reply(s, r, "claim", &mine, out, err);
    freeReplyObject(r);
    if (rc != 0)
        return rc;
    out->mine = mine == 1 && strcmp(out->token, token) == 0;
    out->lapsed = mine == 2;
    if (out->mine && s->wait_replicas > 0 && acks < s->wait_replicas) {
        /* Not on enough replicas: a failover now could lose the claim after the provider
         * got the request. Withdraw it; nothing has been sent. */
        cx_error_t ignored;
        cx_error_clear(&ignored);
        redis_release(base, key, token, &ignored);
        cx__intent_none(out);
        return cx_error_set(err, CX_EUNAVAILABLE, NULL,
                            "redis %s: intent claim reached %lld of %d replicas in %u ms",
                            cx__redis_pool_name(s->pool), acks < 0 ? 0 : acks, s->wait_replicas,
                            (unsigned)s->wait_timeout_ms);
    }
    return 0;
}

static int redis_get(cx_intent_store_t *base, const char *key, cx_intent_t *out, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    char fk[CX_DEDUPE_KEY_MAX + 96];
    size_t fklen = full_key(s, key, len, fk);
    const char *argv[2] = {"GET", fk};
    size_t argl[2] = {3, fklen};
    cx__redis_cmd_t cmd = {2, argv, argl};
    redisReply *r = NULL;
    rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        cx__intent_none(out);
    } else if (r->type == REDIS_REPLY_STRING) {
        cx__intent_decode(r->str, r->len, out);
    } else if (r->type == REDIS_REPLY_ERROR && r->len >= 9 && memcmp(r->str, "WRONGTYPE", 9) == 0) {
        cx__intent_decode("", 0, out); /* not ours to judge: in doubt */
    } else {
        rc = refused(s, r, "get", err);
    }
    freeReplyObject(r);
    return rc;
}

static int redis_finish(cx_intent_store_t *base, const char *key, const cx_intent_t *rec,
                        uint32_t ttl_s, cx_intent_t *out, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    const char *word = cx__intent_state_word(rec->state);
    if (word == NULL || rec->state == CX_INTENT_SENDING || ttl_s == 0 || rec->token[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "rec", "finish needs DONE, FAILED or IN_DOUBT");
    char *tail = malloc(CX__INTENT_TAIL_MAX);
    if (tail == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis intent store: out of memory");
    int tn = cx__intent_encode_tail(rec, tail);
    if (tn < 0) {
        free(tail);
        return cx_error_set(err, CX_EINVAL, "rec", "intent field too long");
    }
    char fk[CX_DEDUPE_KEY_MAX + 96], ttl[16];
    size_t fklen = full_key(s, key, len, fk);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)ttl_s);
    const char *args[4] = {rec->token, word, tail, ttl};
    size_t lens[4] = {strlen(rec->token), strlen(word), (size_t)tn, strlen(ttl)};
    const char *keys[1] = {fk};
    redisReply *r = NULL;
    rc = cx__redis_eval(s->pool, &s->finish, 1, keys, &fklen, 4, args, lens, &r, err);
    free(tail);
    if (rc != 0)
        return rc;
    long long mine = 0;
    rc = pair_reply(s, r, "finish", &mine, out, err);
    freeReplyObject(r);
    if (rc == 0)
        out->mine = mine == 1;
    return rc;
}

static int redis_release(cx_intent_store_t *base, const char *key, const char *token,
                         cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    if (token == NULL || token[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "token", "release needs the claim's token");
    char fk[CX_DEDUPE_KEY_MAX + 96];
    size_t fklen = full_key(s, key, len, fk);
    const char *args[1] = {token};
    size_t lens[1] = {strlen(token)};
    const char *keys[1] = {fk};
    redisReply *r = NULL;
    rc = cx__redis_eval(s->pool, &s->release, 1, keys, &fklen, 1, args, lens, &r, err);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = refused(s, r, "release", err);
    freeReplyObject(r);
    return rc;
}

static int redis_reconcile(cx_intent_store_t *base, const char *key, cx_intent_state_t state,
                           const char *pmid, cx_intent_t *out, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    size_t len;
    int rc = cx__intent_check_key(key, &len, err);
    if (rc != 0)
        return rc;
    if (state != CX_INTENT_DONE && state != CX_INTENT_FAILED)
        return cx_error_set(err, CX_EINVAL, "status", "reconcile to DONE or FAILED only");
    if (pmid && strlen(pmid) > CX_INTENT_ID_MAX)
        return cx_error_set(err, CX_EINVAL, "provider_message_id", "provider id too long");
    cx_intent_t *rec = malloc(sizeof *rec);
    char *tail = malloc(CX__INTENT_TAIL_MAX);
    if (rec == NULL || tail == NULL) {
        free(rec);
        free(tail);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis intent store: out of memory");
    }
    cx__intent_none(rec);
    snprintf(rec->provider_message_id, sizeof rec->provider_message_id, "%s", pmid ? pmid : "");
    rec->code = state == CX_INTENT_DONE ? 0 : CX_EPROVIDER_REJECTED;
    int tn = cx__intent_encode_tail(rec, tail);
    free(rec);
    char fk[CX_DEDUPE_KEY_MAX + 96];
    size_t fklen = full_key(s, key, len, fk);
    const char *word = cx__intent_state_word(state);
    const char *args[2] = {word, tail};
    size_t lens[2] = {strlen(word), (size_t)tn};
    const char *keys[1] = {fk};
    redisReply *r = NULL;
    rc = cx__redis_eval(s->pool, &s->reconcile, 1, keys, &fklen, 2, args, lens, &r, err);
    free(tail);
    if (rc != 0)
        return rc;
    long long mine = 0;
    rc = pair_reply(s, r, "reconcile", &mine, out, err);
    freeReplyObject(r);
    if (rc != 0)
        return rc;
    if (mine < 0) {
        cx__intent_none(out);
        return cx_error_set(err, CX_ENOTFOUND, "key", "no intent under this key");
    }
    out->mine = mine == 1;
    return 0;
}

static int redis_ping(cx_intent_store_t *base, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_STATUS || r->len != 4 || memcmp(r->str, "PONG", 4) != 0)
        rc = refused(s, r, "ping", err);
    freeReplyObject(r);
    return rc;
}

static void redis_destroy(cx_intent_store_t *base)
{
    redis_store_t *s = (redis_store_t *)base;
    if (s == NULL)
        return;
    cx__redis_pool_destroy(s->pool);
    free(s);
}

static const cx_intent_store_ops_t REDIS_OPS = {
    .claim = redis_claim,
    .get = redis_get,
    .finish = redis_finish,
    .release = redis_release,
    .reconcile = redis_reconcile,
    .ping = redis_ping,
    .destroy = redis_destroy,
};

int cx_intent_store_redis(const char *environment, const cx_redis_options_t *redis,
                          const cx_intent_redis_options_t *opts, cx_intent_store_t **out,
                          cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__store_prefix(environment, "intent", prefix, err);
    if (rc != 0)
        return rc;
    if (opts && (opts->wait_replicas < 0 || opts->wait_replicas > 100))
        return cx_error_set(err, CX_EINVAL, "wait_replicas", "wait_replicas outside 0..100");
    redis_store_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis intent store: out of memory");
    s->base.ops = &REDIS_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    s->prefix_len = strlen(prefix);
    s->wait_replicas = opts ? opts->wait_replicas : 0;
    s->wait_timeout_ms = opts && opts->wait_timeout_ms ? opts->wait_timeout_ms : 200;
    if (cx__redis_script_init(&s->claim, CLAIM_LUA) != 0 ||
        cx__redis_script_init(&s->finish, FINISH_LUA) != 0 ||
        cx__redis_script_init(&s->release, RELEASE_LUA) != 0 ||
        cx__redis_script_init(&s->reconcile, RECONCILE_LUA) != 0) {
        free(s);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the intent scripts");
    }
    rc = cx__redis_pool_create(redis, &s->pool, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}
