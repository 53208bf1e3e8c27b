/* The Redis rate limiter (cx/outbound.h): token buckets shared by every process.
 *
 * One Lua script takes from all the buckets of a send at once (provider, account, pair):
 * it refills each from its last update by Redis's clock (TIME, one clock for all callers),
 * and only when every bucket has the tokens does it take them; otherwise it answers how long
 * until the emptiest bucket has enough. A bucket is a hash {t = tokens, ts = ms} that expires
 * once it would be full again, so idle buckets cost no memory. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/intent_internal.h"
#include "stores/redis_conn.h"

#define MAX_BUCKETS 8
#define BUCKET_KEY_MAX 256

/* KEYS[i]; ARGV[3i-2..3i]: rate per s, burst, cost. -> {1, 0} taken, {0, wait ms} */
static const char TAKE_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local tokens, wait = {}, 0\n"
    "for i = 1, #KEYS do\n"
    "  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), "
    "tonumber(ARGV[3*i])\n"
    "  local v = redis.call('HMGET', KEYS[i], 't', 'ts')\n"
    "  local tk, ts = tonumber(v[1]), tonumber(v[2])\n"
    "  if not tk or not ts then tk, ts = burst, now end\n"
    "  if now > ts then tk = math.min(burst, tk + (now - ts) * rate / 1000) end\n"
    "  tokens[i] = tk\n"
    "  if tk < cost then\n"
    "    local w = math.ceil((cost - tk) * 1000 / rate)\n"
    "    if w > wait then wait = w end\n"
    "  end\n"
    "end\n"
    "if wait > 0 then return {0, wait} end\n"
    "for i = 1, #KEYS do\n"
    "  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), "
    "tonumber(ARGV[3*i])\n"
    "  local left = tokens[i] - cost\n"
    "  redis.call('HSET', KEYS[i], 't', string.format('%.6f', left), 'ts', string.format('%.3f', "
    "now))\n"
    "  redis.call('PEXPIRE', KEYS[i], math.ceil((burst - left) * 1000 / rate) + 1000)\n"
    "end\n"
    "return {1, 0}\n";

typedef struct redis_rl_s {
    cx_outbound_limiter_t base; /* first: the public view */
    size_t prefix_len;
    cx__redis_pool_t *pool;
    cx__redis_script_t take;
} redis_rl_t;

static int rl_take(cx_outbound_limiter_t *base, const cx_outbound_bucket_t *b, size_t n,
                   uint32_t *retry_after_ms, cx_error_t *err)
{
    redis_rl_t *s = (redis_rl_t *)base;
    if (retry_after_ms)
        *retry_after_ms = 0;
    if (n == 0)
        return 0;
    if (b == NULL || n > MAX_BUCKETS)
        return cx_error_set(err, CX_EINVAL, "buckets", "1..%d buckets per take", MAX_BUCKETS);
    char keys[MAX_BUCKETS][BUCKET_KEY_MAX + 96];
    const char *kp[MAX_BUCKETS];
    size_t kl[MAX_BUCKETS];
    char nums[MAX_BUCKETS * 3][32];
    const char *ap[MAX_BUCKETS * 3];
    size_t al[MAX_BUCKETS * 3];
    for (size_t i = 0; i < n; i++) {
        size_t len = b[i].key ? strnlen(b[i].key, BUCKET_KEY_MAX + 1) : 0;
        if (len == 0 || len > BUCKET_KEY_MAX || !(b[i].rate_per_s > 0) || !(b[i].cost > 0) ||
            !(b[i].burst >= b[i].cost) || !isfinite(b[i].burst) || !isfinite(b[i].rate_per_s)) {
            char path[32];
            snprintf(path, sizeof path, "buckets[%zu]", i);
            return cx_error_set(err, CX_EINVAL, path,
                                "bucket needs a key, rate > 0, cost > 0, burst >= cost");
        }
        memcpy(keys[i], s->base.prefix, s->prefix_len);
        memcpy(keys[i] + s->prefix_len, b[i].key, len);
        kp[i] = keys[i];
        kl[i] = s->prefix_len + len;
        double v[3] = {b[i].rate_per_s, b[i].burst, b[i].cost};
        for (int j = 0; j < 3; j++) {
            al[3 * i + j] = (size_t)snprintf(nums[3 * i + j], 32, "%.9g", v[j]);
            ap[3 * i + j] = nums[3 * i + j];
        }
    }
    redisReply *r = NULL;
    int rc = cx__redis_eval(s->pool, &s->take, n, kp, kl, 3 * n, ap, al, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        int w = 0;
        while (r->type == REDIS_REPLY_ERROR && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        rc = cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: rate limit refused (%.*s)",
                          cx__redis_pool_name(s->pool), w,
                          r->type == REDIS_REPLY_ERROR ? r->str : "");
    } else if (r->element[0]->integer != 1) {
        long long w = r->element[1]->integer;
        if (retry_after_ms)
            *retry_after_ms = w < 1 ? 1 : w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
        rc = CX_ERATE_LIMITED; /* a normal answer, not an error to record */
    }
    freeReplyObject(r);
    return rc;
}

static int rl_ping(cx_outbound_limiter_t *base, cx_error_t *err)
{
    redis_rl_t *s = (redis_rl_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(s->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_STATUS)
        rc = cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: PING refused",
                          cx__redis_pool_name(s->pool));
    freeReplyObject(r);
    return rc;
}

static void rl_destroy(cx_outbound_limiter_t *base)
{
    redis_rl_t *s = (redis_rl_t *)base;
    if (s == NULL)
        return;
    cx__redis_pool_destroy(s->pool);
    free(s);
}

static const cx_outbound_limiter_ops_t REDIS_RL_OPS = {
    .take = rl_take,
    .ping = rl_ping,
    .destroy = rl_destroy,
};

int cx_outbound_limiter_redis(const char *environment, const cx_redis_options_t *redis,
                              cx_outbound_limiter_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__store_prefix(environment, "outlimit", prefix, err);
    if (rc != 0)
        return rc;
    redis_rl_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis rate limiter: out of memory");
    s->base.ops = &REDIS_RL_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    s->prefix_len = strlen(prefix);
    if (cx__redis_script_init(&s->take, TAKE_LUA) != 0) {
        free(s);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the rate limit script");
    }
    rc = cx__redis_pool_create(redis, &s->pool, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}
