/* The Redis work queue (cx/queue.h): a Stream with a consumer group, and a sorted set as the
 * schedule.
 *
 *   enqueue   XADD <stream> * j <payload>, n of them pipelined in one round trip; durable
 *             once the n replies (entry ids) are read;
 *   fetch     (1) promote: a script moves due members of the schedule into the stream
 *             (ZRANGEBYSCORE ... LIMIT, XADD, ZREM: atomic, so an entry is promoted once even
 *             with many fetchers); (2) from time to time XAUTOCLAIM takes over entries idle
 *             longer than reclaim_idle_ms (their consumer crashed or stalled), continuing
 *             from the cursor the previous call returned; (3) XREADGROUP ... > for new ones,
 *             blocking when nothing came from (2);
 *   ack       a script: XACK + XDEL per id (deleted, so XLEN is the queue depth);
 *   schedule  a script: only if XPENDING shows the entry still held by this consumer, XACK +
 *             XDEL it, then ZADD the new payload at (Redis TIME + delay); one atomic step, so
 *             an item is never both in the stream and the schedule, nor in neither;
 *   touch     a script: for each id this consumer still holds, XCLAIM ... JUSTID with min idle
 *             0 (resets the idle time, not the delivery count); reports the ones it lost.
 *
 * Times that matter across processes (due times, idle times) come from the Redis server's
 * clock. The group is created on first use with id 0 (entries enqueued before any worker ran
 * are delivered) and again when a command answers NOGROUP (Redis restarted without the
 * stream). Every Redis error reply is CX_EUNAVAILABLE: the caller cannot make progress.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/queue.h"
#include "stores/durable_internal.h"
#include "stores/redis_conn.h"

#define GROUP "workers"
#define FIELD "j"
#define PROMOTE_MAX "1000"

/* KEYS: stream, schedule. ARGV[1]: the most entries to move. Returns how many moved. */
static const char PROMOTE_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[1])\n"
    "for _, m in ipairs(due) do\n"
    "  redis.call('XADD', KEYS[1], '*', 'j', m)\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "end\n"
    "return #due\n";

/* KEYS: stream. ARGV[1]: group; ARGV[2..]: ids. */
static const char ACK_LUA[] = "for i = 2, #ARGV do\n"
                              "  redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[i])\n"
                              "  redis.call('XDEL', KEYS[1], ARGV[i])\n"
                              "end\n"
                              "return #ARGV - 1\n";

/* KEYS: stream, schedule. ARGV: group, consumer, id ("" = none), delay ms, payload.
 * Returns 1 (scheduled) or 0 (the consumer no longer holds id: nothing done). */
static const char SCHEDULE_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "if ARGV[3] ~= '' then\n"
    "  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)\n"
    "  if type(p) ~= 'table' or #p ~= 1 or p[1][2] ~= ARGV[2] then return 0 end\n"
    "  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "  redis.call('XDEL', KEYS[1], ARGV[3])\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[5])\n"
    "return 1\n";

/* KEYS: stream. ARGV: group, consumer, ids... Returns per id 0 (touched) or 1 (lost). */
static const char TOUCH_LUA[] =
    "local out = {}\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if type(p) == 'table' and #p == 1 and p[1][2] == ARGV[2] then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    out[#out + 1] = 0\n"
    "  else\n"
    "    out[#out + 1] = 1\n"
    "  end\n"
    "end\n"
    "return out\n";

typedef struct redis_queue_s {
    cx_queue_t base; /* first: the public view */
    cx__redis_pool_t *pool;
    char stream[160];
    char sched[176];
    uint32_t command_ms;
    cx__redis_script_t promote, ack, schedule, touch;
    pthread_mutex_t mu; /* reclaim state */
    char cursor[CX_QUEUE_ID_SIZE];
    int64_t last_reclaim_ms;
} redis_queue_t;

static int error_reply(redis_queue_t *q, const redisReply *r, const char *what, cx_error_t *err)
{
    int w = 0;
    while (r && r->type == REDIS_REPLY_ERROR && (size_t)w < r->len && w < 32 && r->str[w] != ' ')
        w++;
    return cx_error_set(
        err, CX_EUNAVAILABLE, NULL, "redis %s: %s: %s%.*s", cx__redis_pool_name(q->pool), what,
        r && r->type == REDIS_REPLY_ERROR ? "" : "unexpected reply", w, r && r->str ? r->str : "");
}

static bool is_nogroup(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->len >= 7 && memcmp(r->str, "NOGROUP", 7) == 0;
}

static int create_group(redis_queue_t *q, cx_error_t *err)
{
    const char *argv[] = {"XGROUP", "CREATE", q->stream, GROUP, "0", "MKSTREAM"};
    cx__redis_cmd_t cmd = {6, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(q->pool, &cmd, 1, &r, err);
    if (rc != 0)
        return rc;
    /* BUSYGROUP: another process created it first. */
    if (r->type == REDIS_REPLY_ERROR && !(r->len >= 9 && memcmp(r->str, "BUSYGROUP", 9) == 0))
        rc = error_reply(q, r, "XGROUP CREATE", err);
    freeReplyObject(r);
    return rc;
}

static int rq_enqueue(cx_queue_t *base, const cx_queue_payload_t *p, size_t n, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    if (n > CX_QUEUE_BATCH_MAX || (n && p == NULL))
        return cx_error_set(err, CX_EINVAL, "payloads", "0..%d payloads", CX_QUEUE_BATCH_MAX);
    if (n == 0)
        return 0;
    /* A delayed payload goes to the schedule through the schedule script, sent as EVAL (not
     * EVALSHA: a pipeline cannot answer NOSCRIPT halfway); the others are XADDs. */
    cx__redis_cmd_t *cmds = malloc(n * sizeof *cmds);
    const char **argv = malloc(n * 11 * sizeof *argv);
    size_t *lens = malloc(n * 11 * sizeof *lens);
    char(*delays)[16] = malloc(n * sizeof *delays);
    redisReply **replies = malloc(n * sizeof *replies);
    int rc = 0;
    if (!cmds || !argv || !lens || !replies || !delays) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
        goto done;
    }
    size_t slen = strlen(q->stream);
    for (size_t i = 0; i < n; i++) {
        const char **a = argv + 11 * i;
        size_t *l = lens + 11 * i;
        if (p[i].delay_ms > 0) {
            l[9] = (size_t)snprintf(delays[i], sizeof delays[i], "%u", (unsigned)p[i].delay_ms);
            a[0] = "EVAL", l[0] = 4;
            a[1] = SCHEDULE_LUA, l[1] = sizeof SCHEDULE_LUA - 1;
            a[2] = "2", l[2] = 1;
            a[3] = q->stream, l[3] = slen;
            a[4] = q->sched, l[4] = strlen(q->sched);
            a[5] = GROUP, l[5] = strlen(GROUP);
            a[6] = "", l[6] = 0;
            a[7] = "", l[7] = 0;
            a[8] = delays[i]; /* l[8] below */
            a[9] = p[i].data;
            l[8] = l[9];
            l[9] = p[i].len;
            cmds[i] = (cx__redis_cmd_t){10, a, l};
            continue;
        }
        a[0] = "XADD", l[0] = 4;
        a[1] = q->stream, l[1] = slen;
        a[2] = "*", l[2] = 1;
        a[3] = FIELD, l[3] = 1;
        a[4] = p[i].data, l[4] = p[i].len;
        cmds[i] = (cx__redis_cmd_t){5, a, l};
    }
    rc = cx__redis_pipeline(q->pool, cmds, n, replies, err);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            int ok = p[i].delay_ms > 0 ? replies[i]->type == REDIS_REPLY_INTEGER
                                       : replies[i]->type == REDIS_REPLY_STRING;
            if (rc == 0 && !ok)
                rc = error_reply(q, replies[i], p[i].delay_ms > 0 ? "schedule" : "XADD", err);
            freeReplyObject(replies[i]);
        }
    }
done:
    free(cmds);
    free(argv);
    free(lens);
    free(replies);
    free(delays);
    return rc;
}

/* Appends the entries of an array of [id, [field, value, ...]] to out; entries whose fields
 * are gone (deleted while pending) are collected in gone for the caller to acknowledge. */
static int take_entries(const redisReply *arr, cx_queue_msg_t *out, size_t *n, size_t max,
                        char (*gone)[CX_QUEUE_ID_SIZE], size_t *ngone)
{
    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < arr->elements && *n < max; i++) {
        const redisReply *e = arr->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= CX_QUEUE_ID_SIZE)
            continue;
        const redisReply *id = e->element[0], *f = e->element[1];
        const redisReply *val = NULL;
        for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
            if (f->element[k]->type == REDIS_REPLY_STRING && f->element[k]->len == 1 &&
                f->element[k]->str[0] == 'j' && f->element[k + 1]->type == REDIS_REPLY_STRING)
                val = f->element[k + 1];
        if (val == NULL) {
            if (gone && *ngone < max) {
                memcpy(gone[*ngone], id->str, id->len);
                gone[(*ngone)++][id->len] = '\0';
            }
            continue;
        }
        cx_queue_msg_t *m = &out[*n];
        m->data = malloc(val->len ? val->len : 1);
        if (m->data == NULL)
            return CX_ENOMEM;
        memcpy(m->data, val->str, val->len);
        m->len = val->len;
        memcpy(m->id, id->str, id->len);
        m->id[id->len] = '\0';
        (*n)++;
    }
    return 0;
}

static int run_ack(redis_queue_t *q, const char *const *ids, size_t n, cx_error_t *err);

/* One command, answering NOGROUP by creating the group and trying once more. */
static int command_group(redis_queue_t *q, const char **argv, int argc, redisReply **r,
                         cx_error_t *err)
{
    cx__redis_cmd_t cmd = {argc, argv, NULL};
    for (int attempt = 0;; attempt++) {
        int rc = cx__redis_pipeline(q->pool, &cmd, 1, r, err);
        if (rc != 0)
            return rc;
        if (!is_nogroup(*r) || attempt == 1)
            break;
        freeReplyObject(*r);
        *r = NULL;
        if ((rc = create_group(q, err)) != 0)
            return rc;
    }
    if ((*r)->type == REDIS_REPLY_ERROR) {
        int rc = error_reply(q, *r, argv[0], err);
        freeReplyObject(*r);
        *r = NULL;
        return rc;
    }
    return 0;
}

static int rq_fetch(cx_queue_t *base, const char *consumer, size_t max, uint32_t block_ms,
                    uint32_t reclaim_idle_ms, cx_queue_msg_t *out, size_t *n, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    *n = 0;
    if (consumer == NULL || consumer[0] == '\0' ||
        strnlen(consumer, CX_QUEUE_CONSUMER_MAX + 1) > CX_QUEUE_CONSUMER_MAX)
        return cx_error_set(err, CX_EINVAL, "consumer", "consumer name empty or too long");
    if (max == 0)
        return 0;
    if (max > CX_QUEUE_BATCH_MAX)
        max = CX_QUEUE_BATCH_MAX;
    char countbuf[24];
    snprintf(countbuf, sizeof countbuf, "%zu", max);
    char(*gone)[CX_QUEUE_ID_SIZE] = NULL;
    size_t ngone = 0;
    int rc;

    /* (1) due scheduled entries into the stream. */
    {
        const char *keys[2] = {q->stream, q->sched};
        size_t kl[2] = {strlen(q->stream), strlen(q->sched)};
        const char *args[1] = {PROMOTE_MAX};
        size_t al[1] = {strlen(PROMOTE_MAX)};
        redisReply *r = NULL;
        rc = cx__redis_eval(q->pool, &q->promote, 2, keys, kl, 1, args, al, &r, err);
        if (rc == 0 && r->type == REDIS_REPLY_ERROR)
            rc = error_reply(q, r, "promote", err);
        freeReplyObject(r);
        if (rc != 0)
            return rc;
    }

    /* (2) entries of crashed or stalled consumers, a few times per reclaim period. */
    if (reclaim_idle_ms) {
        int64_t now = cx__mono_now_ms();
        char cursor[CX_QUEUE_ID_SIZE] = "";
        int64_t every = reclaim_idle_ms / 4 < 100 ? 100 : reclaim_idle_ms / 4;
        pthread_mutex_lock(&q->mu);
        if (now - q->last_reclaim_ms >= every) {
            q->last_reclaim_ms = now;
            snprintf(cursor, sizeof cursor, "%s", q->cursor);
        }
        pthread_mutex_unlock(&q->mu);
        if (cursor[0]) {
            char idle[24];
            snprintf(idle, sizeof idle, "%u", (unsigned)reclaim_idle_ms);
            const char *argv[] = {"XAUTOCLAIM", q->stream, GROUP,   consumer,
                                  idle,         cursor,    "COUNT", countbuf};
            redisReply *r = NULL;
            rc = command_group(q, argv, 8, &r, err);
            if (rc != 0)
                return rc;
            gone = malloc(max * sizeof *gone);
            if (gone == NULL) {
                freeReplyObject(r);
                return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
            }
            if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
                const redisReply *next = r->element[0];
                pthread_mutex_lock(&q->mu);
                if (next->type == REDIS_REPLY_STRING && next->len < CX_QUEUE_ID_SIZE) {
                    memcpy(q->cursor, next->str, next->len);
                    q->cursor[next->len] = '\0';
                    /* The scan stopped halfway through the pending entries: go on at the
                     * next fetch instead of a period later. */
                    if (strcmp(q->cursor, "0-0") != 0)
                        q->last_reclaim_ms = now - every;
                }
                pthread_mutex_unlock(&q->mu);
                if (take_entries(r->element[1], out, n, max, gone, &ngone) != 0) {
                    freeReplyObject(r);
                    free(gone);
                    cx_queue_msgs_free(out, *n);
                    *n = 0;
                    return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
                }
            }
            freeReplyObject(r);
        }
    }

    /* (3) new entries; wait only when nothing was reclaimed. */
    if (*n < max) {
        char cnt[24], blk[24];
        snprintf(cnt, sizeof cnt, "%zu", max - *n);
        uint32_t b = block_ms;
        if (b > q->command_ms / 2)
            b = q->command_ms / 2;
        snprintf(blk, sizeof blk, "%u", (unsigned)b);
        const char *argv[] = {"XREADGROUP", "GROUP", GROUP,     consumer,  "COUNT", cnt,
                              "BLOCK",      blk,     "STREAMS", q->stream, ">"};
        int argc = 11;
        if (*n > 0 || b == 0) { /* no BLOCK */
            argv[6] = "STREAMS";
            argv[7] = q->stream;
            argv[8] = ">";
            argc = 9;
        }
        redisReply *r = NULL;
        rc = command_group(q, argv, argc, &r, err);
        if (rc != 0) {
            /* What (2) took over stays pending for this consumer and is reclaimed again. */
            cx_queue_msgs_free(out, *n);
            *n = 0;
            free(gone);
            return rc;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
            if (take_entries(r->element[0]->element[1], out, n, max, NULL, NULL) != 0) {
                freeReplyObject(r);
                free(gone);
                cx_queue_msgs_free(out, *n);
                *n = 0;
                return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
            }
        }
        freeReplyObject(r);
    }
    if (ngone) {
        /* Deleted while pending (an older Redis reports them as empty entries): drop them. */
        const char **ids = malloc(ngone * sizeof *ids);
        if (ids) {
            for (size_t i = 0; i < ngone; i++)
                ids[i] = gone[i];
            cx_error_t ignored;
            cx_error_clear(&ignored);
            (void)run_ack(q, ids, ngone, &ignored);
            free(ids);
        }
    }
    free(gone);
    return 0;
}

static int run_ack(redis_queue_t *q, const char *const *ids, size_t n, cx_error_t *err)
{
    const char **args = malloc((n + 1) * sizeof *args);
    size_t *al = malloc((n + 1) * sizeof *al);
    if (args == NULL || al == NULL) {
        free(args);
        free(al);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
    }
    args[0] = GROUP;
    al[0] = strlen(GROUP);
    for (size_t i = 0; i < n; i++) {
        args[1 + i] = ids[i];
        al[1 + i] = strlen(ids[i]);
    }
    const char *keys[1] = {q->stream};
    size_t kl[1] = {strlen(q->stream)};
    redisReply *r = NULL;
    int rc = cx__redis_eval(q->pool, &q->ack, 1, keys, kl, n + 1, args, al, &r, err);
    if (rc == 0 && r->type == REDIS_REPLY_ERROR)
        rc = error_reply(q, r, "ack", err);
    freeReplyObject(r);
    free(args);
    free(al);
    return rc;
}

static int rq_ack(cx_queue_t *base, const char *const *ids, size_t n, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    if (n && ids == NULL)
        return cx_error_set(err, CX_EINVAL, "ids", "ids is NULL");
    if (n > CX_QUEUE_BATCH_MAX)
        return cx_error_set(err, CX_EINVAL, "ids", "more than %d ids", CX_QUEUE_BATCH_MAX);
    return n ? run_ack(q, ids, n, err) : 0;
}

static int rq_schedule(cx_queue_t *base, const char *consumer, const char *id, const void *payload,
                       size_t len, uint32_t delay_ms, int *lost, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    *lost = 0;
    if (id && consumer == NULL)
        return cx_error_set(err, CX_EINVAL, "consumer", "consumer is required with an id");
    char delay[24];
    snprintf(delay, sizeof delay, "%u", (unsigned)delay_ms);
    const char *keys[2] = {q->stream, q->sched};
    size_t kl[2] = {strlen(q->stream), strlen(q->sched)};
    const char *args[5] = {GROUP, consumer ? consumer : "", id ? id : "", delay, payload};
    size_t al[5] = {strlen(GROUP), strlen(args[1]), strlen(args[2]), strlen(delay), len};
    redisReply *r = NULL;
    int rc = cx__redis_eval(q->pool, &q->schedule, 2, keys, kl, 5, args, al, &r, err);
    if (rc == 0) {
        if (r->type != REDIS_REPLY_INTEGER)
            rc = error_reply(q, r, "schedule", err);
        else
            *lost = r->integer == 0;
    }
    freeReplyObject(r);
    return rc;
}

static int rq_touch(cx_queue_t *base, const char *consumer, const char *const *ids, size_t n,
                    unsigned char *lost, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    if (n == 0)
        return 0;
    if (ids == NULL || lost == NULL || consumer == NULL || n > CX_QUEUE_BATCH_MAX)
        return cx_error_set(err, CX_EINVAL, "ids", "ids, lost and consumer are required");
    const char **args = malloc((n + 2) * sizeof *args);
    size_t *al = malloc((n + 2) * sizeof *al);
    if (args == NULL || al == NULL) {
        free(args);
        free(al);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
    }
    args[0] = GROUP;
    al[0] = strlen(GROUP);
    args[1] = consumer;
    al[1] = strlen(consumer);
    for (size_t i = 0; i < n; i++) {
        args[2 + i] = ids[i];
        al[2 + i] = strlen(ids[i]);
    }
    const char *keys[1] = {q->stream};
    size_t kl[1] = {strlen(q->stream)};
    redisReply *r = NULL;
    int rc = cx__redis_eval(q->pool, &q->touch, 1, keys, kl, n + 2, args, al, &r, err);
    if (rc == 0) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
            rc = error_reply(q, r, "touch", err);
        else
            for (size_t i = 0; i < n; i++)
                lost[i] = r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer != 0;
    }
    freeReplyObject(r);
    free(args);
    free(al);
    return rc;
}

static int rq_stats(cx_queue_t *base, cx_queue_stats_t *out, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    memset(out, 0, sizeof *out);
    const char *a0[] = {"XLEN", q->stream};
    const char *a1[] = {"XPENDING", q->stream, GROUP};
    const char *a2[] = {"ZCARD", q->sched};
    const char *a3[] = {"XRANGE", q->stream, "-", "+", "COUNT", "1"};
    const char *a4[] = {"TIME"};
    cx__redis_cmd_t cmds[5] = {
        {2, a0, NULL}, {3, a1, NULL}, {2, a2, NULL}, {6, a3, NULL}, {1, a4, NULL}};
    redisReply *r[5];
    int rc = cx__redis_pipeline(q->pool, cmds, 5, r, err);
    if (rc != 0)
        return rc;
    if (r[0]->type == REDIS_REPLY_INTEGER)
        out->depth = (uint64_t)r[0]->integer;
    if (r[1]->type == REDIS_REPLY_ARRAY && r[1]->elements >= 1 &&
        r[1]->element[0]->type == REDIS_REPLY_INTEGER)
        out->pending = (uint64_t)r[1]->element[0]->integer;
    if (r[2]->type == REDIS_REPLY_INTEGER)
        out->scheduled = (uint64_t)r[2]->integer;
    if (r[3]->type == REDIS_REPLY_ARRAY && r[3]->elements == 1 && r[4]->type == REDIS_REPLY_ARRAY &&
        r[4]->elements == 2) {
        const redisReply *e = r[3]->element[0];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING) {
            double id_ms = strtod(e->element[0]->str, NULL);
            double now_ms = strtod(r[4]->element[0]->str, NULL) * 1000.0 +
                            strtod(r[4]->element[1]->str, NULL) / 1000.0;
            out->oldest_age_s = now_ms > id_ms ? (now_ms - id_ms) / 1000.0 : 0;
        }
    }
    if (r[0]->type == REDIS_REPLY_ERROR)
        rc = error_reply(q, r[0], "XLEN", err);
    for (int i = 0; i < 5; i++)
        freeReplyObject(r[i]);
    return rc;
}

static int rq_ping(cx_queue_t *base, cx_error_t *err)
{
    redis_queue_t *q = (redis_queue_t *)base;
    const char *argv[] = {"PING"};
    cx__redis_cmd_t cmd = {1, argv, NULL};
    redisReply *r = NULL;
    int rc = cx__redis_pipeline(q->pool, &cmd, 1, &r, err);
    if (rc == 0 && r->type == REDIS_REPLY_ERROR)
        rc = error_reply(q, r, "PING", err);
    freeReplyObject(r);
    return rc;
}

static void rq_destroy(cx_queue_t *base)
{
    redis_queue_t *q = (redis_queue_t *)base;
    if (q == NULL)
        return;
    cx__redis_pool_destroy(q->pool);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static const cx_queue_ops_t REDIS_OPS = {
    .enqueue = rq_enqueue,
    .fetch = rq_fetch,
    .ack = rq_ack,
    .schedule = rq_schedule,
    .touch = rq_touch,
    .stats = rq_stats,
    .ping = rq_ping,
    .destroy = rq_destroy,
};

int cx_queue_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                   cx_queue_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (name == NULL)
        name = "inbound";
    int rc = cx__store_check_name(environment, 64, "environment", err);
    if (rc == 0)
        rc = cx__store_check_name(name, 32, "queue name", err);
    if (rc != 0)
        return rc;
    redis_queue_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis queue: out of memory");
    q->base.ops = &REDIS_OPS;
    snprintf(q->base.name, sizeof q->base.name, "%s/%s", environment, name);
    snprintf(q->stream, sizeof q->stream, "cx:%s:queue:{%s}", environment, name);
    snprintf(q->sched, sizeof q->sched, "cx:%s:queue:{%s}:scheduled", environment, name);
    snprintf(q->cursor, sizeof q->cursor, "0-0");
    q->command_ms = opts && opts->command_timeout_ms ? opts->command_timeout_ms : 1000;
    if (cx__redis_script_init(&q->promote, PROMOTE_LUA) != 0 ||
        cx__redis_script_init(&q->ack, ACK_LUA) != 0 ||
        cx__redis_script_init(&q->schedule, SCHEDULE_LUA) != 0 ||
        cx__redis_script_init(&q->touch, TOUCH_LUA) != 0) {
        free(q);
        return cx_error_set(err, CX_ECRYPTO, NULL, "cannot hash the queue scripts");
    }
    rc = cx__redis_pool_create(opts, &q->pool, err);
    if (rc != 0) {
        free(q);
        return rc;
    }
    pthread_mutex_init(&q->mu, NULL);
    q->last_reclaim_ms = -1000000;
    *out = &q->base;
    return 0;
}
