/* The Redis audit store (cx/audit.h): one stream per tenant, checkpoints in hashes beside it.
 *
 *   cx:<env>:audit:{<tenant>}:log      stream; entry fields v ("1"), seq, mac, rec (the JSON)
 *   cx:<env>:audit:{<tenant>}:head     hash: the head checkpoint (v, seq, mac, at_ms, key_id,
 *                                      sig)
 *   cx:<env>:audit:{<tenant>}:genesis  hash: the genesis checkpoint, same fields
 *   cx:<env>:audit:tenants             set of tenant ids
 *
 * An append is one Lua script, atomic in Redis: read the last entry (XREVRANGE + - COUNT 1; on
 * an empty stream the genesis), compare its seq and mac with what the writer linked to, and
 * only then XADD the records and move the head checkpoint. A writer that lost the race gets
 * the current head back in the same reply and relinks (cx_audit_append does), so any number of
 * processes append to one chain without a lock and without ever forking it.
 *
 * Retention (truncate) stores the genesis first, then XDELs covered entries in bounded
 * batches (one script call each, so Redis is never blocked long); an entry without a seq field
 * is never deleted.
 *
 * The {tenant} hash tag keeps a tenant's keys in one cluster slot; the tenants set is touched
 * by the append script too, so the store is meant for a single Redis (with replicas), not a
 * cluster.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbound/audit_internal.h"
#include "stores/dedupe_internal.h" /* cx__dedupe_prefix: the environment rules */
#include "stores/redis_conn.h"

/* KEYS: log, genesis, head, tenants. ARGV: tenant, expected seq, expected mac, n, then n x
 * (seq, mac, rec), then has_cp ("0"/"1") and the checkpoint's seq, mac, at_ms, key_id, sig.
 * Returns {1, seq, mac} (the new head) or {0, seq, mac} (the current head: lost the race). */
static const char APPEND_LUA[] =
    "local s, m = '0', ''\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "if #last > 0 then\n"
    "  s, m = '?', '?'\n"
    "  local f = last[1][2]\n"
    "  for i = 1, #f, 2 do\n"
    "    if f[i] == 'seq' then s = f[i + 1] elseif f[i] == 'mac' then m = f[i + 1] end\n"
    "  end\n"
    "else\n"
    "  local g = redis.call('HMGET', KEYS[2], 'seq', 'mac')\n"
    "  if g[1] then s = g[1]; m = g[2] or '' end\n"
    "end\n"
    "if s ~= ARGV[2] or m ~= ARGV[3] then return {0, s, m} end\n"
    "local n = tonumber(ARGV[4])\n"
    "for i = 0, n - 1 do\n"
    "  local b = 5 + 3 * i\n"
    "  redis.call('XADD', KEYS[1], '*', 'v', '1', 'seq', ARGV[b], 'mac', ARGV[b + 1],\n"
    "             'rec', ARGV[b + 2])\n"
    "end\n"
    "local c = 5 + 3 * n\n"
    "if ARGV[c] == '1' then\n"
    "  local cur = redis.call('HGET', KEYS[3], 'seq')\n"
    "  if not cur or tonumber(cur) <= tonumber(ARGV[c + 1]) then\n"
    "    redis.call('HSET', KEYS[3], 'v', '1', 'seq', ARGV[c + 1], 'mac', ARGV[c + 2],\n"
    "               'at_ms', ARGV[c + 3], 'key_id', ARGV[c + 4], 'sig', ARGV[c + 5])\n"
    "  end\n"
    "end\n"
    "redis.call('SADD', KEYS[4], ARGV[1])\n"
    "local t = 5 + 3 * (n - 1)\n"
    "return {1, ARGV[t], ARGV[t + 1]}\n";

/* KEYS: a checkpoint hash. ARGV: seq, mac, at_ms, key_id, sig. Stores it unless a later one
 * (higher seq) is there. Returns the stored seq. */
static const char CP_PUT_LUA[] =
    "local cur = redis.call('HGET', KEYS[1], 'seq')\n"
    "if not cur or tonumber(cur) <= tonumber(ARGV[1]) then\n"
    "  redis.call('HSET', KEYS[1], 'v', '1', 'seq', ARGV[1], 'mac', ARGV[2], 'at_ms', ARGV[3],\n"
    "             'key_id', ARGV[4], 'sig', ARGV[5])\n"
    "  return ARGV[1]\n"
    "end\n"
    "return cur\n";

/* KEYS: log, genesis. ARGV: seq, mac, at_ms, key_id, sig, batch. Moves the genesis forward
 * (never back), then deletes up to batch entries the stored genesis covers, oldest first.
 * Returns {deleted, more}: more = 1 when a full batch went (call again). */
static const char TRUNCATE_LUA[] =
    "local cur = redis.call('HGET', KEYS[2], 'seq')\n"
    "if not cur or tonumber(cur) < tonumber(ARGV[1]) then\n"
    "  redis.call('HSET', KEYS[2], 'v', '1', 'seq', ARGV[1], 'mac', ARGV[2], 'at_ms', ARGV[3],\n"
    "             'key_id', ARGV[4], 'sig', ARGV[5])\n"
    "end\n"
    "local g = tonumber(redis.call('HGET', KEYS[2], 'seq'))\n"
    "local limit = tonumber(ARGV[6])\n"
    "local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', limit)\n"
    "local n = 0\n"
    "for _, e in ipairs(batch) do\n"
    "  local f, s = e[2], nil\n"
    "  for i = 1, #f, 2 do if f[i] == 'seq' then s = tonumber(f[i + 1]) end end\n"
    "  if s == nil or s > g then return {n, 0} end\n"
    "  redis.call('XDEL', KEYS[1], e[1])\n"
    "  n = n + 1\n"
    "end\n"
    "if #batch == limit then return {n, 1} end\n"
    "return {n, 0}\n";

#define SCAN_BATCH "256"
#define TRUNCATE_BATCH "1000"

typedef struct redis_store_s {
    cx_audit_store_t base; /* first: the public view */
    char prefix[96];       /* "cx:<env>:audit:" */
    cx__redis_pool_t *pool;
    cx__redis_script_t append;
    cx__redis_script_t cp_put;
    cx__redis_script_t truncate;
} redis_store_t;

/* The tenant's keys. */
typedef struct keys_s {
    char log[256], genesis[256], head[256], tenants[128];
} keys_t;

static void make_keys(const redis_store_t *s, const char *tenant, keys_t *k)
{
    snprintf(k->log, sizeof k->log, "%s{%s}:log", s->prefix, tenant);
    snprintf(k->genesis, sizeof k->genesis, "%s{%s}:genesis", s->prefix, tenant);
    snprintf(k->head, sizeof k->head, "%s{%s}:head", s->prefix, tenant);
    snprintf(k->tenants, sizeof k->tenants, "%stenants", s->prefix);
}

static int reply_error(const redis_store_t *s, const redisReply *r, const char *op, cx_error_t *err)
{
    if (r->type == REDIS_REPLY_ERROR) {
        int w = 0;
        while ((size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: audit %s refused (%.*s)",
                            cx__redis_pool_name(s->pool), op, w, r->str);
    }
    return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: audit %s: unexpected reply",
                        cx__redis_pool_name(s->pool), op);
}

static int copy_str(const redisReply *r, char *out, size_t cap)
{
    if (r->type != REDIS_REPLY_STRING || r->len >= cap)
        return -1;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    *out = strtoull(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

/* A {flag, seq, mac} script reply into *h. */
static int reply_head(const redisReply *r, long long *flag, cx_audit_head_t *h)
{
    char seq[24];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || copy_str(r->element[1], seq, sizeof seq) ||
        copy_str(r->element[2], h->mac, sizeof h->mac))
        return -1;
    *flag = r->element[0]->integer;
    if (strcmp(seq, "?") == 0) { /* an entry without seq or mac: foreign or altered */
        h->seq = UINT64_MAX;
        return 0;
    }
    return parse_u64(seq, &h->seq);
}

static int redis_head(cx_audit_store_t *base, const char *tenant, cx_audit_head_t *out,
                      cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!cx__audit_tenant_ok(tenant))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    keys_t k;
    make_keys(s, tenant, &k);
    const char *a1[] = {"XREVRANGE", k.log, "+", "-", "COUNT", "1"};
    const char *a2[] = {"HMGET", k.genesis, "seq", "mac"};
    cx__redis_cmd_t cmds[2] = {{6, a1, NULL}, {4, a2, NULL}};
    redisReply *r[2];
    int rc = cx__redis_pipeline(s->pool, cmds, 2, r, err);
    if (rc != 0)
        return rc;
    memset(out, 0, sizeof *out);
    if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 1) {
        const redisReply *e = r[0]->element[0];
        const redisReply *f =
            e->type == REDIS_REPLY_ARRAY && e->elements == 2 ? e->element[1] : NULL;
        int have = 0;
        for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            char name[8], val[CX_AUDIT_MAC_SIZE];
            if (copy_str(f->element[i], name, sizeof name) ||
                copy_str(f->element[i + 1], val, sizeof val))
                continue;
            if (strcmp(name, "seq") == 0 && parse_u64(val, &out->seq) == 0)
                have |= 1;
            else if (strcmp(name, "mac") == 0) {
                memcpy(out->mac, val, sizeof out->mac);
                have |= 2;
            }
        }
        if (have != 3)
            rc = cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                              "redis audit %s: the last entry has no seq or mac", tenant);
    } else if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 0) {
        const redisReply *g = r[1];
        if (g->type == REDIS_REPLY_ARRAY && g->elements == 2 &&
            g->element[0]->type == REDIS_REPLY_STRING) {
            char seq[24];
            if (copy_str(g->element[0], seq, sizeof seq) || parse_u64(seq, &out->seq) ||
                copy_str(g->element[1], out->mac, sizeof out->mac))
                rc = cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                                  "redis audit %s: unreadable genesis", tenant);
        } else if (g->type != REDIS_REPLY_ARRAY) {
            rc = reply_error(s, g, "head", err);
        }
    } else {
        rc = reply_error(s, r[0], "head", err);
    }
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

static int redis_append(cx_audit_store_t *base, const char *tenant, const cx_audit_head_t *expect,
                        const cx_audit_line_t *lines, size_t n, const cx_audit_checkpoint_t *cp,
                        cx_audit_head_t *actual, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || n == 0 || lines == NULL || expect == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "redis audit: bad append");
    keys_t k;
    make_keys(s, tenant, &k);
    const char *keys[4] = {k.log, k.genesis, k.head, k.tenants};
    size_t keylens[4] = {strlen(k.log), strlen(k.genesis), strlen(k.head), strlen(k.tenants)};
    size_t nargs = 4 + 3 * n + 6;
    const char **args = calloc(nargs, sizeof *args);
    size_t *lens = calloc(nargs, sizeof *lens);
    char *nums = calloc(n + 4, 24);
    if (args == NULL || lens == NULL || nums == NULL) {
        free(args);
        free(lens);
        free(nums);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis audit: out of memory");
    }
    size_t a = 0;
    char *num = nums;
#define ARG_STR(p, l) (args[a] = (p), lens[a] = (l), a++)
#define ARG_NUM(fmt, v)                                                                            \
    do {                                                                                           \
        int w_ = snprintf(num, 24, fmt, v);                                                        \
        ARG_STR(num, (size_t)w_);                                                                  \
        num += 24;                                                                                 \
    } while (0)
    ARG_STR(tenant, strlen(tenant));
    ARG_NUM("%" PRIu64, expect->seq);
    ARG_STR(expect->mac, strlen(expect->mac));
    ARG_NUM("%zu", n);
    for (size_t i = 0; i < n; i++) {
        ARG_NUM("%" PRIu64, lines[i].seq);
        ARG_STR(lines[i].mac, strlen(lines[i].mac));
        ARG_STR(lines[i].json, lines[i].len);
    }
    if (cp) {
        ARG_STR("1", 1);
        ARG_NUM("%" PRIu64, cp->seq);
        ARG_STR(cp->mac, strlen(cp->mac));
        ARG_NUM("%" PRId64, cp->at_ms);
        ARG_STR(cp->key_id, strlen(cp->key_id));
        ARG_STR(cp->sig, strlen(cp->sig));
    } else {
        ARG_STR("0", 1);
    }
#undef ARG_STR
#undef ARG_NUM
    redisReply *r = NULL;
    int rc = cx__redis_eval(s->pool, &s->append, 4, keys, keylens, a, args, lens, &r, err);
    free(args);
    free(lens);
    free(nums);
    if (rc != 0)
        return rc;
    long long flag;
    cx_audit_head_t h;
    if (reply_head(r, &flag, &h) != 0)
        rc = reply_error(s, r, "append", err);
    else if (flag != 1) {
        if (actual)
            *actual = h;
        rc = CX_ECONFLICT;
    }
    freeReplyObject(r);
    return rc;
}

static int redis_scan(cx_audit_store_t *base, const char *tenant, cx_audit_scan_fn fn, void *ud,
                      cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || fn == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "redis audit: bad scan");
    keys_t k;
    make_keys(s, tenant, &k);
    char start[64] = "-";
    for (;;) {
        const char *argv[] = {"XRANGE", k.log, start, "+", "COUNT", SCAN_BATCH};
        cx__redis_cmd_t cmd = {6, argv, NULL};
        redisReply *r;
        int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
        if (rc != 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY) {
            rc = reply_error(s, r, "scan", err);
            freeReplyObject(r);
            return rc;
        }
        size_t got = r->elements;
        for (size_t i = 0; i < got && rc == 0; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48) {
                rc = reply_error(s, e, "scan", err);
                break;
            }
            char id[48];
            copy_str(e->element[0], id, sizeof id);
            snprintf(start, sizeof start, "(%s", id);
            const redisReply *f = e->element[1];
            cx_audit_line_t l = {0, NULL, "", 0, id};
            char seq[24] = "", mac[CX_AUDIT_MAC_SIZE] = "", v[8] = "";
            int has_mac = 0;
            for (size_t j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements; j += 2) {
                char name[8];
                if (copy_str(f->element[j], name, sizeof name))
                    continue;
                const redisReply *val = f->element[j + 1];
                if (strcmp(name, "seq") == 0)
                    copy_str(val, seq, sizeof seq);
                else if (strcmp(name, "mac") == 0)
                    has_mac = copy_str(val, mac, sizeof mac) == 0;
                else if (strcmp(name, "v") == 0)
                    copy_str(val, v, sizeof v);
                else if (strcmp(name, "rec") == 0 && val->type == REDIS_REPLY_STRING) {
                    l.json = val->str;
                    l.len = val->len;
                }
            }
            /* The stream's own seq and mac must agree with the record's (verify checks);
             * an entry of another format version, or without them, is passed as it is and
             * fails verification as malformed. */
            if (parse_u64(seq, &l.seq) != 0 || strcmp(v, "1") != 0)
                l.seq = UINT64_MAX;
            l.mac = has_mac ? mac : "";
            rc = fn(ud, &l);
        }
        freeReplyObject(r);
        if (rc != 0)
            return rc;
        if (got < (size_t)atoi(SCAN_BATCH))
            return 0;
    }
}

static int redis_cp_get(cx_audit_store_t *base, const char *tenant, cx_audit_cp_kind_t kind,
                        cx_audit_checkpoint_t *out, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!cx__audit_tenant_ok(tenant))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    keys_t k;
    make_keys(s, tenant, &k);
    const char *argv[] = {"HMGET",  kind == CX_AUDIT_CP_GENESIS ? k.genesis : k.head,
                          "v",      "seq",
                          "mac",    "at_ms",
                          "key_id", "sig"};
    cx__redis_cmd_t cmd = {8, argv, NULL};
    redisReply *r;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    memset(out, 0, sizeof *out);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
        rc = reply_error(s, r, "checkpoint", err);
    } else if (r->element[0]->type == REDIS_REPLY_NIL && r->element[1]->type == REDIS_REPLY_NIL) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "no checkpoint");
    } else {
        char v[8], seq[24], at[24];
        out->kind = kind;
        snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tenant);
        if (copy_str(r->element[0], v, sizeof v) || strcmp(v, "1") != 0 ||
            copy_str(r->element[1], seq, sizeof seq) || parse_u64(seq, &out->seq) ||
            copy_str(r->element[2], out->mac, sizeof out->mac) ||
            copy_str(r->element[3], at, sizeof at) ||
            copy_str(r->element[4], out->key_id, sizeof out->key_id) ||
            copy_str(r->element[5], out->sig, sizeof out->sig))
            rc = cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                              "redis audit %s: unreadable checkpoint", tenant);
        else
            out->at_ms = strtoll(at, NULL, 10);
    }
    freeReplyObject(r);
    return rc;
}

static int cp_args(const cx_audit_checkpoint_t *cp, char num[2][24], const char *args[5],
                   size_t lens[5])
{
    snprintf(num[0], 24, "%" PRIu64, cp->seq);
    snprintf(num[1], 24, "%" PRId64, cp->at_ms);
    const char *v[5] = {num[0], cp->mac, num[1], cp->key_id, cp->sig};
    for (int i = 0; i < 5; i++) {
        args[i] = v[i];
        lens[i] = strlen(v[i]);
    }
    return 0;
}

static int redis_cp_put(cx_audit_store_t *base, const char *tenant, const cx_audit_checkpoint_t *cp,
                        cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || cp == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "redis audit: bad checkpoint");
    keys_t k;
    make_keys(s, tenant, &k);
    const char *key = cp->kind == CX_AUDIT_CP_GENESIS ? k.genesis : k.head;
    size_t keylen = strlen(key);
    char num[2][24];
    const char *args[5];
    size_t lens[5];
    cp_args(cp, num, args, lens);
    redisReply *r;
    int rc = cx__redis_eval(s->pool, &s->cp_put, 1, &key, &keylen, 5, args, lens, &r, err);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = reply_error(s, r, "checkpoint", err);
    freeReplyObject(r);
    return rc;
}

static int redis_truncate(cx_audit_store_t *base, const char *tenant,
                          const cx_audit_checkpoint_t *g, uint64_t *dropped, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    if (dropped)
        *dropped = 0;
    if (!cx__audit_tenant_ok(tenant) || g == NULL || g->kind != CX_AUDIT_CP_GENESIS)
        return cx_error_set(err, CX_EINVAL, NULL, "redis audit: bad genesis");
    keys_t k;
    make_keys(s, tenant, &k);
    const char *keys[2] = {k.log, k.genesis};
    size_t keylens[2] = {strlen(k.log), strlen(k.genesis)};
    char num[2][24];
    const char *args[6];
    size_t lens[6];
    cp_args(g, num, args, lens);
    args[5] = TRUNCATE_BATCH;
    lens[5] = strlen(TRUNCATE_BATCH);
    for (;;) {
        redisReply *r;
        int rc = cx__redis_eval(s->pool, &s->truncate, 2, keys, keylens, 6, args, lens, &r, err);
        if (rc != 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER) {
            rc = reply_error(s, r, "truncate", err);
            freeReplyObject(r);
            return rc;
        }
        if (dropped)
            *dropped += (uint64_t)r->element[0]->integer;
        int more = r->element[1]->integer == 1;
        freeReplyObject(r);
        if (!more)
            return 0;
    }
}

static int redis_tenants(cx_audit_store_t *base, cx_audit_tenant_fn fn, void *ud, cx_error_t *err)
{
    redis_store_t *s = (redis_store_t *)base;
    char key[128];
    snprintf(key, sizeof key, "%stenants", s->prefix);
    const char *argv[] = {"SMEMBERS", key};
    cx__redis_cmd_t cmd = {2, argv, NULL};
    redisReply *r;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = reply_error(s, r, "tenants", err);
        freeReplyObject(r);
        return rc;
    }
    /* Sorted, for stable output. */
    size_t n = r->elements;
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (names == NULL) {
        freeReplyObject(r);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis audit: out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && cx__audit_tenant_ok(r->element[i]->str))
            names[m++] = r->element[i]->str;
    for (size_t i = 1; i < m; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (size_t i = 0; i < m && rc == 0; i++)
        rc = fn(ud, names[i]);
    free(names);
    freeReplyObject(r);
    return rc;
}

static void redis_destroy(cx_audit_store_t *base)
{
    redis_store_t *s = (redis_store_t *)base;
    if (s == NULL)
        return;
    cx__redis_pool_destroy(s->pool);
    free(s);
}

static const cx_audit_store_ops_t REDIS_OPS = {
    .head = redis_head,
    .append = redis_append,
    .scan = redis_scan,
    .checkpoint_get = redis_cp_get,
    .checkpoint_put = redis_cp_put,
    .truncate = redis_truncate,
    .tenants = redis_tenants,
    .destroy = redis_destroy,
};

int cx_audit_store_redis(const char *environment, const cx_redis_options_t *opts,
                         cx_audit_store_t **out, cx_error_t *err)
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
        return cx_error_set(err, CX_ENOMEM, NULL, "redis audit store: out of memory");
    s->base.ops = &REDIS_OPS;
    /* "cx:<env>:dedupe:" -> "cx:<env>:audit:" */
    size_t pl = strlen(prefix);
    snprintf(s->prefix, sizeof s->prefix, "%.*saudit:", (int)(pl - strlen("dedupe:")), prefix);
    if (cx__redis_script_init(&s->append, APPEND_LUA) != 0 ||
        cx__redis_script_init(&s->cp_put, CP_PUT_LUA) != 0 ||
        cx__redis_script_init(&s->truncate, TRUNCATE_LUA) != 0) {
        free(s);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the audit scripts");
    }
    rc = cx__redis_pool_create(opts, &s->pool, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}
