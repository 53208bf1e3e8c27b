/* The dedupe stores (cx/dedupe_store.h): claim / complete / release semantics, run against the
 * embedded store and against a real redis-server started on a free loopback port
 * (tests/harness/redis_server.h). Then what only Redis has: value format and TTLs seen through
 * a raw connection, per-environment prefixes, outages (stopped, paused, unreachable, wrong
 * password), and the headline: three dedupe_claimer processes x 8 threads claiming the same
 * keys at once, owners counted outside the processes. Then what only the embedded store has:
 * allocator failures, its key limit, its sweep, keys inline and spilled, and its speed. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cx/arena.h"
#include "cx/dedupe_store.h"
#include "redis_server.h"
#include "stores/dedupe_internal.h"

#ifdef CX_WITH_REDIS
#include <hiredis/hiredis.h>
#endif

/* ---- Fixtures ----------------------------------------------------------------------------- */

static cx_test_redis_t g_redis;
static int g_env_seq;

typedef struct fx_s {
    int redis;    /* the store under test is the Redis one */
    char env[32]; /* a fresh environment per test: tests never share keys */
    cx_dedupe_store_t *s;
    cx_error_t err;
} fx_t;

static cx_redis_options_t redis_opts(int port)
{
    cx_redis_options_t o = {
        .host = "127.0.0.1", .port = port, .connect_timeout_ms = 300, .command_timeout_ms = 300};
    return o;
}

static int setup_store(void **state, int redis)
{
    fx_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->redis = redis;
    snprintf(f->env, sizeof f->env, "t%d", ++g_env_seq);
    int rc;
    if (redis) {
        cx_redis_options_t o = redis_opts(g_redis.port);
        rc = cx_dedupe_store_redis(f->env, &o, &f->s, &f->err);
    } else {
        rc = cx_dedupe_store_embedded(f->env, &f->s, &f->err);
    }
    *state = f;
    return rc;
}

static int setup_embedded(void **state)
{
    return setup_store(state, 0);
}

static int teardown_store(void **state)
{
    fx_t *f = *state;
    if (f) {
        cx_dedupe_store_destroy(f->s);
        free(f);
    }
    return 0;
}

#ifdef CX_WITH_REDIS
static int setup_redis(void **state)
{
    return setup_store(state, 1);
}

/* The same store forced onto its Lua scripts (what a server older than Redis 7.0 gets). */
static int setup_redis_scripts(void **state)
{
    int rc = setup_store(state, 1);
    if (rc == 0)
        cx__dedupe_redis_use_scripts(((fx_t *)*state)->s);
    return rc;
}

static int group_setup_redis(void **state)
{
    (void)state;
    return cx_test_redis_start(&g_redis, NULL);
}

static int group_teardown_redis(void **state)
{
    (void)state;
    cx_test_redis_destroy(&g_redis);
    return 0;
}
#endif

/* ---- Helpers ------------------------------------------------------------------------------ */

static void set_keys(cx_dedupe_item_t *it, const char *const *keys, size_t n, uint32_t done_ttl)
{
    memset(it, 0, n * sizeof *it);
    for (size_t i = 0; i < n; i++) {
        it[i].key = keys[i];
        it[i].done_ttl_s = done_ttl;
    }
}

static int claim(fx_t *f, cx_dedupe_item_t *it, size_t n, uint32_t ttl_ms)
{
    cx_error_clear(&f->err);
    return f->s->ops->claim(f->s, it, n, ttl_ms, &f->err);
}

static int complete(fx_t *f, cx_dedupe_item_t *it, size_t n)
{
    cx_error_clear(&f->err);
    return f->s->ops->complete(f->s, it, n, &f->err);
}

static int release(fx_t *f, cx_dedupe_item_t *it, size_t n)
{
    cx_error_clear(&f->err);
    return f->s->ops->release(f->s, it, n, &f->err);
}

/* Claims one key; returns its state (or 0 when the call failed). */
static cx_claim_state_t claim1(fx_t *f, const char *key, uint32_t ttl_ms, cx_dedupe_item_t *out)
{
    cx_dedupe_item_t it;
    set_keys(&it, &key, 1, 3600);
    if (claim(f, &it, 1, ttl_ms) != 0)
        return 0;
    if (out)
        *out = it;
    return it.state;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int is_hex_token(const char *t)
{
    if (strlen(t) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- Semantics, both stores --------------------------------------------------------------- */

static void test_absent_key_is_owned_with_a_fresh_token(void **state)
{
    fx_t *f = *state;
    const char *keys[] = {"dm:whatsapp:1:msg:a", "dm:whatsapp:1:msg:b"};
    cx_dedupe_item_t it[2];
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 30000), 0);
    assert_int_equal(it[0].state, CX_CLAIM_OWNED);
    assert_int_equal(it[1].state, CX_CLAIM_OWNED);
    assert_true(is_hex_token(it[0].token));
    assert_true(is_hex_token(it[1].token));
    assert_string_not_equal(it[0].token, it[1].token);
    char want[96];
    snprintf(want, sizeof want, "cx:%s:dedupe:", f->env);
    assert_string_equal(f->s->prefix, want);
}

static void test_duplicate_after_complete_is_done(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30000, &it), CX_CLAIM_OWNED);
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
    cx_dedupe_item_t dup;
    assert_int_equal(claim1(f, "k", 30000, &dup), CX_CLAIM_DONE);
    assert_string_equal(dup.token, "");
}

static void test_claim_while_processing_is_in_progress(void **state)
{
    fx_t *f = *state;
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_OWNED);
    cx_dedupe_item_t other;
    assert_int_equal(claim1(f, "k", 30000, &other), CX_CLAIM_IN_PROGRESS);
    assert_string_equal(other.token, "");
}

static void test_expired_processing_claim_can_be_reclaimed(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t a, b;
    assert_int_equal(claim1(f, "k", 30, &a), CX_CLAIM_OWNED);
    sleep_ms(80); /* the owner "crashed": its claim runs out */
    assert_int_equal(claim1(f, "k", 30000, &b), CX_CLAIM_OWNED);
    assert_string_not_equal(a.token, b.token);
}

static void test_stale_owner_cannot_release_a_reclaimed_key(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t slow, fresh;
    assert_int_equal(claim1(f, "k", 30, &slow), CX_CLAIM_OWNED);
    sleep_ms(80);
    assert_int_equal(claim1(f, "k", 30000, &fresh), CX_CLAIM_OWNED);
    /* The slow process comes back: its release may not touch the key the fresh claim owns
     * now. */
    assert_int_equal(release(f, &slow, 1), 0);
    assert_int_equal(slow.rc, CX_ETIMEOUT);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_IN_PROGRESS);
    assert_int_equal(complete(f, &fresh, 1), 0);
    assert_int_equal(fresh.rc, 0);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
    /* A done key is not the stale owner's to release either. */
    assert_int_equal(release(f, &slow, 1), 0);
    assert_int_equal(slow.rc, CX_ETIMEOUT);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
}

static void test_stale_owner_completion_wins_and_reports_a_possible_second_run(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t slow, fresh;
    assert_int_equal(claim1(f, "k", 30, &slow), CX_CLAIM_OWNED);
    sleep_ms(80);
    assert_int_equal(claim1(f, "k", 30000, &fresh), CX_CLAIM_OWNED);
    /* The slow handler finished: the item is processed, so the key is done, and the slow
     * owner learns that another claim had it (the item may have run twice). */
    assert_int_equal(complete(f, &slow, 1), 0);
    assert_int_equal(slow.rc, CX_ETIMEOUT);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
    /* The fresh owner's handler fails: its release cannot undo the done key. */
    assert_int_equal(release(f, &fresh, 1), 0);
    assert_int_equal(fresh.rc, CX_ETIMEOUT);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
}

static void test_complete_after_a_lapsed_claim_nobody_took_records_done(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30, &it), CX_CLAIM_OWNED);
    sleep_ms(80); /* the handler outlived its claim, but nobody else claimed the key */
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(it.rc, 0); /* it ran: the redelivery must be deduped */
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
}

static void test_release_lets_the_redelivery_claim_again(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30000, &it), CX_CLAIM_OWNED);
    assert_int_equal(release(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_OWNED);
}

static void test_release_of_an_expired_claim_succeeds(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30, &it), CX_CLAIM_OWNED);
    sleep_ms(80);
    assert_int_equal(release(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
}

static void test_complete_twice_is_idempotent(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30000, &it), CX_CLAIM_OWNED);
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
    assert_int_equal(complete(f, &it, 1), 0); /* a retry after a lost reply */
    assert_int_equal(it.rc, 0);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
}

static void test_same_key_twice_in_one_batch_second_is_in_progress(void **state)
{
    fx_t *f = *state;
    const char *keys[] = {"k", "k"};
    cx_dedupe_item_t it[2];
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 30000), 0);
    assert_int_equal(it[0].state, CX_CLAIM_OWNED);
    assert_int_equal(it[1].state, CX_CLAIM_IN_PROGRESS);
}

static void test_mixed_batch_reports_each_state(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t done;
    assert_int_equal(claim1(f, "done", 30000, &done), CX_CLAIM_OWNED);
    assert_int_equal(complete(f, &done, 1), 0);
    assert_int_equal(claim1(f, "busy", 30000, NULL), CX_CLAIM_OWNED);
    const char *keys[] = {"new", "done", "busy", "new2"};
    cx_dedupe_item_t it[4];
    set_keys(it, keys, 4, 3600);
    assert_int_equal(claim(f, it, 4, 30000), 0);
    assert_int_equal(it[0].state, CX_CLAIM_OWNED);
    assert_int_equal(it[1].state, CX_CLAIM_DONE);
    assert_int_equal(it[2].state, CX_CLAIM_IN_PROGRESS);
    assert_int_equal(it[3].state, CX_CLAIM_OWNED);
    /* complete/release take the whole batch; items they do not own are refused one by one. */
    assert_int_equal(complete(f, it, 4), 0);
    assert_int_equal(it[0].rc, 0);
    assert_int_equal(it[1].rc, CX_EINVAL);
    assert_int_equal(it[2].rc, CX_EINVAL);
    assert_int_equal(it[3].rc, 0);
}

static void test_done_key_expires_after_its_done_ttl(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30000, &it), CX_CLAIM_OWNED);
    it.done_ttl_s = 1;
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_DONE);
    sleep_ms(1150);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_OWNED);
}

static void test_forged_or_unowned_items_are_refused(void **state)
{
    fx_t *f = *state;
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "k", 30000, &it), CX_CLAIM_OWNED);
    cx_dedupe_item_t bad[4] = {it, it, it, it};
    bad[0].token[0] = '\0';         /* no token */
    bad[1].state = CX_CLAIM_DONE;   /* not owned */
    memcpy(bad[2].token, "XYZ", 3); /* not hex */
    bad[3].key = NULL;              /* no key */
    assert_int_equal(complete(f, bad, 4), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bad[i].rc, CX_EINVAL);
    assert_int_equal(release(f, bad, 4), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bad[i].rc, CX_EINVAL);
    /* A well-formed token that is not this claim's cannot release it. */
    cx_dedupe_item_t other = it;
    other.token[31] = other.token[31] == '0' ? '1' : '0';
    assert_int_equal(release(f, &other, 1), 0);
    assert_int_equal(other.rc, CX_ETIMEOUT);
    assert_int_equal(claim1(f, "k", 30000, NULL), CX_CLAIM_IN_PROGRESS);
}

static void test_invalid_claims_are_refused_with_the_item_path(void **state)
{
    fx_t *f = *state;
    char longkey[CX_DEDUPE_KEY_MAX + 2];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    const char *keys[] = {"ok", longkey};
    cx_dedupe_item_t it[2];
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 30000), CX_EINVAL);
    assert_string_equal(f->err.path, "items[1].key");
    keys[1] = "";
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 30000), CX_EINVAL);
    it[1].key = NULL;
    assert_int_equal(claim(f, it, 2, 30000), CX_EINVAL);
    keys[1] = "fine";
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 0), CX_EINVAL);
    assert_int_equal(claim(f, NULL, 1, 30000), CX_EINVAL);
    assert_int_equal(claim(f, it, CX_DEDUPE_BATCH_MAX + 1, 30000), CX_EINVAL);
    /* Nothing was claimed by the refused calls. */
    assert_int_equal(claim1(f, "ok", 30000, NULL), CX_CLAIM_OWNED);
    /* A key exactly at the limit is fine. */
    longkey[CX_DEDUPE_KEY_MAX] = '\0';
    assert_int_equal(claim1(f, longkey, 30000, NULL), CX_CLAIM_OWNED);
}

static void test_empty_batch_is_a_no_op(void **state)
{
    fx_t *f = *state;
    assert_int_equal(claim(f, NULL, 0, 30000), 0);
    assert_int_equal(complete(f, NULL, 0), 0);
    assert_int_equal(release(f, NULL, 0), 0);
    assert_int_equal(f->s->ops->ping(f->s, &f->err), 0);
}

static void test_bad_environment_is_refused(void **state)
{
    fx_t *f = *state;
    const char *bad[] = {"", "prod:dedupe:x", "has space", NULL,
                         "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cx_dedupe_store_t *s = (cx_dedupe_store_t *)1;
        cx_error_t err;
        cx_error_clear(&err);
        int rc;
        if (f->redis) {
            cx_redis_options_t o = redis_opts(g_redis.port);
            rc = cx_dedupe_store_redis(bad[i], &o, &s, &err);
        } else {
            rc = cx_dedupe_store_embedded(bad[i], &s, &err);
        }
        assert_int_equal(rc, CX_EINVAL);
        assert_null(s);
        assert_string_equal(err.path, "environment");
    }
}

/* 8 threads claim the same 1,000 keys in batches of 10; each key must have exactly one owner,
 * and no two threads may hold a key at the same time. */
typedef struct race_s {
    cx_dedupe_store_t *s;
    atomic_int owners[1000];
    atomic_uchar held[1000];
    atomic_int errors;
    atomic_int overlaps;
    pthread_barrier_t go;
} race_t;

typedef struct racer_s {
    race_t *r;
    int index;
} racer_t;

static void *racer(void *arg)
{
    racer_t *me = arg;
    race_t *r = me->r;
    pthread_barrier_wait(&r->go);
    int pending[1000], npending = 1000;
    for (int i = 0; i < 1000; i++)
        pending[i] =
            (me->index & 1) ? 999 - (i + me->index * 97) % 1000 : (i + me->index * 97) % 1000;
    while (npending > 0 && atomic_load(&r->errors) == 0) {
        int kept = 0;
        for (int at = 0; at < npending; at += 10) {
            int m = npending - at < 10 ? npending - at : 10;
            char names[10][32];
            cx_dedupe_item_t it[10], done[10];
            int which[10], nd = 0, dk[10];
            memset(it, 0, sizeof it);
            for (int j = 0; j < m; j++) {
                which[j] = pending[at + j];
                snprintf(names[j], sizeof names[j], "race:%d", which[j]);
                it[j].key = names[j];
                it[j].done_ttl_s = 3600;
            }
            cx_error_t err;
            cx_error_clear(&err);
            if (r->s->ops->claim(r->s, it, (size_t)m, 30000, &err) != 0) {
                atomic_fetch_add(&r->errors, 1);
                return NULL;
            }
            for (int j = 0; j < m; j++) {
                if (it[j].state == CX_CLAIM_IN_PROGRESS)
                    pending[kept++] = which[j];
                if (it[j].state != CX_CLAIM_OWNED)
                    continue;
                atomic_fetch_add(&r->owners[which[j]], 1);
                unsigned char zero = 0;
                if (!atomic_compare_exchange_strong(&r->held[which[j]], &zero, 1))
                    atomic_fetch_add(&r->overlaps, 1);
                done[nd] = it[j];
                dk[nd++] = which[j];
            }
            for (int j = 0; j < nd; j++)
                atomic_store(&r->held[dk[j]], 0);
            if (nd && (r->s->ops->complete(r->s, done, (size_t)nd, &err) != 0)) {
                atomic_fetch_add(&r->errors, 1);
                return NULL;
            }
            for (int j = 0; j < nd; j++)
                if (done[j].rc != 0)
                    atomic_fetch_add(&r->errors, 1);
        }
        npending = kept;
        if (npending)
            sched_yield();
    }
    return NULL;
}

static void run_race(cx_dedupe_store_t *s, int threads)
{
    race_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->s = s;
    pthread_barrier_init(&r->go, NULL, (unsigned)threads);
    pthread_t t[16];
    racer_t rc[16];
    for (int i = 0; i < threads; i++) {
        rc[i] = (racer_t){r, i};
        assert_int_equal(pthread_create(&t[i], NULL, racer, &rc[i]), 0);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r->errors), 0);
    assert_int_equal(atomic_load(&r->overlaps), 0);
    for (int k = 0; k < 1000; k++)
        assert_int_equal(atomic_load(&r->owners[k]), 1);
    pthread_barrier_destroy(&r->go);
    free(r);
}

static void test_eight_threads_one_owner_per_key(void **state)
{
    fx_t *f = *state;
    run_race(f->s, 8);
}

/* ---- Redis only --------------------------------------------------------------------------- */
#ifdef CX_WITH_REDIS

static redisContext *raw_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *raw(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void test_redis_values_are_versioned_with_ttls(void **state)
{
    fx_t *f = *state;
    redisContext *c = raw_connect(g_redis.port);
    cx_dedupe_item_t it;
    assert_int_equal(claim1(f, "dm:x:1:msg:a", 5000, &it), CX_CLAIM_OWNED);
    char key[200], want[100];
    snprintf(key, sizeof key, "cx:%s:dedupe:dm:x:1:msg:a", f->env);
    redisReply *r = raw(c, "GET %s", key);
    snprintf(want, sizeof want, "v1|processing|%s", it.token);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
    r = raw(c, "PTTL %s", key);
    assert_true(r->integer > 4000 && r->integer <= 5000);
    freeReplyObject(r);

    it.done_ttl_s = 3600;
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
    r = raw(c, "GET %s", key);
    snprintf(want, sizeof want, "v1|done|%s", it.token);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
    r = raw(c, "TTL %s", key);
    assert_true(r->integer > 3590 && r->integer <= 3600);
    freeReplyObject(r);

    /* done_ttl_s 0: the documented default, seven days. */
    assert_int_equal(claim1(f, "dm:x:1:msg:b", 5000, &it), CX_CLAIM_OWNED);
    it.done_ttl_s = 0;
    assert_int_equal(complete(f, &it, 1), 0);
    snprintf(key, sizeof key, "cx:%s:dedupe:dm:x:1:msg:b", f->env);
    r = raw(c, "TTL %s", key);
    assert_true(r->integer > 604790 && r->integer <= 604800);
    freeReplyObject(r);

    /* release deletes the key. */
    assert_int_equal(claim1(f, "dm:x:1:msg:c", 5000, &it), CX_CLAIM_OWNED);
    assert_int_equal(release(f, &it, 1), 0);
    snprintf(key, sizeof key, "cx:%s:dedupe:dm:x:1:msg:c", f->env);
    r = raw(c, "EXISTS %s", key);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

static void test_redis_environments_have_separate_keys(void **state)
{
    fx_t *f = *state;
    cx_redis_options_t o = redis_opts(g_redis.port);
    cx_dedupe_store_t *staging = NULL;
    char env[40];
    snprintf(env, sizeof env, "%s-staging", f->env);
    assert_int_equal(cx_dedupe_store_redis(env, &o, &staging, &f->err), 0);
    assert_int_equal(claim1(f, "same", 30000, NULL), CX_CLAIM_OWNED);
    cx_dedupe_item_t it;
    set_keys(&it, (const char *[]){"same"}, 1, 3600);
    assert_int_equal(staging->ops->claim(staging, &it, 1, 30000, &f->err), 0);
    assert_int_equal(it.state, CX_CLAIM_OWNED);
    redisContext *c = raw_connect(g_redis.port);
    redisReply *r = raw(c, "EXISTS cx:%s:dedupe:same cx:%s-staging:dedupe:same", f->env, f->env);
    assert_int_equal(r->integer, 2);
    freeReplyObject(r);
    redisFree(c);
    cx_dedupe_store_destroy(staging);
}

static void test_redis_unknown_stored_values_count_as_done(void **state)
{
    fx_t *f = *state;
    redisContext *c = raw_connect(g_redis.port);
    freeReplyObject(raw(c, "SET cx:%s:dedupe:future v2|processing|abc", f->env));
    freeReplyObject(raw(c, "SET cx:%s:dedupe:garbage %s", f->env, "not a dedupe value"));
    freeReplyObject(raw(c, "RPUSH cx:%s:dedupe:list x", f->env));
    freeReplyObject(raw(c, "SET cx:%s:dedupe:busy v1|processing|0123", f->env));
    redisFree(c);
    const char *keys[] = {"future", "garbage", "list", "busy"};
    cx_dedupe_item_t it[4];
    set_keys(it, keys, 4, 3600);
    assert_int_equal(claim(f, it, 4, 30000), 0);
    assert_int_equal(it[0].state, CX_CLAIM_DONE);
    assert_int_equal(it[1].state, CX_CLAIM_DONE);
    assert_int_equal(it[2].state, CX_CLAIM_DONE);
    assert_int_equal(it[3].state, CX_CLAIM_IN_PROGRESS);
}

static void test_redis_script_cache_flush_falls_back_to_eval(void **state)
{
    fx_t *f = *state;
    assert_int_equal(claim1(f, "a", 30000, NULL), CX_CLAIM_OWNED);
    redisContext *c = raw_connect(g_redis.port);
    freeReplyObject(raw(c, "SCRIPT FLUSH"));
    redisFree(c);
    cx_dedupe_item_t it, rel;
    assert_int_equal(claim1(f, "b", 30000, &it), CX_CLAIM_OWNED);
    assert_int_equal(complete(f, &it, 1), 0);
    assert_int_equal(it.rc, 0);
    /* Release is a script on every server. */
    assert_int_equal(claim1(f, "c", 30000, &rel), CX_CLAIM_OWNED);
    c = raw_connect(g_redis.port);
    freeReplyObject(raw(c, "SCRIPT FLUSH"));
    redisFree(c);
    assert_int_equal(release(f, &rel, 1), 0);
    assert_int_equal(rel.rc, 0);
    assert_int_equal(claim1(f, "c", 30000, NULL), CX_CLAIM_OWNED);
}

static void test_redis_stopped_between_claim_and_complete_is_unavailable_then_recovers(void **state)
{
    fx_t *f = *state;
    const char *keys[] = {"a", "b"};
    cx_dedupe_item_t it[2];
    set_keys(it, keys, 2, 3600);
    assert_int_equal(claim(f, it, 2, 30000), 0);
    assert_int_equal(it[0].state, CX_CLAIM_OWNED);

    assert_int_equal(cx_test_redis_stop(&g_redis), 0);
    double t0 = mono_s();
    assert_int_equal(complete(f, it, 2), CX_EUNAVAILABLE);
    assert_int_equal(it[0].rc, CX_EUNAVAILABLE);
    assert_int_equal(it[1].rc, CX_EUNAVAILABLE);
    assert_non_null(strstr(f->err.message, "redis 127.0.0.1:"));
    assert_int_equal(f->s->ops->ping(f->s, &f->err), CX_EUNAVAILABLE);
    cx_dedupe_item_t more;
    set_keys(&more, (const char *[]){"c"}, 1, 3600);
    assert_int_equal(claim(f, &more, 1, 30000), CX_EUNAVAILABLE);
    assert_string_equal(more.token, "");
    assert_true(mono_s() - t0 < 1.0); /* refused connections fail fast, no hang */

    assert_int_equal(cx_test_redis_restart(&g_redis), 0);
    /* The first call after the restart works: pooled connections that the old server closed
     * are noticed before use and replaced. */
    assert_int_equal(claim1(f, "c", 30000, NULL), CX_CLAIM_OWNED);
    assert_int_equal(f->s->ops->ping(f->s, &f->err), 0);
    /* Redis without persistence lost the claims; the handlers ran, so completing now records
     * them done and a redelivery is deduped. */
    assert_int_equal(complete(f, it, 2), 0);
    assert_int_equal(it[0].rc, 0);
    assert_int_equal(it[1].rc, 0);
    assert_int_equal(claim1(f, "a", 30000, NULL), CX_CLAIM_DONE);
}

static void test_redis_paused_server_times_out_within_the_bound(void **state)
{
    fx_t *f = *state;
    assert_int_equal(claim1(f, "warm", 30000, NULL), CX_CLAIM_OWNED); /* a pooled connection */
    assert_int_equal(cx_test_redis_pause(&g_redis), 0);
    double t0 = mono_s();
    cx_dedupe_item_t it;
    set_keys(&it, (const char *[]){"during-pause"}, 1, 3600);
    int rc = claim(f, &it, 1, 30000);
    double took = mono_s() - t0;
    double t1 = mono_s();
    int ping = f->s->ops->ping(f->s, &f->err); /* a new connection: accepted, never answered */
    double took_ping = mono_s() - t1;
    assert_int_equal(cx_test_redis_resume(&g_redis), 0);
    assert_int_equal(rc, CX_EUNAVAILABLE);
    assert_int_equal(ping, CX_EUNAVAILABLE);
    assert_non_null(strstr(f->err.message, "timed out"));
    /* connect + command timeouts are 300 ms each. */
    assert_true(took < 0.9);
    assert_true(took_ping < 0.9);
    assert_int_equal(claim1(f, "after-pause", 30000, NULL), CX_CLAIM_OWNED);
}

/* A fake server that, for each of `conns` connections, half-closes at once (FIN: the client's
 * socket goes to CLOSE_WAIT), reads a little, then resets the connection (RST). A client still
 * writing a large command then gets EPIPE, which raises SIGPIPE. */
typedef struct resetter_s {
    int listen_fd;
    int conns;
} resetter_t;

static void *resetter_main(void *arg)
{
    resetter_t *r = arg;
    for (int i = 0; i < r->conns; i++) {
        int fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0)
            break;
        shutdown(fd, SHUT_WR);
        char buf[65536];
        (void)recv(fd, buf, sizeof buf, MSG_WAITALL);
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(fd);
    }
    return NULL;
}

static int resetter_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_redis_connection_reset_mid_write_is_unavailable_not_sigpipe(void **state)
{
    (void)state;
    int port;
    resetter_t r = {resetter_listen(&port), 2};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, resetter_main, &r), 0);

    /* First prove the scenario: plain hiredis, no guard, in a child process, dies of SIGPIPE. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        redisContext *c = redisConnect("127.0.0.1", port);
        static char big[8 << 20];
        memset(big, 'x', sizeof big);
        const char *argv[] = {"SET", "k", big};
        size_t lens[] = {3, 1, sizeof big};
        redisReply *rep = redisCommandArgv(c, 3, argv, lens);
        _exit(rep ? 0 : 3);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    int reproduced = WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE;

    /* Then the store, in this process: an error, not a dead test. 10,000 keys of 512 bytes
     * make a 5 MB command. */
    enum { N = CX_DEDUPE_BATCH_MAX };
    char(*names)[CX_DEDUPE_KEY_MAX + 1] = malloc(sizeof(*names) * N);
    cx_dedupe_item_t *it = calloc(N, sizeof *it);
    assert_non_null(names);
    assert_non_null(it);
    for (int i = 0; i < N; i++) {
        memset(names[i], 'k', CX_DEDUPE_KEY_MAX);
        names[i][CX_DEDUPE_KEY_MAX] = '\0';
        for (size_t b = 0; b < 4; b++) /* a distinct prefix per key */
            names[i][b] = (char)('a' + ((i >> (4 * b)) & 15));
        it[i].key = names[i];
    }
    cx_redis_options_t o = redis_opts(port);
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), 0);
    int rc = s->ops->claim(s, it, N, 30000, &err);
    assert_int_equal(rc, CX_EUNAVAILABLE);
    assert_true(reproduced); /* else this test proves nothing */
    print_message("reset mid-write: %s (SIGPIPE %s without the guard)\n", err.message,
                  reproduced ? "reproduced" : "not reproduced");
    cx_dedupe_store_destroy(s);
    pthread_join(t, NULL);
    close(r.listen_fd);
    free(names);
    free(it);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_redis_unreachable_server_is_unavailable(void **state)
{
    (void)state;
    cx_redis_options_t o = redis_opts(closed_port());
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), 0); /* lazy: no connect yet */
    cx_dedupe_item_t it;
    set_keys(&it, (const char *[]){"k"}, 1, 3600);
    assert_int_equal(s->ops->claim(s, &it, 1, 30000, &err), CX_EUNAVAILABLE);
    assert_non_null(strstr(err.message, "connect"));
    cx_error_clear(&err);
    assert_int_equal(s->ops->ping(s, &err), CX_EUNAVAILABLE);
    cx_dedupe_store_destroy(s);
}

static void test_redis_invalid_options_are_refused(void **state)
{
    (void)state;
    cx_dedupe_store_t *s = (cx_dedupe_store_t *)1;
    cx_error_t err;
    cx_redis_options_t o = redis_opts(6379);
    o.host = NULL;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), CX_EINVAL);
    assert_null(s);
    o = redis_opts(0);
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), CX_EINVAL);
    o = redis_opts(6379);
    o.pool_size = -1;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), CX_EINVAL);
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", NULL, &s, &err), CX_EINVAL);
}

static void test_redis_auth_wrong_password_is_unavailable_and_not_echoed(void **state)
{
    (void)state;
    cx_test_redis_t secured;
    assert_int_equal(cx_test_redis_start(&secured, "s3cret-test-pass"), 0);
    const char *passwords[] = {"wrong-pass-7731", NULL, "s3cret-test-pass"};
    for (int i = 0; i < 3; i++) {
        cx_redis_options_t o = redis_opts(secured.port);
        o.password = passwords[i];
        cx_dedupe_store_t *s = NULL;
        cx_error_t err;
        cx_error_clear(&err);
        assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), 0);
        cx_dedupe_item_t it;
        set_keys(&it, (const char *[]){"k"}, 1, 3600);
        int rc = s->ops->claim(s, &it, 1, 30000, &err);
        if (i < 2) {
            assert_int_equal(rc, CX_EUNAVAILABLE);
            assert_non_null(strstr(err.message, i == 0 ? "AUTH rejected" : "NOAUTH"));
            assert_null(strstr(err.message, "wrong-pass"));
            assert_null(strstr(err.message, "s3cret"));
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(it.state, CX_CLAIM_OWNED);
        }
        cx_dedupe_store_destroy(s);
    }
    cx_test_redis_destroy(&secured);
}

static void test_redis_more_threads_than_pooled_connections(void **state)
{
    fx_t *f = *state;
    cx_redis_options_t o = redis_opts(g_redis.port);
    o.pool_size = 2;
    o.command_timeout_ms = 2000; /* waiting for a free connection is bounded by this */
    cx_dedupe_store_t *s = NULL;
    char env[40];
    snprintf(env, sizeof env, "%s-pool2", f->env);
    assert_int_equal(cx_dedupe_store_redis(env, &o, &s, &f->err), 0);
    run_race(s, 8);
    cx_dedupe_store_destroy(s);
}

/* The headline: 3 processes x 8 threads claim the same 1,000 keys at once, 10 rounds. Each
 * process logs its events to its own file; the counting happens here, outside them. */
typedef struct counts_s {
    int o, c, r, x, v;
} counts_t;

static void run_claimers(int fail_permille)
{
    enum { PROCS = 3, THREADS = 8, KEYS = 1000, ROUNDS = 10 };
    char dir[] = "/tmp/cx-claimers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char holders[64], outs[PROCS][64], env[32];
    snprintf(holders, sizeof holders, "%s/holders", dir);
    snprintf(env, sizeof env, "stress%d-%d", fail_permille, ++g_env_seq);
    int hfd = open(holders, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(hfd >= 0);
    assert_int_equal(ftruncate(hfd, (off_t)ROUNDS * KEYS), 0);
    close(hfd);

    int start[2], ready[2];
    assert_int_equal(pipe(start), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t pids[PROCS];
    char port[16], threads[8], keys[8], rounds[8], fail[8];
    snprintf(port, sizeof port, "%d", g_redis.port);
    snprintf(threads, sizeof threads, "%d", THREADS);
    snprintf(keys, sizeof keys, "%d", KEYS);
    snprintf(rounds, sizeof rounds, "%d", ROUNDS);
    snprintf(fail, sizeof fail, "%d", fail_permille);
    for (int p = 0; p < PROCS; p++) {
        snprintf(outs[p], sizeof outs[p], "%s/out%d", dir, p);
        const char *argv[] = {CX_DEDUPE_CLAIMER_PATH,
                              "--port",
                              port,
                              "--env",
                              env,
                              "--out",
                              outs[p],
                              "--threads",
                              threads,
                              "--keys",
                              keys,
                              "--rounds",
                              rounds,
                              "--batch",
                              "10",
                              "--fail-permille",
                              fail,
                              "--holders",
                              holders,
                              NULL};
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            dup2(start[0], 0);
            dup2(ready[1], 1);
            close(start[1]);
            close(ready[0]);
            execv(argv[0], (char *const *)argv);
            _exit(127);
        }
    }
    close(start[0]);
    close(ready[1]);
    /* Every process has connected and printed "ready": release them together. */
    FILE *rf = fdopen(ready[0], "r");
    char line[32];
    int nready = 0;
    while (nready < PROCS && fgets(line, sizeof line, rf))
        nready += strcmp(line, "ready\n") == 0;
    double t0 = mono_s();
    close(start[1]);
    int failed = 0;
    for (int p = 0; p < PROCS; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    double took = mono_s() - t0;
    fclose(rf);
    assert_int_equal(nready, PROCS);
    assert_int_equal(failed, 0);

    counts_t *n = calloc((size_t)ROUNDS * KEYS, sizeof *n);
    assert_non_null(n);
    long events = 0;
    for (int p = 0; p < PROCS; p++) {
        FILE *fp = fopen(outs[p], "r");
        assert_non_null(fp);
        int r, k;
        char ev;
        while (fscanf(fp, "%d %d %c", &r, &k, &ev) == 3) {
            assert_true(r >= 0 && r < ROUNDS && k >= 0 && k < KEYS);
            counts_t *c = &n[r * KEYS + k];
            events++;
            switch (ev) {
            case 'O':
                c->o++;
                break;
            case 'C':
                c->c++;
                break;
            case 'R':
                c->r++;
                break;
            case 'X':
                c->x++;
                break;
            case 'V':
                c->v++;
                break;
            default:
                fail_msg("unknown event %c", ev);
            }
        }
        fclose(fp);
        unlink(outs[p]);
    }
    long owned = 0, released = 0;
    for (int i = 0; i < ROUNDS * KEYS; i++) {
        if (n[i].c != 1 || n[i].x != 0 || n[i].v != 0 || n[i].o != n[i].r + 1 ||
            (fail_permille == 0 && n[i].o != 1))
            fail_msg("round %d key %d: owned %d completed %d released %d lost %d overlaps %d",
                     i / KEYS, i % KEYS, n[i].o, n[i].c, n[i].r, n[i].x, n[i].v);
        owned += n[i].o;
        released += n[i].r;
    }
    print_message("claimers: %d processes x %d threads, %d rounds x %d keys in %.2f s: "
                  "%ld ownerships, %ld releases, every key completed exactly once\n",
                  PROCS, THREADS, ROUNDS, KEYS, took, owned, released);
    free(n);
    unlink(holders);
    rmdir(dir);
}

static void test_redis_three_processes_eight_threads_exactly_one_owner_per_key(void **state)
{
    (void)state;
    run_claimers(0);
}

static void test_redis_three_processes_with_failing_handlers_one_completion_per_key(void **state)
{
    (void)state;
    run_claimers(100); /* 10% of handler runs fail and release their claim */
}

#else /* !CX_WITH_REDIS */

static void test_redis_store_without_hiredis_is_not_implemented(void **state)
{
    (void)state;
    cx_redis_options_t o = redis_opts(6379);
    cx_dedupe_store_t *s = (cx_dedupe_store_t *)1;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_redis("prod", &o, &s, &err), CX_ENOT_IMPLEMENTED);
    assert_null(s);
}

#endif /* CX_WITH_REDIS */

/* ---- Embedded only ------------------------------------------------------------------------ */

typedef struct counting_alloc_s {
    long budget; /* allocations left before failing; < 0 = unlimited */
    long live;
} counting_alloc_t;

static void *ca_alloc(void *ud, size_t size)
{
    counting_alloc_t *a = ud;
    if (a->budget == 0)
        return NULL;
    if (a->budget > 0)
        a->budget--;
    void *p = malloc(size);
    if (p)
        a->live++;
    return p;
}

static void ca_free(void *ud, void *ptr)
{
    counting_alloc_t *a = ud;
    if (ptr) {
        a->live--;
        free(ptr);
    }
}

/* dedupe_embedded.c keeps keys of up to this many bytes inside the table entry (INLINE_KEY)
 * and copies longer ones into an allocation of their own: the tests below pin both sides of
 * the boundary through the allocator. */
#define EMBEDDED_INLINE_KEY 96

/* Writes a key of len bytes (len >= 6) unique to id into buf (len + 1 bytes): the id first,
 * then 'x' up to len. */
static const char *spilled_or_inline_key(char *buf, size_t len, int id)
{
    int n = snprintf(buf, len + 1, "%05d", id);
    memset(buf + n, 'x', len - (size_t)n);
    buf[len] = '\0';
    return buf;
}

/* Keys of these lengths take an allocation each in the embedded store. */
static long spilled(const cx_dedupe_item_t *it, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; i++)
        k += strlen(it[i].key) > EMBEDDED_INLINE_KEY;
    return k;
}

/* A scenario touching every allocation site: create, claim enough keys to grow tables,
 * complete, release, destroy. Returns the first error. */
static int alloc_scenario(counting_alloc_t *ca)
{
    cx_allocator_t a = {ca_alloc, ca_free, ca};
    cx_dedupe_embedded_options_t o = {.allocator = &a};
    cx_dedupe_store_t *s = NULL;
    int rc = cx_dedupe_store_embedded_ex("dev", &o, &s, NULL);
    if (rc != 0)
        return rc;
    char names[40][EMBEDDED_INLINE_KEY + 16];
    cx_dedupe_item_t it[40];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 40; i++) {
        spilled_or_inline_key(names[i], i % 2 ? EMBEDDED_INLINE_KEY + 1 : 6, i);
        it[i].key = names[i];
    }
    cx_error_t err;
    cx_error_clear(&err);
    rc = s->ops->claim(s, it, 40, 30000, &err);
    if (rc == 0) {
        assert_int_equal(s->ops->complete(s, it, 20, &err), 0);
        assert_int_equal(s->ops->release(s, it + 20, 20, &err), 0);
    } else {
        assert_int_equal(rc, CX_ENOMEM);
        assert_int_equal(err.code, CX_ENOMEM);
        /* All or nothing: the keys the failed call had claimed are free again. */
        long budget = ca->budget;
        ca->budget = -1;
        cx_dedupe_item_t again[40];
        memcpy(again, it, sizeof again);
        assert_int_equal(s->ops->claim(s, again, 40, 30000, &err), 0);
        for (int i = 0; i < 40; i++)
            assert_int_equal(again[i].state, CX_CLAIM_OWNED);
        ca->budget = budget;
    }
    cx_dedupe_store_destroy(s);
    return rc;
}

static void test_embedded_failing_allocator_gives_enomem_and_no_leak(void **state)
{
    (void)state;
    int failures = 0;
    for (long budget = 0;; budget++) {
        counting_alloc_t ca = {budget, 0};
        int rc = alloc_scenario(&ca);
        assert_int_equal(ca.live, 0);
        if (rc == 0)
            break;
        assert_int_equal(rc, CX_ENOMEM);
        failures++;
        assert_true(budget < 1000);
    }
    assert_true(failures > 3); /* store, tables and spilled key copies all failed once */
}

static void test_embedded_max_keys_gives_enospc_and_claims_nothing(void **state)
{
    (void)state;
    cx_dedupe_embedded_options_t o = {.max_keys = 8};
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    char names[10][16];
    cx_dedupe_item_t it[10];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        it[i].key = names[i];
    }
    assert_int_equal(s->ops->claim(s, it, 10, 30000, &err), CX_ENOSPC);
    assert_non_null(strstr(err.message, "max_keys 8"));
    for (int i = 0; i < 10; i++)
        assert_string_equal(it[i].token, "");
    cx_error_clear(&err);
    assert_int_equal(s->ops->claim(s, it, 8, 30000, &err), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    assert_int_equal(s->ops->claim(s, it + 8, 1, 30000, &err), CX_ENOSPC);
    cx_dedupe_store_destroy(s);
}

/* A store sized in advance: refuses initial_keys above max_keys, fails cleanly when its tables
 * cannot be allocated, holds exactly max_keys, and behaves like any other store. */
static void test_embedded_initial_keys_presizes_and_keeps_the_limits(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    cx_dedupe_store_t *s = NULL;
    cx_dedupe_embedded_options_t bad = {.max_keys = 100, .initial_keys = 101};
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &bad, &s, &err), CX_EINVAL);
    assert_null(s);
    for (long budget = 0; budget < 8; budget++) { /* the store, then some of its 64 tables */
        counting_alloc_t ca = {budget, 0};
        cx_allocator_t a = {ca_alloc, ca_free, &ca};
        cx_dedupe_embedded_options_t o = {.allocator = &a, .initial_keys = 5000};
        assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), CX_ENOMEM);
        assert_int_equal(ca.live, 0);
    }
    enum { N = 3000 };
    cx_dedupe_embedded_options_t o = {.max_keys = N, .initial_keys = N};
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    static char names[N + 1][16];
    static cx_dedupe_item_t it[N + 1];
    memset(it, 0, sizeof it);
    for (int i = 0; i <= N; i++) {
        snprintf(names[i], sizeof names[i], "pre-%d", i);
        it[i].key = names[i];
    }
    for (int off = 0; off < N; off += 10) {
        assert_int_equal(s->ops->claim(s, it + off, 10, 30000, &err), 0);
        for (int i = off; i < off + 10; i++)
            assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    }
    assert_int_equal(s->ops->claim(s, it + N, 1, 30000, &err), CX_ENOSPC);
    assert_int_equal(s->ops->complete(s, it, 10, &err), 0);
    cx_dedupe_item_t dup[10];
    memset(dup, 0, sizeof dup);
    for (int i = 0; i < 10; i++)
        dup[i].key = names[i];
    assert_int_equal(s->ops->claim(s, dup, 10, 30000, &err), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(dup[i].state, CX_CLAIM_DONE);
    cx_dedupe_store_destroy(s);
}

static void test_embedded_expired_keys_make_room_again(void **state)
{
    (void)state;
    counting_alloc_t ca = {-1, 0};
    cx_allocator_t a = {ca_alloc, ca_free, &ca};
    cx_dedupe_embedded_options_t o = {.allocator = &a, .max_keys = 200, .initial_keys = 200};
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    long tables = ca.live; /* the store and its presized tables */
    static char names[200][300];
    cx_dedupe_item_t it[200];
    for (int gen = 0; gen < 3; gen++) {
        memset(it, 0, sizeof it);
        for (int i = 0; i < 200; i++) {
            /* inline and spilled keys side by side, so sweeps free both kinds */
            size_t len = i % 3 == 0 ? 8 : i % 3 == 1 ? EMBEDDED_INLINE_KEY + 1 : 299;
            it[i].key = spilled_or_inline_key(names[i], len, gen * 1000 + i);
        }
        assert_int_equal(s->ops->claim(s, it, 200, 20, &err), 0);
        for (int i = 0; i < 200; i++)
            assert_int_equal(it[i].state, CX_CLAIM_OWNED);
        /* The expired generation's copies were freed as its entries were swept. */
        assert_int_equal(ca.live, tables + spilled(it, 200));
        sleep_ms(40); /* every key expires: the next generation must fit */
    }
    cx_dedupe_store_destroy(s);
    assert_int_equal(ca.live, 0);
}

/* Below max_keys and without a table growing (the two full sweeps), claims alone give expired
 * keys' memory back: every stripe's incremental sweep passes over its whole table while new
 * keys come in. */
static void test_embedded_claims_sweep_expired_keys(void **state)
{
    (void)state;
    counting_alloc_t ca = {-1, 0};
    cx_allocator_t a = {ca_alloc, ca_free, &ca};
    /* 64 stripes of 512 slots: 12,000 new keys are about 190 claims (12 sweeps of 64 slots)
     * per stripe, far below the 384 keys that would make one grow. */
    cx_dedupe_embedded_options_t o = {.allocator = &a, .max_keys = 100000, .initial_keys = 16384};
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    long tables = ca.live;
    static char names[1000][200];
    static cx_dedupe_item_t it[1000];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 1000; i++)
        it[i].key = spilled_or_inline_key(names[i], EMBEDDED_INLINE_KEY + 1, i);
    assert_int_equal(s->ops->claim(s, it, 1000, 20, &err), 0);
    assert_int_equal(ca.live, tables + 1000);
    sleep_ms(40);
    for (int round = 0; round < 12; round++) {
        memset(it, 0, sizeof it);
        for (int i = 0; i < 1000; i++)
            it[i].key = spilled_or_inline_key(names[i], 16, 100000 + round * 1000 + i);
        assert_int_equal(s->ops->claim(s, it, 1000, 30000, &err), 0);
    }
    assert_int_equal(ca.live, tables); /* every expired copy freed, no table moved */
    cx_dedupe_store_destroy(s);
    assert_int_equal(ca.live, 0);
}

/* Keys of INLINE_KEY - 1 and INLINE_KEY bytes live in the entry, longer ones (up to
 * CX_DEDUPE_KEY_MAX) in an allocation; both kinds are found, compared to the last byte, completed,
 * released, renewed and freed alike. */
static void test_embedded_keys_at_the_inline_boundary(void **state)
{
    (void)state;
    counting_alloc_t ca = {-1, 0};
    cx_allocator_t a = {ca_alloc, ca_free, &ca};
    cx_dedupe_embedded_options_t o = {.allocator = &a, .initial_keys = 64};
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    long tables = ca.live; /* every stripe has its table: only key copies allocate now */
    static const size_t lens[] = {1, EMBEDDED_INLINE_KEY - 1, EMBEDDED_INLINE_KEY,
                                  EMBEDDED_INLINE_KEY + 1, CX_DEDUPE_KEY_MAX};
    enum { K = sizeof lens / sizeof *lens, N = 2 * K };
    static char names[N][CX_DEDUPE_KEY_MAX + 1];
    /* Each length twice: keys equal but for their last byte. */
    for (int i = 0; i < N; i++) {
        size_t len = lens[i % K];
        memset(names[i], 'k', len);
        names[i][len - 1] = (char)('a' + i / K);
        names[i][len] = '\0';
    }
    cx_dedupe_item_t it[N], again[N];
    memset(it, 0, sizeof it);
    for (int i = 0; i < N; i++)
        it[i].key = names[i];
    assert_int_equal(s->ops->claim(s, it, N, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    assert_int_equal(spilled(it, N), 4);
    assert_int_equal(ca.live, tables + 4);

    memcpy(again, it, sizeof again);
    assert_int_equal(s->ops->claim(s, again, N, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(again[i].state, CX_CLAIM_IN_PROGRESS);
    assert_int_equal(ca.live, tables + 4);

    /* Release one of each length, then claim them again. */
    assert_int_equal(s->ops->release(s, it, K, &err), 0);
    for (int i = 0; i < K; i++)
        assert_int_equal(it[i].rc, 0);
    assert_int_equal(ca.live, tables + 2);
    memcpy(again, it, sizeof again);
    assert_int_equal(s->ops->claim(s, again, N, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(again[i].state, i < K ? CX_CLAIM_OWNED : CX_CLAIM_IN_PROGRESS);
    assert_int_equal(ca.live, tables + 4);

    /* Renew puts back a claim that is gone: release the new claims, renew the old ones. */
    assert_int_equal(s->ops->release(s, again, K, &err), 0);
    assert_int_equal(s->ops->renew(s, it, K, 30000, &err), 0);
    for (int i = 0; i < K; i++) {
        assert_int_equal(it[i].rc, 0);
        assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    }
    assert_int_equal(ca.live, tables + 4);

    assert_int_equal(s->ops->complete(s, it, N, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(it[i].rc, 0);
    memcpy(again, it, sizeof again);
    assert_int_equal(s->ops->claim(s, again, N, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(again[i].state, CX_CLAIM_DONE);
    /* A done key's entry stays with its copy until it expires or the store goes. */
    assert_int_equal(ca.live, tables + 4);
    cx_dedupe_store_destroy(s);
    assert_int_equal(ca.live, 0);
}

/* Deleting an entry shifts the later entries of its probe run back; with inline and spilled
 * keys mixed (and tables growing underneath), every key that stays must still be found, every
 * deleted one must be free, and every spilled copy must be freed exactly once. */
static void test_embedded_deletion_with_mixed_inline_and_spilled_keys(void **state)
{
    (void)state;
    counting_alloc_t ca = {-1, 0};
    cx_allocator_t a = {ca_alloc, ca_free, &ca};
    cx_dedupe_embedded_options_t o = {.allocator = &a};
    cx_dedupe_store_t *s = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_store_embedded_ex("dev", &o, &s, &err), 0);
    enum { N = 2000 };
    static char names[N][EMBEDDED_INLINE_KEY + 64];
    static cx_dedupe_item_t it[N], again[N];
    memset(it, 0, sizeof it);
    for (int i = 0; i < N; i++) {
        size_t len = i % 4 == 0   ? 9
                     : i % 4 == 1 ? EMBEDDED_INLINE_KEY
                     : i % 4 == 2 ? EMBEDDED_INLINE_KEY + 1
                                  : EMBEDDED_INLINE_KEY + 60;
        it[i].key = spilled_or_inline_key(names[i], len, i);
        it[i].done_ttl_s = 3600;
    }
    for (int off = 0; off < N; off += 10)
        assert_int_equal(s->ops->claim(s, it + off, 10, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(it[i].state, CX_CLAIM_OWNED);
    /* 2,000 keys leave no stripe without a table (64 stripes); grown tables were freed. */
    long tables = 1 + 64;
    assert_int_equal(ca.live, tables + spilled(it, N));

    /* Release every third key, in batches that mix both kinds. */
    long released_spilled = 0;
    for (int i = 0; i < N; i += 3) {
        assert_int_equal(s->ops->release(s, &it[i], 1, &err), 0);
        assert_int_equal(it[i].rc, 0);
        released_spilled += spilled(&it[i], 1);
    }
    assert_int_equal(ca.live, tables + spilled(it, N) - released_spilled);

    memset(again, 0, sizeof again);
    for (int i = 0; i < N; i++)
        again[i].key = names[i];
    for (int off = 0; off < N; off += 10)
        assert_int_equal(s->ops->claim(s, again + off, 10, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(again[i].state, i % 3 == 0 ? CX_CLAIM_OWNED : CX_CLAIM_IN_PROGRESS);
    assert_int_equal(ca.live, tables + spilled(it, N));

    /* Complete every claim that holds a key now; then every key is done. */
    for (int i = 0; i < N; i++) {
        cx_dedupe_item_t *owner = i % 3 == 0 ? &again[i] : &it[i];
        assert_int_equal(s->ops->complete(s, owner, 1, &err), 0);
        assert_int_equal(owner->rc, 0);
    }
    memset(again, 0, sizeof again);
    for (int i = 0; i < N; i++)
        again[i].key = names[i];
    for (int off = 0; off < N; off += 10)
        assert_int_equal(s->ops->claim(s, again + off, 10, 30000, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(again[i].state, CX_CLAIM_DONE);
    cx_dedupe_store_destroy(s);
    assert_int_equal(ca.live, 0);
}

/* A forked child must not reuse its parent's claim tokens (their prefix names the process). */
static void test_forked_child_gets_new_token_prefix(void **state)
{
    (void)state;
    cx_dedupe_item_t a[1] = {{.key = "k1"}};
    cx_error_t err;
    assert_int_equal(cx__dedupe_new_tokens(a, 1, &err), 0);
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cx_dedupe_item_t b[1] = {{.key = "k2"}};
        int ok = cx__dedupe_new_tokens(b, 1, &err) == 0;
        ok = ok && write(fd[1], b[0].token, CX__DEDUPE_TOKEN_LEN) == CX__DEDUPE_TOKEN_LEN;
        _exit(ok ? 0 : 1);
    }
    char child[CX__DEDUPE_TOKEN_LEN];
    assert_int_equal(read(fd[0], child, sizeof child), (ssize_t)sizeof child);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd[0]);
    close(fd[1]);
    /* The first 16 hex digits are the process prefix, the rest a counter. */
    assert_memory_not_equal(a[0].token, child, 16);
    /* And the parent keeps its own. */
    cx_dedupe_item_t c[1] = {{.key = "k3"}};
    assert_int_equal(cx__dedupe_new_tokens(c, 1, &err), 0);
    assert_memory_equal(a[0].token, c[0].token, 16);
}

/* ---- Runner ------------------------------------------------------------------------------- */

#define SHARED_TESTS(setup)                                                                        \
    cmocka_unit_test_setup_teardown(test_absent_key_is_owned_with_a_fresh_token, setup,            \
                                    teardown_store),                                               \
        cmocka_unit_test_setup_teardown(test_duplicate_after_complete_is_done, setup,              \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_claim_while_processing_is_in_progress, setup,         \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_expired_processing_claim_can_be_reclaimed, setup,     \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_stale_owner_cannot_release_a_reclaimed_key, setup,    \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(                                                           \
            test_stale_owner_completion_wins_and_reports_a_possible_second_run, setup,             \
            teardown_store),                                                                       \
        cmocka_unit_test_setup_teardown(                                                           \
            test_complete_after_a_lapsed_claim_nobody_took_records_done, setup, teardown_store),   \
        cmocka_unit_test_setup_teardown(test_release_lets_the_redelivery_claim_again, setup,       \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_release_of_an_expired_claim_succeeds, setup,          \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_complete_twice_is_idempotent, setup, teardown_store), \
        cmocka_unit_test_setup_teardown(test_same_key_twice_in_one_batch_second_is_in_progress,    \
                                        setup, teardown_store),                                    \
        cmocka_unit_test_setup_teardown(test_mixed_batch_reports_each_state, setup,                \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_done_key_expires_after_its_done_ttl, setup,           \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_forged_or_unowned_items_are_refused, setup,           \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_invalid_claims_are_refused_with_the_item_path, setup, \
                                        teardown_store),                                           \
        cmocka_unit_test_setup_teardown(test_empty_batch_is_a_no_op, setup, teardown_store),       \
        cmocka_unit_test_setup_teardown(test_bad_environment_is_refused, setup, teardown_store),   \
        cmocka_unit_test_setup_teardown(test_eight_threads_one_owner_per_key, setup,               \
                                        teardown_store)

int main(void)
{
    const struct CMUnitTest embedded[] = {
        SHARED_TESTS(setup_embedded),
        cmocka_unit_test(test_embedded_failing_allocator_gives_enomem_and_no_leak),
        cmocka_unit_test(test_embedded_max_keys_gives_enospc_and_claims_nothing),
        cmocka_unit_test(test_embedded_expired_keys_make_room_again),
        cmocka_unit_test(test_embedded_claims_sweep_expired_keys),
        cmocka_unit_test(test_embedded_initial_keys_presizes_and_keeps_the_limits),
        cmocka_unit_test(test_embedded_keys_at_the_inline_boundary),
        cmocka_unit_test(test_embedded_deletion_with_mixed_inline_and_spilled_keys),
        cmocka_unit_test(test_forked_child_gets_new_token_prefix),
    };
    int failed = cmocka_run_group_tests_name("dedupe_store_embedded", embedded, NULL, NULL);
#ifndef CX_WITH_REDIS
    const struct CMUnitTest none[] = {
        cmocka_unit_test(test_redis_store_without_hiredis_is_not_implemented),
    };
    failed += cmocka_run_group_tests_name("dedupe_store_redis", none, NULL, NULL);
#endif
#ifdef CX_WITH_REDIS
    const struct CMUnitTest redis[] = {
        SHARED_TESTS(setup_redis),
        cmocka_unit_test_setup_teardown(test_redis_values_are_versioned_with_ttls, setup_redis,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_environments_have_separate_keys, setup_redis,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_unknown_stored_values_count_as_done, setup_redis,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_script_cache_flush_falls_back_to_eval,
                                        setup_redis, teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_more_threads_than_pooled_connections,
                                        setup_redis, teardown_store),
        cmocka_unit_test_setup_teardown(
            test_redis_stopped_between_claim_and_complete_is_unavailable_then_recovers, setup_redis,
            teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_paused_server_times_out_within_the_bound,
                                        setup_redis, teardown_store),
        cmocka_unit_test_setup_teardown(
            test_redis_connection_reset_mid_write_is_unavailable_not_sigpipe, setup_redis,
            teardown_store),
        cmocka_unit_test(test_redis_unreachable_server_is_unavailable),
        cmocka_unit_test(test_redis_invalid_options_are_refused),
        cmocka_unit_test(test_redis_auth_wrong_password_is_unavailable_and_not_echoed),
        cmocka_unit_test(test_redis_three_processes_eight_threads_exactly_one_owner_per_key),
        cmocka_unit_test(test_redis_three_processes_with_failing_handlers_one_completion_per_key),
    };
    failed += cmocka_run_group_tests_name("dedupe_store_redis", redis, group_setup_redis,
                                          group_teardown_redis);
    const struct CMUnitTest scripts[] = {
        SHARED_TESTS(setup_redis_scripts),
        cmocka_unit_test_setup_teardown(test_redis_values_are_versioned_with_ttls,
                                        setup_redis_scripts, teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_unknown_stored_values_count_as_done,
                                        setup_redis_scripts, teardown_store),
        cmocka_unit_test_setup_teardown(test_redis_script_cache_flush_falls_back_to_eval,
                                        setup_redis_scripts, teardown_store),
    };
    failed += cmocka_run_group_tests_name("dedupe_store_redis_scripts", scripts, group_setup_redis,
                                          group_teardown_redis);
#endif
    return failed;
}
