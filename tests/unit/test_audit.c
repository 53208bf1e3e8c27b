/* The audit trail (cx/audit.h): HMAC-chained records and signed checkpoints, on the file store
 * and on a real redis-server (tests/harness/redis_server.h).
 *
 * The headline: verify detects an edited, a deleted, a reordered, an appended-forged and a
 * truncated-tail record, and a chain recomputed without the key (with or without its
 * checkpoint). The tampering is done the way an attacker with access to the storage would do
 * it: by rewriting the file, or the stream, with the store's own fields kept consistent. Then:
 * checkpoints, retention that moves the genesis, key rotation, concurrent appends from threads
 * and from processes (compare-and-set on the previous MAC), secret-rotation and integration
 * records, `cx audit verify|show|retain`. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cx/audit.h"
#include "redis_server.h"

#ifdef CX_WITH_REDIS
#include <hiredis/hiredis.h>
#endif

static cx_test_redis_t g_redis;
static int g_redis_up;
static int g_seq;

static const unsigned char KEY[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char EVIL[32] = "attacker-key-attacker-key-attack";

typedef struct fx_s {
    int redis;
    char dir[64]; /* file store directory (also a scratch directory for Redis tests) */
    char env[32]; /* Redis environment */
    cx_audit_store_t *st;
    cx_audit_t *a;
    cx_error_t err;
} fx_t;

/* ---- Fixtures ------------------------------------------------------------------------------- */

static int open_store(fx_t *f, const char *dir, const char *env, cx_audit_store_t **st)
{
    cx_error_t err = {0};
#ifdef CX_WITH_REDIS
    if (f->redis) {
        cx_redis_options_t o = {.host = "127.0.0.1",
                                .port = g_redis.port,
                                .connect_timeout_ms = 1000,
                                .command_timeout_ms = 2000};
        return cx_audit_store_redis(env, &o, st, &err);
    }
#else
    (void)f;
    (void)env;
#endif
    cx_audit_file_options_t o = {.fsync = CX_AUDIT_FSYNC_NONE};
    return cx_audit_store_file(dir, &o, st, &err);
}

static int open_audit(cx_audit_store_t *st, const unsigned char *key, const char *id,
                      cx_audit_t **a)
{
    cx_audit_key_t k = {id, key, 32};
    cx_audit_config_t cfg = {.store = st, .keys = &k, .n_keys = 1};
    cx_error_t err = {0};
    return cx_audit_new(&cfg, a, &err);
}

static int setup(void **state, int redis)
{
    fx_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->redis = redis;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx-audit-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->env, sizeof f->env, "a%d-%d", (int)getpid(), ++g_seq);
    *state = f;
    if (open_store(f, f->dir, f->env, &f->st) != 0)
        return -1;
    return open_audit(f->st, KEY, "k1", &f->a);
}

static int setup_file(void **state)
{
    return setup(state, 0);
}

#ifdef CX_WITH_REDIS
static int setup_redis(void **state)
{
    return setup(state, 1);
}
#endif

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f) {
        cx_audit_free(f->a);
        cx_audit_store_destroy(f->st);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", f->dir);
        free(f);
    }
    return 0;
}

/* ---- Helpers -------------------------------------------------------------------------------- */

static int append_n(cx_audit_t *a, const char *tenant, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char target[32], cid[32];
        snprintf(target, sizeof target, "msg-%d", i);
        snprintf(cid, sizeof cid, "corr-%d", i % 3);
        cx_audit_entry_t e = {.tenant_id = tenant,
                              .action = "email.send",
                              .target = target,
                              .correlation_id = cid,
                              .dedupe_key = "email:outbound:acme:x",
                              .capability = 10,
                              .outcome = i % 4 == 3 ? CX_AUDIT_FAILED : CX_AUDIT_SUCCEEDED,
                              .error_code = i % 4 == 3 ? "RATE_LIMITED" : NULL};
        cx_error_t err = {0};
        int rc = cx_audit_append(a, &e, NULL, &err);
        if (rc != 0) {
            fprintf(stderr, "append: %s (%s)\n", err.message, err.path);
            return rc;
        }
    }
    return 0;
}

static int verify(fx_t *f, cx_audit_report_t *rep)
{
    cx_error_clear(&f->err);
    return cx_audit_verify(f->a, "acme", NULL, rep, &f->err);
}

typedef struct lines_s {
    char **v;
    size_t n;
} lines_t;

static void lines_free(lines_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void lines_push(lines_t *l, const char *s, size_t n)
{
    l->v = realloc(l->v, (l->n + 1) * sizeof *l->v);
    assert_non_null(l->v);
    l->v[l->n] = strndup(s, n);
    assert_non_null(l->v[l->n]);
    l->n++;
}

/* "key":"value" of a JSON line into out (the value has no escapes in these tests). */
static int json_str(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (q == NULL || (size_t)(q - p) >= cap)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return 0;
}

/* s with the first `from` replaced by `to` (a new string). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    assert_non_null(p);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
    return out;
}

static void set_line(lines_t *l, size_t i, char *s)
{
    free(l->v[i]);
    l->v[i] = s;
}

static void log_path(const fx_t *f, const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/acme.jsonl", dir ? dir : f->dir);
}

/* The tenant's records as stored (file lines, or the streams' rec fields). */
static lines_t read_log_of(fx_t *f, const char *dir, const char *env)
{
    lines_t l = {0};
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        assert_non_null(c);
        redisReply *r = redisCommand(c, "XRANGE cx:%s:audit:{acme}:log - +", env);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *fl = r->element[i]->element[1];
            for (size_t j = 0; j + 1 < fl->elements; j += 2)
                if (strcmp(fl->element[j]->str, "rec") == 0)
                    lines_push(&l, fl->element[j + 1]->str, fl->element[j + 1]->len);
        }
        freeReplyObject(r);
        redisFree(c);
        return l;
    }
#else
    (void)env;
#endif
    char path[600];
    log_path(f, dir, path, sizeof path);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0)
        lines_push(&l, line, line[n - 1] == '\n' ? (size_t)n - 1 : (size_t)n);
    free(line);
    fclose(fp);
    return l;
}

static lines_t read_log(fx_t *f)
{
    return read_log_of(f, NULL, f->env);
}

/* Replaces the stored records with l. On Redis, like an attacker who knows the layout: the
 * stream is rebuilt with seq and mac fields matching each record's JSON. */
static void write_log(fx_t *f, const lines_t *l)
{
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        assert_non_null(c);
        char key[128];
        snprintf(key, sizeof key, "cx:%s:audit:{acme}:log", f->env);
        freeReplyObject(redisCommand(c, "DEL %s", key));
        for (size_t i = 0; i < l->n; i++) {
            char seq[24] = "", mac[80] = "";
            json_str(l->v[i], "seq", seq, sizeof seq);
            json_str(l->v[i], "mac", mac, sizeof mac);
            redisReply *r =
                redisCommand(c, "XADD %s * v 1 seq %s mac %s rec %s", key, seq, mac, l->v[i]);
            assert_non_null(r);
            assert_int_equal(r->type, REDIS_REPLY_STRING);
            freeReplyObject(r);
        }
        redisFree(c);
        return;
    }
#endif
    char path[600];
    log_path(f, NULL, path, sizeof path);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (size_t i = 0; i < l->n; i++)
        fprintf(fp, "%s\n", l->v[i]);
    fclose(fp);
}

static void expect_problem(fx_t *f, cx_audit_problem_t p, uint64_t seq)
{
    cx_audit_report_t rep;
    int rc = verify(f, &rep);
    if (rep.problem != p)
        print_message("expected problem %d (%s), got %d (%s) at seq %" PRIu64 "\n", p,
                      cx_audit_problem_str(p), rep.problem, cx_audit_problem_str(rep.problem),
                      rep.bad_seq);
    assert_int_equal(rc, CX_EAUDIT_TAMPERED);
    assert_int_equal(f->err.code, CX_EAUDIT_TAMPERED);
    assert_int_equal(rep.problem, p);
    assert_int_equal(rep.bad_seq, seq);
    assert_true(rep.bad_pos[0] != '\0');
}

/* ---- Appends and the record format --------------------------------------------------------- */

static void test_appended_records_verify_and_chain(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.problem, CX_AUDIT_OK);
    assert_int_equal(rep.records, 10);
    assert_int_equal(rep.first_seq, 1);
    assert_int_equal(rep.last_seq, 10);
    assert_int_equal(rep.checkpoint_seq, 10);
    assert_int_equal(rep.unanchored, 0);
    assert_int_equal(rep.genesis_seq, 0);

    /* Each record is an AuditRecord in proto3 JSON, linked to the previous one. */
    lines_t l = read_log(f);
    assert_int_equal(l.n, 10);
    char prev[80] = "";
    for (size_t i = 0; i < l.n; i++) {
        char seq[24], mac[80], pm[80] = "", tenant[32], key_id[32];
        assert_int_equal(json_str(l.v[i], "seq", seq, sizeof seq), 0);
        assert_int_equal(atoi(seq), (int)i + 1);
        assert_int_equal(json_str(l.v[i], "mac", mac, sizeof mac), 0);
        assert_int_equal(strlen(mac), 64);
        assert_int_equal(json_str(l.v[i], "tenantId", tenant, sizeof tenant), 0);
        assert_string_equal(tenant, "acme");
        assert_int_equal(json_str(l.v[i], "keyId", key_id, sizeof key_id), 0);
        assert_string_equal(key_id, "k1");
        json_str(l.v[i], "prevMac", pm, sizeof pm);
        assert_string_equal(pm, prev);
        assert_non_null(strstr(l.v[i], "\"recordedAt\":\""));
        assert_non_null(strstr(l.v[i], "\"action\":\"email.send\""));
        memcpy(prev, mac, sizeof prev);
    }
    assert_non_null(strstr(l.v[2], "\"errorCode\":\"RATE_LIMITED\""));
    assert_non_null(strstr(l.v[2], "\"outcome\":\"AUDIT_OUTCOME_FAILED\""));
    lines_free(&l);
}

static void test_batch_append_is_one_call_with_consecutive_seqs(void **state)
{
    fx_t *f = *state;
    cx_audit_entry_t es[3] = {
        {.tenant_id = "acme", .action = "a.one", .outcome = CX_AUDIT_SUCCEEDED},
        {.tenant_id = "acme", .action = "a.two", .outcome = CX_AUDIT_DENIED},
        {.tenant_id = "acme", .action = "a.three", .outcome = CX_AUDIT_DEDUPED},
    };
    uint64_t last = 0;
    assert_int_equal(cx_audit_append_batch(f->a, es, 3, &last, &f->err), 0);
    assert_int_equal(last, 3);
    /* A batch holds one tenant. */
    es[1].tenant_id = "other";
    assert_int_equal(cx_audit_append_batch(f->a, es, 3, NULL, &f->err), CX_EINVAL);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.records, 3);
}

static void test_invalid_entries_are_refused_with_the_field(void **state)
{
    fx_t *f = *state;
    cx_audit_entry_t e = {.tenant_id = "Acme", .action = "x.y", .outcome = CX_AUDIT_SUCCEEDED};
    assert_int_equal(cx_audit_append(f->a, &e, NULL, &f->err), CX_EVALIDATION);
    assert_string_equal(f->err.path, "tenant_id");
    cx_error_clear(&f->err);
    e.tenant_id = "acme";
    e.action = NULL;
    assert_int_equal(cx_audit_append(f->a, &e, NULL, &f->err), CX_EVALIDATION);
    assert_string_equal(f->err.path, "action");
    cx_error_clear(&f->err);
    e.action = "x.y";
    e.outcome = 0;
    assert_int_equal(cx_audit_append(f->a, &e, NULL, &f->err), CX_EVALIDATION);
    assert_string_equal(f->err.path, "outcome");
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.records, 0);
}

/* ---- The headline: tampering ----------------------------------------------------------------- */

static void test_edited_record_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    lines_t l = read_log(f);
    set_line(&l, 4, replace(l.v[4], "\"target\":\"msg-5\"", "\"target\":\"msg-X\""));
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MAC_MISMATCH, 5);
}

static void test_edited_outcome_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 5), 0);
    lines_t l = read_log(f);
    char *s = replace(l.v[2], "\"outcome\":\"AUDIT_OUTCOME_FAILED\"",
                      "\"outcome\":\"AUDIT_OUTCOME_SUCCEEDED\"");
    set_line(&l, 2, replace(s, ",\"errorCode\":\"RATE_LIMITED\"", ""));
    free(s);
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MAC_MISMATCH, 3);
}

static void test_deleted_record_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    lines_t l = read_log(f);
    free(l.v[4]);
    memmove(&l.v[4], &l.v[5], (l.n - 5) * sizeof *l.v);
    l.n--;
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_REMOVED, 5);
}

static void test_deleted_first_record_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 4), 0);
    lines_t l = read_log(f);
    free(l.v[0]);
    memmove(&l.v[0], &l.v[1], (l.n - 1) * sizeof *l.v);
    l.n--;
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_REMOVED, 1);
}

static void test_reordered_records_are_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    lines_t l = read_log(f);
    char *t = l.v[3];
    l.v[3] = l.v[4];
    l.v[4] = t;
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_REORDERED, 4);
}

static void test_reordered_and_renumbered_records_are_detected(void **state)
{
    /* Swapping two records and their seq fields keeps the numbering: the MACs catch it. */
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 6), 0);
    lines_t l = read_log(f);
    char *a = replace(l.v[2], "\"seq\":\"3\"", "\"seq\":\"4\"");
    char *b = replace(l.v[3], "\"seq\":\"4\"", "\"seq\":\"3\"");
    set_line(&l, 2, b);
    set_line(&l, 3, a);
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MAC_MISMATCH, 3);
}

static void test_appended_forged_record_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    lines_t l = read_log(f);
    /* A well-formed record 11, linked to record 10, with a made-up MAC. */
    char mac10[80], pm10[80];
    json_str(l.v[9], "mac", mac10, sizeof mac10);
    json_str(l.v[9], "prevMac", pm10, sizeof pm10);
    char *s1 = replace(l.v[9], "\"seq\":\"10\"", "\"seq\":\"11\"");
    char *s2 = replace(s1, pm10, mac10); /* prevMac = mac(10) */
    free(s1);
    char *m = strstr(s2, "\"mac\":\""); /* its own mac: made up */
    assert_non_null(m);
    memset(m + 7, 'a', 64);
    lines_push(&l, s2, strlen(s2));
    free(s2);
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MAC_MISMATCH, 11);
}

static void test_appended_record_under_another_key_is_detected(void **state)
{
    /* A record forged by a writer with the wrong key (but our key id) is a MAC mismatch. */
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    cx_audit_t *evil;
    assert_int_equal(open_audit(f->st, EVIL, "k1", &evil), 0);
    assert_int_equal(append_n(evil, "acme", 4, 1), 0);
    cx_audit_free(evil);
    expect_problem(f, CX_AUDIT_CHECKPOINT_INVALID, 4); /* it also re-signed the checkpoint */
}

static void test_truncated_tail_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 10), 0);
    lines_t l = read_log(f);
    l.n -= 2; /* drop 9 and 10: the rest is a perfectly valid chain */
    free(l.v[l.n]);
    free(l.v[l.n + 1]);
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_TRUNCATED, 9);
}

static void test_everything_truncated_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    lines_t l = {0};
    write_log(f, &l);
    expect_problem(f, CX_AUDIT_TRUNCATED, 1);
}

/* The attacker rewrites the log from record 3 on with an edit, recomputing every MAC and link
 * with a key of their own (under our key id, which they can read). */
static void recompute_without_the_key(fx_t *f, int with_checkpoint)
{
    assert_int_equal(append_n(f->a, "acme", 1, 6), 0);
    char dir2[512];
    snprintf(dir2, sizeof dir2, "%s/evil", f->dir);
    char env2[40];
    snprintf(env2, sizeof env2, "%s-evil", f->env);
    cx_audit_store_t *st2;
    cx_audit_t *evil;
    assert_int_equal(open_store(f, dir2, env2, &st2), 0);
    assert_int_equal(open_audit(st2, EVIL, "k1", &evil), 0);
    assert_int_equal(append_n(evil, "acme", 1, 2), 0);
    cx_audit_entry_t e = {.tenant_id = "acme",
                          .action = "email.send",
                          .target = "msg-3-EDITED",
                          .correlation_id = "corr-0",
                          .capability = 10,
                          .outcome = CX_AUDIT_SUCCEEDED};
    assert_int_equal(cx_audit_append(evil, &e, NULL, &f->err), 0);
    assert_int_equal(append_n(evil, "acme", 4, 3), 0);
    lines_t l = read_log_of(f, dir2, env2);
    assert_int_equal(l.n, 6);
    write_log(f, &l);
    lines_free(&l);
    if (with_checkpoint) {
        cx_audit_checkpoint_t cp;
        assert_int_equal(st2->ops->checkpoint_get(st2, "acme", CX_AUDIT_CP_HEAD, &cp, &f->err), 0);
        cp.seq = 6; /* same count, the attacker's head mac and signature */
        /* checkpoint_put keeps the later one; ours is at seq 6 too, so it is replaced. */
        assert_int_equal(f->st->ops->checkpoint_put(f->st, "acme", &cp, &f->err), 0);
    }
    cx_audit_free(evil);
    cx_audit_store_destroy(st2);
}

static void test_chain_recomputed_without_the_key_is_detected(void **state)
{
    fx_t *f = *state;
    recompute_without_the_key(f, 0);
    expect_problem(f, CX_AUDIT_MAC_MISMATCH, 1);
}

static void test_chain_and_checkpoint_recomputed_without_the_key_are_detected(void **state)
{
    fx_t *f = *state;
    recompute_without_the_key(f, 1);
    expect_problem(f, CX_AUDIT_CHECKPOINT_INVALID, 6);
}

static void test_forged_checkpoint_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 5), 0);
    cx_audit_checkpoint_t cp;
    assert_int_equal(cx_audit_checkpoint_get(f->a, "acme", CX_AUDIT_CP_HEAD, &cp, &f->err), 0);
    assert_int_equal(cp.seq, 5);
    /* Rolled back to claim 3 records (to hide a truncation): the signature no longer matches. */
    cp.seq = 3;
    cx_audit_checkpoint_t old;
    assert_int_equal(f->st->ops->checkpoint_get(f->st, "acme", CX_AUDIT_CP_HEAD, &old, &f->err), 0);
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        freeReplyObject(redisCommand(c, "HSET cx:%s:audit:{acme}:head seq 3", f->env));
        redisFree(c);
    } else
#endif
    {
        char path[512], buf[1024];
        snprintf(path, sizeof path, "%s/checkpoints/acme.head.json", f->dir);
        FILE *fp = fopen(path, "r");
        assert_non_null(fp);
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        char *s = replace(buf, "\"seq\":5", "\"seq\":3");
        fp = fopen(path, "w");
        fputs(s, fp);
        fclose(fp);
        free(s);
    }
    cx_error_clear(&f->err);
    assert_int_equal(cx_audit_checkpoint_get(f->a, "acme", CX_AUDIT_CP_HEAD, &cp, &f->err),
                     CX_EAUDIT_TAMPERED);
    expect_problem(f, CX_AUDIT_CHECKPOINT_INVALID, 3);
}

static void test_record_moved_from_another_tenant_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    lines_t l = read_log(f);
    set_line(&l, 2, replace(l.v[2], "\"tenantId\":\"acme\"", "\"tenantId\":\"other\""));
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_WRONG_TENANT, 3);
}

static void test_garbage_line_is_malformed(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    lines_t l = read_log(f);
    set_line(&l, 1, strdup("{\"seq\":\"2\",\"surprise\":true}"));
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MALFORMED, 2);
}

static void test_anchor_catches_a_rollback_of_log_and_checkpoint(void **state)
{
    /* Both the log and the head checkpoint rolled back to an older consistent state: only a
     * checkpoint kept elsewhere (an anchor) can tell. */
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    cx_audit_checkpoint_t at3;
    assert_int_equal(cx_audit_checkpoint_get(f->a, "acme", CX_AUDIT_CP_HEAD, &at3, &f->err), 0);
    lines_t old = read_log(f);
    assert_int_equal(append_n(f->a, "acme", 4, 3), 0);
    cx_audit_checkpoint_t anchor;
    assert_int_equal(cx_audit_checkpoint_get(f->a, "acme", CX_AUDIT_CP_HEAD, &anchor, &f->err), 0);
    assert_int_equal(anchor.seq, 6);
    write_log(f, &old);
    lines_free(&old);
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        freeReplyObject(redisCommand(c, "DEL cx:%s:audit:{acme}:head", f->env));
        redisFree(c);
    } else
#endif
    {
        char path[600];
        snprintf(path, sizeof path, "%s/checkpoints/acme.head.json", f->dir);
        unlink(path);
    }
    assert_int_equal(f->st->ops->checkpoint_put(f->st, "acme", &at3, &f->err), 0);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0); /* consistent on its own */
    cx_audit_verify_options_t o = {.anchor = &anchor};
    assert_int_equal(cx_audit_verify(f->a, "acme", &o, &rep, &f->err), CX_EAUDIT_TAMPERED);
    assert_int_equal(rep.problem, CX_AUDIT_TRUNCATED);
}

static void test_missing_checkpoint_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
#ifdef CX_WITH_REDIS
    if (f->redis) {
        redisContext *c = redisConnect("127.0.0.1", g_redis.port);
        freeReplyObject(redisCommand(c, "DEL cx:%s:audit:{acme}:head", f->env));
        redisFree(c);
    } else
#endif
    {
        char path[600];
        snprintf(path, sizeof path, "%s/checkpoints/acme.head.json", f->dir);
        assert_int_equal(unlink(path), 0);
    }
    expect_problem(f, CX_AUDIT_CHECKPOINT_MISSING, 1);
}

/* ---- Checkpoints, keys, show ----------------------------------------------------------------- */

static void test_checkpoint_every_n_leaves_unanchored_records(void **state)
{
    fx_t *f = *state;
    cx_audit_key_t k = {"k1", KEY, 32};
    cx_audit_config_t cfg = {.store = f->st, .keys = &k, .n_keys = 1, .checkpoint_every = 4};
    cx_audit_t *a;
    assert_int_equal(cx_audit_new(&cfg, &a, &f->err), 0);
    assert_int_equal(append_n(a, "acme", 1, 6), 0);
    cx_audit_report_t rep;
    assert_int_equal(cx_audit_verify(a, "acme", NULL, &rep, &f->err), 0);
    assert_int_equal(rep.checkpoint_seq, 4);
    assert_int_equal(rep.unanchored, 2);
    assert_int_equal(cx_audit_checkpoint(a, "acme", &f->err), 0);
    assert_int_equal(cx_audit_verify(a, "acme", NULL, &rep, &f->err), 0);
    assert_int_equal(rep.checkpoint_seq, 6);
    assert_int_equal(rep.unanchored, 0);
    cx_audit_free(a);
}

static void test_key_rotation_old_records_verify_with_the_previous_key(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    static const unsigned char NEW[32] = "new-key-new-key-new-key-new-key!";
    cx_audit_key_t ks[2] = {{"k2", NEW, 32}, {"k1", KEY, 32}};
    cx_audit_config_t cfg = {.store = f->st, .keys = ks, .n_keys = 2};
    cx_audit_t *a2;
    assert_int_equal(cx_audit_new(&cfg, &a2, &f->err), 0);
    assert_int_equal(
        cx_audit_secret_rotated(a2, "acme", "ops-jane", "runtime", "audit_key", NULL, &f->err), 0);
    assert_int_equal(append_n(a2, "acme", 4, 2), 0);
    cx_audit_report_t rep;
    assert_int_equal(cx_audit_verify(a2, "acme", NULL, &rep, &f->err), 0);
    assert_int_equal(rep.records, 6);
    /* Without the previous key the old records name an unknown key; the head checkpoint was
     * signed with the new key, so the old verifier refuses it first. */
    cx_audit_t *only_new;
    cfg.n_keys = 1;
    assert_int_equal(cx_audit_new(&cfg, &only_new, &f->err), 0);
    assert_int_equal(cx_audit_verify(only_new, "acme", NULL, &rep, &f->err), CX_EAUDIT_TAMPERED);
    assert_int_equal(rep.problem, CX_AUDIT_UNKNOWN_KEY);
    assert_int_equal(rep.bad_seq, 1);
    assert_int_equal(cx_audit_verify(f->a, "acme", NULL, &rep, &f->err), CX_EAUDIT_TAMPERED);
    assert_int_equal(rep.problem, CX_AUDIT_CHECKPOINT_INVALID);
    cx_audit_free(only_new);
    cx_audit_free(a2);
}

static void test_secret_rotation_and_integration_changes_are_audited(void **state)
{
    fx_t *f = *state;
    assert_int_equal(cx_audit_secret_rotated(f->a, "acme", "ops-jane", "whatsapp", "app_secret",
                                             "corr-r", &f->err),
                     0);
    assert_int_equal(cx_audit_integration_changed(f->a, "acme", NULL, "google:cal-1", "unhealthy",
                                                  CX_AUDIT_FAILED, "invalid_grant", NULL, &f->err),
                     0);
    assert_int_equal(cx_audit_integration_changed(f->a, "acme", "ops-jane", "google:cal-1",
                                                  "authorized", CX_AUDIT_SUCCEEDED, NULL, NULL,
                                                  &f->err),
                     0);
    lines_t l = read_log(f);
    assert_int_equal(l.n, 3);
    assert_non_null(strstr(l.v[0], "\"action\":\"secret.rotated\""));
    assert_non_null(strstr(l.v[0], "\"target\":\"whatsapp/app_secret\""));
    assert_non_null(strstr(l.v[0], "\"id\":\"ops-jane\""));
    assert_non_null(strstr(l.v[1], "\"action\":\"integration.unhealthy\""));
    assert_non_null(strstr(l.v[1], "\"errorCode\":\"invalid_grant\""));
    assert_non_null(strstr(l.v[1], "\"target\":\"google:cal-1\""));
    assert_non_null(strstr(l.v[2], "\"action\":\"integration.authorized\""));
    lines_free(&l);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
}

typedef struct shown_s {
    int n;
    int bad;
} shown_t;

static void on_shown(void *ud, const char *json, size_t len)
{
    shown_t *s = ud;
    s->n++;
    if (len == 0 || strstr(json, "\"correlationId\":\"corr-1\"") == NULL)
        s->bad++;
}

static void test_show_filters_by_correlation_id(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 9), 0); /* corr-1: records 1, 4, 7 */
    shown_t s = {0, 0};
    cx_audit_verify_options_t o = {.correlation_id = "corr-1", .on_record = on_shown, .ud = &s};
    cx_audit_report_t rep;
    assert_int_equal(cx_audit_verify(f->a, "acme", &o, &rep, &f->err), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.bad, 0);
    assert_int_equal(rep.matched, 3);
}

/* ---- Retention --------------------------------------------------------------------------------
 */

static void append_aged(cx_audit_t *a, int from, int n, int64_t at_ms)
{
    for (int i = from; i < from + n; i++) {
        char target[32];
        snprintf(target, sizeof target, "msg-%d", i);
        cx_audit_entry_t e = {.tenant_id = "acme",
                              .action = "email.send",
                              .target = target,
                              .outcome = CX_AUDIT_SUCCEEDED,
                              .recorded_at_ms = at_ms};
        cx_error_t err = {0};
        assert_int_equal(cx_audit_append(a, &e, NULL, &err), 0);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_retention_moves_the_genesis_and_the_chain_still_verifies(void **state)
{
    fx_t *f = *state;
    int64_t now = now_ms();
    append_aged(f->a, 1, 5, now - 10 * 86400000LL);
    append_aged(f->a, 6, 5, now);
    uint64_t dropped = 0;
    assert_int_equal(cx_audit_retain(f->a, "acme", 86400, &dropped, &f->err), 0);
    assert_int_equal(dropped, 5);
    cx_audit_checkpoint_t g;
    assert_int_equal(cx_audit_checkpoint_get(f->a, "acme", CX_AUDIT_CP_GENESIS, &g, &f->err), 0);
    assert_int_equal(g.seq, 5);
    lines_t l = read_log(f);
    assert_int_equal(l.n, 6); /* records 6..10 and the retention record */
    char seq[24], pm[80];
    json_str(l.v[0], "seq", seq, sizeof seq);
    assert_string_equal(seq, "6");
    json_str(l.v[0], "prevMac", pm, sizeof pm);
    assert_string_equal(pm, g.mac); /* the first kept record links to the genesis */
    assert_non_null(strstr(l.v[5], "\"action\":\"audit.retention\""));
    lines_free(&l);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.genesis_seq, 5);
    assert_int_equal(rep.records, 6);
    assert_int_equal(rep.first_seq, 6);
    assert_int_equal(append_n(f->a, "acme", 12, 2), 0);
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.last_seq, 13);
    /* A retention run with nothing old enough drops nothing and writes nothing. */
    assert_int_equal(cx_audit_retain(f->a, "acme", 86400, &dropped, &f->err), 0);
    assert_int_equal(dropped, 0);
    /* Removing the first kept record is still a removal, not a retention. */
    l = read_log(f);
    free(l.v[0]);
    memmove(&l.v[0], &l.v[1], (l.n - 1) * sizeof *l.v);
    l.n--;
    write_log(f, &l);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_REMOVED, 6);
}

static void test_retention_of_every_record_keeps_the_chain_going(void **state)
{
    fx_t *f = *state;
    append_aged(f->a, 1, 4, now_ms() - 40 * 86400000LL);
    uint64_t dropped = 0;
    assert_int_equal(cx_audit_retain(f->a, "acme", 30 * 86400, &dropped, &f->err), 0);
    assert_int_equal(dropped, 4);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.genesis_seq, 4);
    assert_int_equal(rep.records, 1); /* the retention record, seq 5 */
    assert_int_equal(rep.last_seq, 5);
}

static void test_retention_interrupted_before_the_removal_still_verifies(void **state)
{
    /* The genesis was written but the process died before removing the records: they are
     * covered, skipped, and must still end with the genesis record. */
    fx_t *f = *state;
    int64_t now = now_ms();
    append_aged(f->a, 1, 3, now - 10 * 86400000LL);
    append_aged(f->a, 4, 2, now);
    lines_t before = read_log(f);
    uint64_t dropped;
    assert_int_equal(cx_audit_retain(f->a, "acme", 86400, &dropped, &f->err), 0);
    lines_t after = read_log(f);
    /* Put the dropped prefix back in front. */
    lines_t both = {0};
    for (size_t i = 0; i < 3; i++)
        lines_push(&both, before.v[i], strlen(before.v[i]));
    for (size_t i = 0; i < after.n; i++)
        lines_push(&both, after.v[i], strlen(after.v[i]));
    write_log(f, &both);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.genesis_seq, 3);
    assert_int_equal(rep.first_seq, 4);
    /* ... but an edited covered record that claims to be the genesis one is caught. */
    set_line(&both, 2, replace(both.v[2], "\"target\":\"msg-3\"", "\"target\":\"msg-Z\""));
    char *m = strstr(both.v[2], "\"mac\":\"");
    memset(m + 7, 'b', 64);
    write_log(f, &both);
    expect_problem(f, CX_AUDIT_CHECKPOINT_MISMATCH, 3);
    lines_free(&before);
    lines_free(&after);
    lines_free(&both);
}

static void test_retention_refuses_to_prune_a_broken_chain(void **state)
{
    fx_t *f = *state;
    append_aged(f->a, 1, 4, now_ms() - 40 * 86400000LL);
    lines_t l = read_log(f);
    set_line(&l, 1, replace(l.v[1], "\"target\":\"msg-2\"", "\"target\":\"msg-Q\""));
    write_log(f, &l);
    lines_free(&l);
    uint64_t dropped = 99;
    assert_int_equal(cx_audit_retain(f->a, "acme", 86400, &dropped, &f->err), CX_EAUDIT_TAMPERED);
    assert_int_equal(dropped, 0);
    l = read_log(f);
    assert_int_equal(l.n, 4); /* the evidence stays */
    lines_free(&l);
}

/* ---- Concurrency ------------------------------------------------------------------------------
 */

typedef struct worker_s {
    cx_audit_t *a;
    const char *tenant;
    int n;
    int rc;
} worker_t;

static void *appender(void *ud)
{
    worker_t *w = ud;
    w->rc = append_n(w->a, w->tenant, 1, w->n);
    return NULL;
}

static void test_threads_and_two_writers_append_one_chain(void **state)
{
    fx_t *f = *state;
    cx_audit_t *b; /* a second writer on the same store: another process, as far as it knows */
    assert_int_equal(open_audit(f->st, KEY, "k1", &b), 0);
    enum { T = 8, N = 25 };
    pthread_t th[T];
    worker_t w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker_t){i % 2 ? b : f->a, i % 3 == 2 ? "beta" : "acme", N, -1};
        assert_int_equal(pthread_create(&th[i], NULL, appender, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].rc, 0);
    }
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.records, 6 * N); /* threads 0,1,3,4,6,7 */
    assert_int_equal(cx_audit_verify(b, "beta", NULL, &rep, &f->err), 0);
    assert_int_equal(rep.records, 2 * N);
    cx_audit_free(b);
}

static void test_two_processes_append_one_chain(void **state)
{
    fx_t *f = *state;
    enum { P = 2, N = 60 };
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            /* A process of its own: its own store and pool. */
            cx_audit_store_t *st;
            cx_audit_t *a;
            int rc = open_store(f, f->dir, f->env, &st) || open_audit(st, KEY, "k1", &a) ||
                     append_n(a, "acme", 1, N);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    for (int p = 0; p < P; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.records, P * N);
    assert_int_equal(rep.checkpoint_seq, P * N);
}

/* ---- cx audit
 * ------------------------------------------------------------------------------------ */

typedef struct cli_out_s {
    int rc;
    char out[8192];
    char errs[2048];
} cli_out_t;

static void read_all(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, cap - 1, fp) : 0;
    buf[n] = '\0';
    if (fp)
        fclose(fp);
}

static void run_cli(fx_t *f, cli_out_t *o, int argc, char **argv)
{
    char po[512], pe[512];
    snprintf(po, sizeof po, "%s/cli.out", f->dir);
    snprintf(pe, sizeof pe, "%s/cli.err", f->dir);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    o->rc = cx_audit_cli(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    read_all(po, o->out, sizeof o->out);
    read_all(pe, o->errs, sizeof o->errs);
}

static void write_key(const char *secrets)
{
    char path[600];
    snprintf(path, sizeof path, "%s/runtime", secrets);
    mkdir(secrets, 0700);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/runtime/audit_key", secrets);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fwrite(KEY, 1, sizeof KEY, fp);
    fputc('\n', fp);
    fclose(fp);
}

static void test_cli_verify_show_and_exit_codes(void **state)
{
    fx_t *f = *state;
    char secrets[512], logs[512];
    snprintf(secrets, sizeof secrets, "%s/secrets", f->dir);
    snprintf(logs, sizeof logs, "%s/logs", f->dir);
    write_key(secrets);
    /* Records written with the key loaded the way the CLI loads it. */
    unsigned char kb[2048];
    cx_audit_key_t keys[2];
    size_t nk = 0;
    assert_int_equal(cx_audit_keys_load(secrets, keys, kb, &nk, &f->err), 0);
    assert_int_equal(nk, 1);
    cx_audit_store_t *st;
    cx_audit_t *a;
    cx_audit_config_t cfg = {.keys = keys, .n_keys = nk};
    assert_int_equal(open_store(f, logs, f->env, &st), 0);
    cfg.store = st;
    assert_int_equal(cx_audit_new(&cfg, &a, &f->err), 0);
    assert_int_equal(append_n(a, "acme", 1, 6), 0);
    assert_int_equal(append_n(a, "beta", 1, 2), 0);

    char port[16];
    snprintf(port, sizeof port, "127.0.0.1:%d", g_redis.port);
    char *store_flag = f->redis ? "--redis" : "--dir";
    char *store_val = f->redis ? port : logs;
    cli_out_t o;
    char *v1[] = {"audit", "verify", store_flag, store_val, "--env", f->env, "--secrets", secrets};
    run_cli(f, &o, 8, v1);
    assert_int_equal(o.rc, 0);
    assert_non_null(strstr(o.out, "acme: ok, 6 records"));
    assert_non_null(strstr(o.out, "beta: ok, 2 records"));

    char *v2[] = {"audit",    "show", "--correlation-id", "corr-2",
                  "--tenant", "acme", store_flag,         store_val,
                  "--env",    f->env, "--secrets",        secrets};
    run_cli(f, &o, 12, v2);
    assert_int_equal(o.rc, 0);
    int lines = 0;
    for (char *p = o.out; (p = strstr(p, "\"correlationId\":\"corr-2\"")) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2); /* records 2 and 5 */

    /* Tamper: verify says where and exits 1. */
    cx_audit_free(a);
    cx_audit_store_destroy(st);
    fx_t g = *f;
    assert_true(strlen(logs) < sizeof g.dir);
    memcpy(g.dir, logs, strlen(logs) + 1);
    lines_t l = read_log_of(&g, logs, f->env);
    set_line(&l, 2, replace(l.v[2], "\"target\":\"msg-3\"", "\"target\":\"msg-9\""));
    write_log(&g, &l);
    lines_free(&l);
    run_cli(f, &o, 8, v1);
    assert_int_equal(o.rc, 1);
    assert_non_null(strstr(o.out, "acme: BROKEN: record edited or forged (MAC mismatch) at seq 3"));
    assert_non_null(strstr(o.out, "beta: ok"));
    run_cli(f, &o, 12, v2);
    assert_int_equal(o.rc, 1);
    assert_non_null(strstr(o.out, "\"target\":\"msg-2\"")); /* before the break */
    assert_null(strstr(o.out, "\"target\":\"msg-5\""));     /* after it: not shown */
    assert_non_null(strstr(o.errs, "chain broken"));

    /* Usage and configuration errors. */
    char *v3[] = {"audit", "verify", "--bogus"};
    run_cli(f, &o, 3, v3);
    assert_int_equal(o.rc, 2);
    char *v4[] = {"audit", "show", store_flag, store_val, "--secrets", secrets};
    run_cli(f, &o, 6, v4);
    assert_int_equal(o.rc, 2);
    char nokey[512];
    snprintf(nokey, sizeof nokey, "%s/nothing", f->dir);
    char *v5[] = {"audit", "verify", store_flag, store_val, "--secrets", nokey};
    run_cli(f, &o, 6, v5);
    assert_int_equal(o.rc, 78);
    char keytext[sizeof KEY + 1];
    memcpy(keytext, KEY, sizeof KEY);
    keytext[sizeof KEY] = '\0';
    assert_null(strstr(o.errs, keytext));
    char *v6[] = {"audit", "frobnicate"};
    run_cli(f, &o, 2, v6);
    assert_int_equal(o.rc, 2);
    char *v7[] = {"audit", "--help"};
    run_cli(f, &o, 2, v7);
    assert_int_equal(o.rc, 0);
    assert_non_null(strstr(o.out, "cx audit verify"));
}

static void test_cli_retain(void **state)
{
    fx_t *f = *state;
    char secrets[512];
    snprintf(secrets, sizeof secrets, "%s/secrets", f->dir);
    write_key(secrets);
    unsigned char kb[2048];
    cx_audit_key_t keys[2];
    size_t nk = 0;
    assert_int_equal(cx_audit_keys_load(secrets, keys, kb, &nk, &f->err), 0);
    cx_audit_config_t cfg = {.store = f->st, .keys = keys, .n_keys = nk};
    cx_audit_t *a;
    assert_int_equal(cx_audit_new(&cfg, &a, &f->err), 0);
    append_aged(a, 1, 3, now_ms() - 100 * 86400000LL);
    append_aged(a, 4, 1, now_ms());
    cx_audit_free(a);
    char port[16];
    snprintf(port, sizeof port, "127.0.0.1:%d", g_redis.port);
    char *v[] = {"audit",
                 "retain",
                 "--max-age",
                 "30",
                 f->redis ? "--redis" : "--dir",
                 f->redis ? port : f->dir,
                 "--env",
                 f->env,
                 "--secrets",
                 secrets};
    cli_out_t o;
    run_cli(f, &o, 10, v);
    assert_int_equal(o.rc, 0);
    assert_non_null(strstr(o.out, "acme: dropped 3 records"));
    char *vv[] = {"audit",
                  "verify",
                  f->redis ? "--redis" : "--dir",
                  f->redis ? port : f->dir,
                  "--env",
                  f->env,
                  "--secrets",
                  secrets};
    run_cli(f, &o, 8, vv);
    assert_int_equal(o.rc, 0);
    assert_non_null(strstr(o.out, "3 dropped by retention"));
}

#ifdef CX_WITH_REDIS
static void test_redis_records_carry_a_format_version_and_the_chain_fields(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 2), 0);
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    redisReply *r = redisCommand(c, "XRANGE cx:%s:audit:{acme}:log - +", f->env);
    assert_int_equal(r->elements, 2);
    redisReply *fl = r->element[1]->element[1];
    assert_string_equal(fl->element[0]->str, "v");
    assert_string_equal(fl->element[1]->str, "1");
    assert_string_equal(fl->element[2]->str, "seq");
    assert_string_equal(fl->element[3]->str, "2");
    assert_string_equal(fl->element[4]->str, "mac");
    assert_int_equal(fl->element[5]->len, 64);
    freeReplyObject(r);
    r = redisCommand(c, "HGET cx:%s:audit:{acme}:head seq", f->env);
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    r = redisCommand(c, "SISMEMBER cx:%s:audit:tenants acme", f->env);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
}

static void test_redis_stream_field_disagreeing_with_the_record_is_detected(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    lines_t l = read_log(f);
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    char key[128];
    snprintf(key, sizeof key, "cx:%s:audit:{acme}:log", f->env);
    freeReplyObject(redisCommand(c, "DEL %s", key));
    for (size_t i = 0; i < l.n; i++) {
        char mac[80];
        json_str(l.v[i], "mac", mac, sizeof mac);
        freeReplyObject(redisCommand(c, "XADD %s * v 1 seq %d mac %s rec %s", key,
                                     i == 1 ? 7 : (int)i + 1, mac, l.v[i]));
    }
    redisFree(c);
    lines_free(&l);
    expect_problem(f, CX_AUDIT_MALFORMED, 2);
}

static void test_redis_unavailable_is_reported(void **state)
{
    (void)state;
    cx_redis_options_t o = {
        .host = "127.0.0.1", .port = 1, .connect_timeout_ms = 200, .command_timeout_ms = 200};
    cx_audit_store_t *st;
    cx_error_t err = {0};
    assert_int_equal(cx_audit_store_redis("t", &o, &st, &err), 0);
    cx_audit_t *a;
    assert_int_equal(open_audit(st, KEY, NULL, &a), 0);
    cx_audit_entry_t e = {.tenant_id = "acme", .action = "x.y", .outcome = CX_AUDIT_SUCCEEDED};
    assert_int_equal(cx_audit_append(a, &e, NULL, &err), CX_EUNAVAILABLE);
    cx_audit_report_t rep;
    cx_error_clear(&err);
    assert_int_equal(cx_audit_verify(a, "acme", NULL, &rep, &err), CX_EUNAVAILABLE);
    cx_audit_free(a);
    cx_audit_store_destroy(st);
}
#endif

static void test_file_store_repairs_a_torn_last_line(void **state)
{
    fx_t *f = *state;
    assert_int_equal(append_n(f->a, "acme", 1, 3), 0);
    char path[600];
    log_path(f, NULL, path, sizeof path);
    FILE *fp = fopen(path, "a");
    fputs("{\"seq\":\"4\",\"actor\":{\"id\":\"sys", fp); /* died inside write() */
    fclose(fp);
    cx_audit_report_t rep;
    assert_int_equal(verify(f, &rep), 0); /* the torn line is ignored by readers */
    /* A new writer (another process, no cache) cuts it and continues the chain. */
    cx_audit_t *b;
    assert_int_equal(open_audit(f->st, KEY, "k1", &b), 0);
    assert_int_equal(append_n(b, "acme", 4, 1), 0);
    cx_audit_free(b);
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.records, 4);
    lines_t l = read_log(f);
    assert_int_equal(l.n, 4);
    lines_free(&l);
}

static void test_keys_load_reads_current_and_previous(void **state)
{
    fx_t *f = *state;
    char secrets[512], path[600];
    snprintf(secrets, sizeof secrets, "%s/s", f->dir);
    write_key(secrets);
    snprintf(path, sizeof path, "%s/runtime/audit_key.previous", secrets);
    FILE *fp = fopen(path, "w");
    fputs("previous-key-previous-key", fp);
    fclose(fp);
    unsigned char kb[2048];
    cx_audit_key_t keys[2];
    size_t n = 0;
    assert_int_equal(cx_audit_keys_load(secrets, keys, kb, &n, &f->err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(keys[0].key_len, 32);
    assert_memory_equal(keys[0].key, KEY, 32);
    assert_int_equal(keys[1].key_len, 25);
    fp = fopen(path, "w");
    fputs("short", fp);
    fclose(fp);
    cx_error_clear(&f->err);
    assert_int_equal(cx_audit_keys_load(secrets, keys, kb, &n, &f->err), CX_ECONFIG);
    assert_null(strstr(f->err.message, "short"));
}

#define TAMPER_TESTS(setup)                                                                        \
    cmocka_unit_test_setup_teardown(test_appended_records_verify_and_chain, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_batch_append_is_one_call_with_consecutive_seqs,       \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_invalid_entries_are_refused_with_the_field, setup,    \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_edited_record_is_detected, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_edited_outcome_is_detected, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_deleted_record_is_detected, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_deleted_first_record_is_detected, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_reordered_records_are_detected, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_reordered_and_renumbered_records_are_detected, setup, \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_appended_forged_record_is_detected, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_appended_record_under_another_key_is_detected, setup, \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_truncated_tail_is_detected, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_everything_truncated_is_detected, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_chain_recomputed_without_the_key_is_detected, setup,  \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(                                                           \
            test_chain_and_checkpoint_recomputed_without_the_key_are_detected, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_forged_checkpoint_is_detected, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_record_moved_from_another_tenant_is_detected, setup,  \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_garbage_line_is_malformed, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_anchor_catches_a_rollback_of_log_and_checkpoint,      \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_missing_checkpoint_is_detected, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_checkpoint_every_n_leaves_unanchored_records, setup,  \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(                                                           \
            test_key_rotation_old_records_verify_with_the_previous_key, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_secret_rotation_and_integration_changes_are_audited,  \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_show_filters_by_correlation_id, setup, teardown),     \
        cmocka_unit_test_setup_teardown(                                                           \
            test_retention_moves_the_genesis_and_the_chain_still_verifies, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_retention_of_every_record_keeps_the_chain_going,      \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(                                                           \
            test_retention_interrupted_before_the_removal_still_verifies, setup, teardown),        \
        cmocka_unit_test_setup_teardown(test_retention_refuses_to_prune_a_broken_chain, setup,     \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_threads_and_two_writers_append_one_chain, setup,      \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_two_processes_append_one_chain, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_cli_verify_show_and_exit_codes, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_cli_retain, setup, teardown)

#ifdef CX_WITH_REDIS
static int group_setup_redis(void **state)
{
    (void)state;
    if (cx_test_redis_start(&g_redis, NULL) != 0)
        return -1;
    g_redis_up = 1;
    return 0;
}

static int group_teardown_redis(void **state)
{
    (void)state;
    cx_test_redis_destroy(&g_redis);
    return 0;
}
#endif

int main(void)
{
    const struct CMUnitTest file[] = {
        TAMPER_TESTS(setup_file),
        cmocka_unit_test_setup_teardown(test_file_store_repairs_a_torn_last_line, setup_file,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keys_load_reads_current_and_previous, setup_file,
                                        teardown),
    };
    int failed = cmocka_run_group_tests_name("audit_file", file, NULL, NULL);
#ifdef CX_WITH_REDIS
    const struct CMUnitTest redis[] = {
        TAMPER_TESTS(setup_redis),
        cmocka_unit_test_setup_teardown(
            test_redis_records_carry_a_format_version_and_the_chain_fields, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_stream_field_disagreeing_with_the_record_is_detected, setup_redis, teardown),
        cmocka_unit_test(test_redis_unavailable_is_reported),
    };
    failed +=
        cmocka_run_group_tests_name("audit_redis", redis, group_setup_redis, group_teardown_redis);
#endif
    (void)g_redis_up;
    return failed;
}
