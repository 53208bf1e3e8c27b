/* The Redis dead-letter store (cx/dlq.h).
 *
 * Four keys per store, one hash tag so a script may touch them all in a cluster:
 *
 *   cx:<env>:dlq:{<name>}:entries   hash    id -> record (the runtime's bytes)
 *   cx:<env>:dlq:{<name>}:index     zset    id scored by its dead time (ms): listing, purge
 *   cx:<env>:dlq:{<name>}:groups    hash    id -> "<connector>|<capability>"
 *   cx:<env>:dlq:{<name>}:counts    hash    group -> number of dead letters (the gauge)
 *
 * put and remove are Lua scripts, so the four stay consistent; purge removes at most 1000
 * entries per script run (a bounded time inside Redis) and loops.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/dlq.h"
#include "stores/durable_internal.h"
#include "stores/redis_conn.h"

/* KEYS: entries, index, groups, counts. ARGV: id, group, dead_ms, record. */
static const char PUT_LUA[] = "local old = redis.call('HGET', KEYS[3], ARGV[1])\n"
                              "if old then redis.call('HINCRBY', KEYS[4], old, -1) end\n"
                              "redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])\n"
                              "redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])\n"
                              "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
                              "redis.call('HINCRBY', KEYS[4], ARGV[2], 1)\n"
                              "return 1\n";

/* KEYS: entries, index, groups, counts. ARGV: ids. Returns how many were there. */
static const char REMOVE_LUA[] = "local n = 0\n"
                                 "for _, id in ipairs(ARGV) do\n"
                                 "  local g = redis.call('HGET', KEYS[3], id)\n"
                                 "  if g then\n"
                                 "    redis.call('HINCRBY', KEYS[4], g, -1)\n"
                                 "    redis.call('HDEL', KEYS[3], id)\n"
                                 "    n = n + 1\n"
                                 "  end\n"
                                 "  redis.call('HDEL', KEYS[1], id)\n"
                                 "  redis.call('ZREM', KEYS[2], id)\n"
                                 "end\n"
                                 "return n\n";

/* KEYS: entries, index, groups, counts. ARGV[1]: before (exclusive, ms). At most 1000. */
static const char PURGE_LUA[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)\n"
    "for _, id in ipairs(ids) do\n"
    "  local g = redis.call('HGET', KEYS[3], id)\n"
    "  if g then redis.call('HINCRBY', KEYS[4], g, -1) end\n"
    "  redis.call('HDEL', KEYS[3], id)\n"
    "  redis.call('HDEL', KEYS[1], id)\n"
    "  redis.call('ZREM', KEYS[2], id)\n"
    "end\n"
    "return #ids\n";

typedef struct redis_dlq_s {
    cx_dlq_t base; /* first: the public view */
    cx__redis_pool_t *pool;
    char keys[4][160];
    size_t keylens[4];
    cx__redis_script_t put, remove, purge;
} redis_dlq_t;

static int error_reply(redis_dlq_t *d, const redisReply *r, const char *what, cx_error_t *err)
{
    int w = 0;
    while (r && r->type == REDIS_REPLY_ERROR && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
        w++;
    return cx_error_set(
        err, CX_EUNAVAILABLE, NULL, "redis %s: %s: %s%.*s", cx__redis_pool_name(d->pool), what,
        r && r->type == REDIS_REPLY_ERROR ? "" : "unexpected reply", w, r && r->str ? r->str : "");
}

static int eval(redis_dlq_t *d, const cx__redis_script_t *s, size_t nargs, const char **args,
                const size_t *al, const char *what, long long *out, cx_error_t *err)
{
    const char *keys[4] = {d->keys[0], d->keys[1], d->keys[2], d->keys[3]};
    redisReply *r = NULL;
    int rc = cx__redis_eval(d->pool, s, 4, keys, d->keylens, nargs, args, al, &r, err);
    if (rc == 0) {
        if (r->type != REDIS_REPLY_INTEGER)
            rc = error_reply(d, r, what, err);
        else if (out)
            *out = r->integer;
    }
    freeReplyObject(r);
    return rc;
}

static int rd_put(cx_dlq_t *base, const char *id, const char *group, int64_t dead_ms,
                  const void *rec, size_t len, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    if (id == NULL || !id[0] || strnlen(id, CX_DLQ_ID_MAX + 1) > CX_DLQ_ID_MAX || group == NULL ||
        !group[0] || strnlen(group, CX_DLQ_GROUP_MAX + 1) > CX_DLQ_GROUP_MAX)
        return cx_error_set(err, CX_EINVAL, "id", "id or group empty or too long");
    char dead[24];
    snprintf(dead, sizeof dead, "%" PRId64, dead_ms);
    const char *args[4] = {id, group, dead, rec};
    size_t al[4] = {strlen(id), strlen(group), strlen(dead), len};
    return eval(d, &d->put, 4, args, al, "dead-letter put", NULL, err);
}

static int rd_get(cx_dlq_t *base, const char *id, unsigned char **rec, size_t *len, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    *rec = NULL;
    *len = 0;
    if (id == NULL)
        return cx_error_set(err, CX_EINVAL, "id", "id is NULL");
    const char *argv[] = {"HGET", d->keys[0], id};
    cx__redis_cmd_t cmd = {3, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(d->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "no dead letter with this id");
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = error_reply(d, r, "HGET", err);
    } else if ((*rec = malloc(r->len ? r->len : 1)) == NULL) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "redis dead-letter store: out of memory");
    } else {
        memcpy(*rec, r->str, r->len);
        *len = r->len;
    }
    freeReplyObject(r);
    return rc;
}

static int rd_list(cx_dlq_t *base, size_t offset, size_t limit, cx_dlq_ref_t *out, size_t *n,
                   size_t *total, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    *n = 0;
    *total = 0;
    char off[24], lim[24];
    snprintf(off, sizeof off, "%zu", offset);
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *a0[] = {"ZCARD", d->keys[1]};
    const char *a1[] = {"ZRANGEBYSCORE", d->keys[1], "-inf", "+inf",
                        "WITHSCORES",    "LIMIT",    off,    lim};
    cx__redis_cmd_t cmds[2] = {{2, a0, NULL}, {8, a1, NULL}};
    redisReply *r[2];
    int rc = cx__redis_pipeline(d->pool, cmds, limit ? 2 : 1, r, err);
    if (rc != 0)
        return rc;
    if (r[0]->type != REDIS_REPLY_INTEGER)
        rc = error_reply(d, r[0], "ZCARD", err);
    else
        *total = (size_t)r[0]->integer;
    if (rc == 0 && limit) {
        if (r[1]->type != REDIS_REPLY_ARRAY) {
            rc = error_reply(d, r[1], "ZRANGEBYSCORE", err);
        } else {
            for (size_t i = 0; i + 1 < r[1]->elements && *n < limit; i += 2) {
                const redisReply *id = r[1]->element[i], *sc = r[1]->element[i + 1];
                if (id->type != REDIS_REPLY_STRING || id->len > CX_DLQ_ID_MAX)
                    continue;
                memcpy(out[*n].id, id->str, id->len);
                out[*n].id[id->len] = '\0';
                out[*n].dead_ms = sc->str ? strtoll(sc->str, NULL, 10) : 0;
                (*n)++;
            }
        }
    }
    freeReplyObject(r[0]);
    if (limit)
        freeReplyObject(r[1]);
    return rc;
}

static int rd_remove(cx_dlq_t *base, const char *id, int *removed, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    *removed = 0;
    if (id == NULL)
        return cx_error_set(err, CX_EINVAL, "id", "id is NULL");
    const char *args[1] = {id};
    size_t al[1] = {strlen(id)};
    long long n = 0;
    int rc = eval(d, &d->remove, 1, args, al, "dead-letter remove", &n, err);
    *removed = n > 0;
    return rc;
}

static int rd_purge(cx_dlq_t *base, int64_t before_ms, size_t *removed, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    *removed = 0;
    char before[24];
    if (before_ms == INT64_MAX)
        snprintf(before, sizeof before, "+inf");
    else
        snprintf(before, sizeof before, "%" PRId64, before_ms);
    const char *args[1] = {before};
    size_t al[1] = {strlen(before)};
    for (;;) {
        long long n = 0;
        int rc = eval(d, &d->purge, 1, args, al, "dead-letter purge", &n, err);
        if (rc != 0)
            return rc;
        *removed += (size_t)n;
        if (n < 1000)
            return 0;
    }
}

static int rd_counts(cx_dlq_t *base, cx_dlq_count_t *out, size_t cap, size_t *n, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    *n = 0;
    const char *argv[] = {"HGETALL", d->keys[3]};
    cx__redis_cmd_t cmd = {2, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(d->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = error_reply(d, r, "HGETALL", err);
    } else {
        for (size_t i = 0; i + 1 < r->elements && *n < cap; i += 2) {
            const redisReply *g = r->element[i], *c = r->element[i + 1];
            long long v = c->str ? strtoll(c->str, NULL, 10) : 0;
            if (g->type != REDIS_REPLY_STRING || g->len > CX_DLQ_GROUP_MAX || v <= 0)
                continue;
            memcpy(out[*n].group, g->str, g->len);
            out[*n].group[g->len] = '\0';
            out[*n].count = (uint64_t)v;
            (*n)++;
        }
    }
    freeReplyObject(r);
    return rc;
}

static int rd_ping(cx_dlq_t *base, cx_error_t *err)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(d->pool, &cmd, 1, &r, err);
    if (rc == 0 && r->type == REDIS_REPLY_ERROR)
        rc = error_reply(d, r, "PING", err);
    freeReplyObject(r);
    return rc;
}

static void rd_destroy(cx_dlq_t *base)
{
    redis_dlq_t *d = (redis_dlq_t *)base;
    if (d == NULL)
        return;
    cx__redis_pool_destroy(d->pool);
    free(d);
}

static const cx_dlq_ops_t REDIS_OPS = {
    .put = rd_put,
    .get = rd_get,
    .list = rd_list,
    .remove = rd_remove,
    .purge = rd_purge,
    .counts = rd_counts,
    .ping = rd_ping,
    .destroy = rd_destroy,
};

int cx_dlq_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                 cx_dlq_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (name == NULL)
        name = "inbound";
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc == 0)
        rc = cx__store_check_name(name, 32, "dead-letter store name", err);
    if (rc != 0)
        return rc;
    redis_dlq_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis dead-letter store: out of memory");
    d->base.ops = &REDIS_OPS;
    static const char *const suffix[4] = {"entries", "index", "groups", "counts"};
    for (int i = 0; i < 4; i++) {
        snprintf(d->keys[i], sizeof d->keys[i], "cx:%s:dlq:{%s}:%s", environment, name, suffix[i]);
        d->keylens[i] = strlen(d->keys[i]);
    }
    if (cx__redis_script_init(&d->put, PUT_LUA) != 0 ||
        cx__redis_script_init(&d->remove, REMOVE_LUA) != 0 ||
        cx__redis_script_init(&d->purge, PURGE_LUA) != 0) {
        free(d);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the dead-letter scripts");
    }
    rc = cx__redis_pool_create(opts, &d->pool, err);
    if (rc != 0) {
        free(d);
        return rc;
    }
    *out = &d->base;
    return 0;
}
