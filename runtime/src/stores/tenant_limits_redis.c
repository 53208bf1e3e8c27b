/* The Redis tenant rate limiter (cx/ratelimit.h): GCRA with reservations and daily quotas, all
 * the buckets of one item in one Lua script (atomic: two workers can never both take the last
 * slot), timed by the Redis server's clock (TIME), so every process shares one time line.
 * (The outbound token buckets of cx/outbound.h are another limiter: ratelimit_redis.c.)
 *
 * Per bucket key K:
 *   K            the theoretical arrival time (TAT) in microseconds, expiring once it is past
 *   K:q:<day>    the number of items admitted on that UTC day (day = unix seconds / 86400),
 *                kept two days
 *
 * Quotas are checked first: an exhausted one reserves nothing and answers the time until the
 * next UTC day. Otherwise the admission time is the latest time any bucket allows
 * (max over buckets of TAT - (burst - 1) * interval, and now), every bucket's TAT moves to
 * max(TAT, admission) + interval, and every quota counts the item: the slot is the caller's.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/ratelimit.h"
#include "stores/durable_internal.h"
#include "stores/redis_conn.h"

/* One call, many items. KEYS: every item's buckets, item after item. ARGV[1]: number of items;
 * then per item: its bucket count c, and c triples (interval us, burst, daily quota). Returns
 * per item {delay_ms, reserved (0/1), limiting bucket (1-based within the item, 0 = none)}. */
static const char ACQUIRE_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local sec = tonumber(t[1])\n"
    "local now = sec * 1000000 + tonumber(t[2])\n"
    "local day = math.floor(sec / 86400)\n"
    "local function one(k0, a0, n)\n"
    "  for i = 1, n do\n"
    "    local q = tonumber(ARGV[a0 + 3 * i])\n"
    "    if q > 0 then\n"
    "      local c = tonumber(redis.call('GET', KEYS[k0 + i] .. ':q:' .. day) or '0')\n"
    "      if c >= q then\n"
    "        return math.ceil(((day + 1) * 86400000000 - now) / 1000), 0, i\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local at, by, tats = now, 0, {}\n"
    "  for i = 1, n do\n"
    "    local T = tonumber(ARGV[a0 + 3 * i - 2])\n"
    "    if T > 0 then\n"
    "      local b = tonumber(ARGV[a0 + 3 * i - 1])\n"
    "      if b < 1 then b = 1 end\n"
    "      local tat = tonumber(redis.call('GET', KEYS[k0 + i]) or '0')\n"
    "      if tat < now then tat = now end\n"
    "      tats[i] = tat\n"
    "      local allow = tat - (b - 1) * T\n"
    "      if allow > at then at = allow; by = i end\n"
    "    end\n"
    "  end\n"
    "  for i = 1, n do\n"
    "    local T = tonumber(ARGV[a0 + 3 * i - 2])\n"
    "    if T > 0 then\n"
    "      local tat = tats[i]\n"
    "      if tat < at then tat = at end\n"
    "      tat = tat + T\n"
    "      redis.call('SET', KEYS[k0 + i], string.format('%.0f', tat), 'PX',\n"
    "                 math.ceil((tat - now) / 1000) + 1000)\n"
    "    end\n"
    "    if tonumber(ARGV[a0 + 3 * i]) > 0 then\n"
    "      local qk = KEYS[k0 + i] .. ':q:' .. day\n"
    "      if redis.call('INCR', qk) == 1 then redis.call('EXPIRE', qk, 172800) end\n"
    "    end\n"
    "  end\n"
    "  local delay = math.ceil((at - now) / 1000)\n"
    "  if delay > 0 then return delay, 1, by end\n"
    "  return 0, 0, 0\n"
    "end\n"
    "local out, k, a = {}, 0, 2\n"
    "for _ = 1, tonumber(ARGV[1]) do\n"
    "  local n = tonumber(ARGV[a])\n"
    "  local d, r, b = one(k, a, n)\n"
    "  out[#out + 1] = d\n"
    "  out[#out + 1] = r\n"
    "  out[#out + 1] = b\n"
    "  k = k + n\n"
    "  a = a + 1 + 3 * n\n"
    "end\n"
    "return out\n";

typedef struct redis_rl_s {
    cx_ratelimit_t base; /* first: the public view */
    cx__redis_pool_t *pool;
    char prefix[96]; /* "cx:<env>:limits:" */
    cx__redis_script_t acquire;
} redis_rl_t;

static int rr_acquire(cx_ratelimit_t *base, const cx_ratelimit_request_t *items, size_t n,
                      cx_ratelimit_result_t *out, cx_error_t *err)
{
    redis_rl_t *rl = (redis_rl_t *)base;
    if (n > CX_RATELIMIT_BATCH_MAX || (n && (items == NULL || out == NULL)))
        return cx_error_set(err, CX_EINVAL, "items", "0..%d items", CX_RATELIMIT_BATCH_MAX);
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = (cx_ratelimit_result_t){0, 0, -1};
        if (items[i].n > CX_RATELIMIT_MAX_CHECKS || (items[i].n && items[i].checks == NULL))
            return cx_error_set(err, CX_EINVAL, "checks", "0..%d checks per item",
                                CX_RATELIMIT_MAX_CHECKS);
        for (size_t c = 0; c < items[i].n; c++) {
            const char *k = items[i].checks[c].key;
            if (k == NULL || k[0] == '\0' ||
                strnlen(k, CX_RATELIMIT_KEY_MAX + 1) > CX_RATELIMIT_KEY_MAX)
                return cx_error_set(err, CX_EINVAL, "key", "bucket key empty or too long");
        }
        nkeys += items[i].n;
    }
    if (nkeys == 0)
        return 0;
    size_t nargs = 1 + n + 3 * nkeys;
    size_t keystride = strlen(rl->prefix) + CX_RATELIMIT_KEY_MAX + 1;
    char *keybuf = malloc(nkeys * keystride);
    char *numbuf = malloc(nargs * 24);
    const char **kp = malloc(nkeys * sizeof *kp);
    size_t *kl = malloc(nkeys * sizeof *kl);
    const char **ap = malloc(nargs * sizeof *ap);
    size_t *al = malloc(nargs * sizeof *al);
    int rc = 0;
    redisReply *r = NULL;
    if (!keybuf || !numbuf || !kp || !kl || !ap || !al) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "redis rate limiter: out of memory");
        goto done;
    }
    size_t k = 0, a = 0;
#define NUM(fmt, v)                                                                                \
    do {                                                                                           \
        char *p_ = numbuf + 24 * a;                                                                \
        al[a] = (size_t)snprintf(p_, 24, fmt, v);                                                  \
        ap[a++] = p_;                                                                              \
    } while (0)
    NUM("%zu", n);
    for (size_t i = 0; i < n; i++) {
        NUM("%zu", items[i].n);
        for (size_t c = 0; c < items[i].n; c++) {
            const cx_ratelimit_check_t *ch = &items[i].checks[c];
            char *kb = keybuf + k * keystride;
            kl[k] = (size_t)snprintf(kb, keystride, "%s%s", rl->prefix, ch->key);
            kp[k++] = kb;
            NUM("%" PRIu64, ch->interval_us);
            NUM("%u", (unsigned)ch->burst);
            NUM("%" PRIu64, ch->daily_quota);
        }
    }
#undef NUM
    rc = cx__redis_eval(rl->pool, &rl->acquire, nkeys, kp, kl, nargs, ap, al, &r, err);
    if (rc != 0)
        goto done;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 * n) {
        int w = 0;
        while (r->type == REDIS_REPLY_ERROR && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
            w++;
        rc = cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: rate limit: %.*s",
                          cx__redis_pool_name(rl->pool), w, r->str ? r->str : "bad reply");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        long long d = r->element[3 * i]->integer;
        out[i].delay_ms = d > 0 ? (uint64_t)d : 0;
        out[i].reserved = (int)r->element[3 * i + 1]->integer;
        out[i].limited_by = (int)r->element[3 * i + 2]->integer - 1;
    }
done:
    freeReplyObject(r);
    free(keybuf);
    free(numbuf);
    free(kp);
    free(kl);
    free(ap);
    free(al);
    return rc;
}

static int rr_ping(cx_ratelimit_t *base, cx_error_t *err)
{
    redis_rl_t *rl = (redis_rl_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(rl->pool, &cmd, 1, &r, err);
    if (rc == 0 && r->type == REDIS_REPLY_ERROR)
        rc = cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: PING refused",
                          cx__redis_pool_name(rl->pool));
    freeReplyObject(r);
    return rc;
}

static void rr_destroy(cx_ratelimit_t *base)
{
    redis_rl_t *rl = (redis_rl_t *)base;
    if (rl == NULL)
        return;
    cx__redis_pool_destroy(rl->pool);
    free(rl);
}

static const cx_ratelimit_ops_t REDIS_OPS = {
    .acquire = rr_acquire,
    .ping = rr_ping,
    .destroy = rr_destroy,
};

int cx_ratelimit_redis(const char *environment, const cx_redis_options_t *opts,
                       cx_ratelimit_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc != 0)
        return rc;
    redis_rl_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis rate limiter: out of memory");
    rl->base.ops = &REDIS_OPS;
    snprintf(rl->prefix, sizeof rl->prefix, "cx:%s:limits:", environment);
    if (cx__redis_script_init(&rl->acquire, ACQUIRE_LUA) != 0) {
        free(rl);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the rate-limit script");
    }
    rc = cx__redis_pool_create(opts, &rl->pool, err);
    if (rc != 0) {
        free(rl);
        return rc;
    }
    *out = &rl->base;
    return 0;
}
