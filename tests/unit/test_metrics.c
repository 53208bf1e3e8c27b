/* Prometheus metrics: exact exposition text, escaping, bounded cardinality, exact sums under
 * concurrency, allocation failures (cx/metrics.h). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cx/metrics.h"

#define DROPPED_HEAD                                                                               \
    "# HELP metrics_series_dropped_total Increments that went to a metric's _overflow series "     \
    "because it had reached its series limit.\n"                                                   \
    "# TYPE metrics_series_dropped_total counter\n"

#define V(...) ((const char *const[]){__VA_ARGS__})

static cx_metrics_t *reg_new(size_t max_series)
{
    cx_metrics_config_t cfg = {.max_series = max_series};
    cx_metrics_t *reg = NULL;
    assert_int_equal(cx_metrics_new(&cfg, &reg), 0);
    assert_non_null(reg);
    return reg;
}

/* Renders reg and compares with the expected text. */
static void assert_render(cx_metrics_t *reg, const char *expected)
{
    cx_buf_t b;
    cx_buf_init(&b, 1 << 24);
    assert_int_equal(cx_metrics_render(reg, &b), 0);
    assert_string_equal(b.data ? b.data : "", expected);
    cx_buf_free(&b);
}

static void test_metrics_counter_renders_exact_text(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "webhook_requests_total", "Inbound webhook requests.",
                                         V("connector", "status", NULL));
    assert_non_null(c);
    cx_counter_inc(c, V("whatsapp", "200"), 3);
    cx_counter_inc(c, V("messenger", "401"), 1);
    cx_counter_inc(c, V("whatsapp", "200"), 2);
    cx_counter_inc(c, V("whatsapp", "503"), 1);
    cx_counter_inc(c, V("whatsapp", "200"), 0);
    assert_render(reg,
                  DROPPED_HEAD "# HELP webhook_requests_total Inbound webhook requests.\n"
                               "# TYPE webhook_requests_total counter\n"
                               "webhook_requests_total{connector=\"messenger\",status=\"401\"} 1\n"
                               "webhook_requests_total{connector=\"whatsapp\",status=\"200\"} 5\n"
                               "webhook_requests_total{connector=\"whatsapp\",status=\"503\"} 1\n");
    assert_int_equal(cx_counter_value(c, V("whatsapp", "200")), 5);
    assert_int_equal(cx_counter_value(c, V("nobody", "200")), 0);
    cx_metrics_free(reg);
}

static void test_metrics_metrics_and_series_sorted_whatever_the_order(void **state)
{
    (void)state;
    static const char *const ORDER_A[] = {"b", "a", "c", "ab", "B", ""};
    static const char *const ORDER_B[] = {"", "B", "ab", "c", "a", "b"};
    const char *const *orders[] = {ORDER_A, ORDER_B};
    char *text[2];
    for (int o = 0; o < 2; o++) {
        cx_metrics_t *reg = reg_new(0);
        /* Registration order differs too. */
        const char *n1 = o ? "zz_total" : "aa_total", *n2 = o ? "aa_total" : "zz_total";
        cx_counter_t *c1 = cx_metrics_counter(reg, n1, "h", V("k", NULL));
        cx_counter_t *c2 = cx_metrics_counter(reg, n2, "h", V("k", NULL));
        for (int i = 0; i < 6; i++) {
            cx_counter_inc(c1, V(orders[o][i]), o ? 2 : 1); /* aa_total 1, zz_total 2 */
            cx_counter_inc(c2, V(orders[o][i]), o ? 1 : 2);
        }
        cx_buf_t b;
        cx_buf_init(&b, 1 << 20);
        assert_int_equal(cx_metrics_render(reg, &b), 0);
        text[o] = strdup(b.data);
        cx_buf_free(&b);
        cx_metrics_free(reg);
    }
    assert_string_equal(text[0], text[1]);
    assert_string_equal(text[0], "# HELP aa_total h\n"
                                 "# TYPE aa_total counter\n"
                                 "aa_total{k=\"\"} 1\n"
                                 "aa_total{k=\"B\"} 1\n"
                                 "aa_total{k=\"a\"} 1\n"
                                 "aa_total{k=\"ab\"} 1\n"
                                 "aa_total{k=\"b\"} 1\n"
                                 "aa_total{k=\"c\"} 1\n" DROPPED_HEAD "# HELP zz_total h\n"
                                 "# TYPE zz_total counter\n"
                                 "zz_total{k=\"\"} 2\n"
                                 "zz_total{k=\"B\"} 2\n"
                                 "zz_total{k=\"a\"} 2\n"
                                 "zz_total{k=\"ab\"} 2\n"
                                 "zz_total{k=\"b\"} 2\n"
                                 "zz_total{k=\"c\"} 2\n");
    free(text[0]);
    free(text[1]);
}

static void test_metrics_histogram_renders_cumulative_buckets(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    static const double B[] = {1, 2.5, 10};
    cx_histogram_t *h = cx_metrics_histogram(reg, "handler_latency_ms", "Handler latency.",
                                             V("connector", NULL), B, 3);
    assert_non_null(h);
    static const double OBS[] = {0.5, 1, 2, 7, 100};
    for (size_t i = 0; i < 5; i++)
        cx_histogram_observe(h, V("whatsapp"), OBS[i]);
    cx_histogram_observe(h, V("whatsapp"), NAN); /* ignored */
    cx_histogram_observe(h, V("email"), 0.25);
    assert_render(reg, "# HELP handler_latency_ms Handler latency.\n"
                       "# TYPE handler_latency_ms histogram\n"
                       "handler_latency_ms_bucket{connector=\"email\",le=\"1\"} 1\n"
                       "handler_latency_ms_bucket{connector=\"email\",le=\"2.5\"} 1\n"
                       "handler_latency_ms_bucket{connector=\"email\",le=\"10\"} 1\n"
                       "handler_latency_ms_bucket{connector=\"email\",le=\"+Inf\"} 1\n"
                       "handler_latency_ms_sum{connector=\"email\"} 0.25\n"
                       "handler_latency_ms_count{connector=\"email\"} 1\n"
                       "handler_latency_ms_bucket{connector=\"whatsapp\",le=\"1\"} 2\n"
                       "handler_latency_ms_bucket{connector=\"whatsapp\",le=\"2.5\"} 3\n"
                       "handler_latency_ms_bucket{connector=\"whatsapp\",le=\"10\"} 4\n"
                       "handler_latency_ms_bucket{connector=\"whatsapp\",le=\"+Inf\"} 5\n"
                       "handler_latency_ms_sum{connector=\"whatsapp\"} 110.5\n"
                       "handler_latency_ms_count{connector=\"whatsapp\"} 5\n" DROPPED_HEAD);
    double sum;
    assert_int_equal(cx_histogram_count(h, V("whatsapp"), &sum), 5);
    assert_true(sum == 110.5);
    assert_int_equal(cx_histogram_count(h, V("nobody"), &sum), 0);
    cx_metrics_free(reg);
}

/* Many observations at once count exactly as one at a time. */
static void test_metrics_histogram_observe_many_equals_one_at_a_time(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    static const double B[] = {1, 2.5, 10};
    cx_histogram_t *one = cx_metrics_histogram(reg, "one_ms", "One.", V("c", NULL), B, 3);
    cx_histogram_t *many = cx_metrics_histogram(reg, "many_ms", "Many.", V("c", NULL), B, 3);
    static const double OBS[] = {0.5, 1, 2, 7, 100, NAN, 2.5, 0};
    for (size_t i = 0; i < 8; i++)
        cx_histogram_observe(one, V("x"), OBS[i]);
    cx_histogram_observe_many(many, V("x"), OBS, 5);
    cx_histogram_observe_many(many, V("x"), OBS + 5, 3);
    cx_histogram_observe_many(many, V("x"), OBS, 0); /* nothing */
    double s1, s2;
    assert_int_equal(cx_histogram_count(one, V("x"), &s1), 7);
    assert_int_equal(cx_histogram_count(many, V("x"), &s2), 7);
    assert_true(s1 == s2);
    cx_buf_t buf;
    cx_buf_init(&buf, 1 << 24);
    assert_int_equal(cx_metrics_render(reg, &buf), 0);
    const char *text = buf.data;
    /* Same bucket lines under the two names. */
    const char *les[] = {"1", "2.5", "10", "+Inf"};
    for (size_t i = 0; i < 4; i++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "one_ms_bucket{c=\"x\",le=\"%s\"} ", les[i]);
        snprintf(b, sizeof b, "many_ms_bucket{c=\"x\",le=\"%s\"} ", les[i]);
        const char *pa = strstr(text, a), *pb = strstr(text, b);
        assert_non_null(pa);
        assert_non_null(pb);
        assert_int_equal(atoi(pa + strlen(a)), atoi(pb + strlen(b)));
    }
    cx_buf_free(&buf);
    cx_metrics_free(reg);
}

static void test_metrics_unlabelled_metrics_render_from_zero(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "jobs_total", "Jobs.", NULL);
    cx_histogram_t *h = cx_metrics_histogram(reg, "job_ms", "Job time.", V(NULL), NULL, 0);
    assert_non_null(c);
    assert_non_null(h);
    assert_render(reg, "# HELP job_ms Job time.\n"
                       "# TYPE job_ms histogram\n"
                       "job_ms_bucket{le=\"0.5\"} 0\n"
                       "job_ms_bucket{le=\"1\"} 0\n"
                       "job_ms_bucket{le=\"2.5\"} 0\n"
                       "job_ms_bucket{le=\"5\"} 0\n"
                       "job_ms_bucket{le=\"10\"} 0\n"
                       "job_ms_bucket{le=\"25\"} 0\n"
                       "job_ms_bucket{le=\"50\"} 0\n"
                       "job_ms_bucket{le=\"100\"} 0\n"
                       "job_ms_bucket{le=\"250\"} 0\n"
                       "job_ms_bucket{le=\"500\"} 0\n"
                       "job_ms_bucket{le=\"1000\"} 0\n"
                       "job_ms_bucket{le=\"2500\"} 0\n"
                       "job_ms_bucket{le=\"5000\"} 0\n"
                       "job_ms_bucket{le=\"10000\"} 0\n"
                       "job_ms_bucket{le=\"+Inf\"} 0\n"
                       "job_ms_sum 0\n"
                       "job_ms_count 0\n"
                       "# HELP jobs_total Jobs.\n"
                       "# TYPE jobs_total counter\n"
                       "jobs_total 0\n" DROPPED_HEAD);
    cx_counter_inc(c, NULL, 41);
    cx_counter_inc(c, NULL, 1);
    cx_histogram_observe(h, NULL, 10000);
    cx_histogram_observe(h, NULL, 10000.5);
    cx_histogram_observe(h, NULL, 0.125);
    assert_int_equal(cx_counter_value(c, NULL), 42);
    double sum;
    assert_int_equal(cx_histogram_count(h, NULL, &sum), 3);
    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_metrics_render(reg, &b), 0);
    assert_non_null(strstr(b.data, "\njobs_total 42\n"));
    assert_non_null(strstr(b.data, "\njob_ms_bucket{le=\"0.5\"} 1\n"));
    assert_non_null(strstr(b.data, "\njob_ms_bucket{le=\"10000\"} 2\n"));
    assert_non_null(strstr(b.data, "\njob_ms_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(b.data, "\njob_ms_sum 20000.625\n"));
    cx_buf_free(&b);
    cx_metrics_free(reg);
}

static void test_metrics_label_values_and_help_escaped(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "x_total", "help with \\ and\nnewline and \"quotes\"",
                                         V("k", NULL));
    cx_counter_inc(c, V("a\\b"), 1);
    cx_counter_inc(c, V("q\"x"), 1);
    cx_counter_inc(c, V("line\nbreak"), 1);
    cx_counter_inc(c, V("bad\xff utf8 é"), 1);
    cx_counter_inc(c, V(NULL), 1); /* NULL counts as "" */
    assert_render(reg, DROPPED_HEAD "# HELP x_total help with \\\\ and\\nnewline and \"quotes\"\n"
                                    "# TYPE x_total counter\n"
                                    "x_total{k=\"\"} 1\n"
                                    "x_total{k=\"a\\\\b\"} 1\n"
                                    "x_total{k=\"bad\xEF\xBF\xBD utf8 é\"} 1\n"
                                    "x_total{k=\"line\\nbreak\"} 1\n"
                                    "x_total{k=\"q\\\"x\"} 1\n");
    cx_metrics_free(reg);
}

static void test_metrics_overflow_series_past_the_limit(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(2);
    cx_counter_t *c = cx_metrics_counter(reg, "x_total", "X.", V("k", NULL));
    cx_histogram_t *h =
        cx_metrics_histogram(reg, "y_ms", "Y.", V("a", "b", NULL), (const double[]){1}, 1);
    cx_counter_inc(c, V("a"), 1);
    cx_counter_inc(c, V("b"), 1);
    cx_counter_inc(c, V("c"), 1); /* past the limit */
    cx_counter_inc(c, V("d"), 1);
    cx_counter_inc(c, V("a"), 1); /* existing series keep counting */
    cx_histogram_observe(h, V("1", "1"), 0.5);
    cx_histogram_observe(h, V("2", "2"), 0.5);
    cx_histogram_observe(h, V("3", "3"), 5);
    assert_render(reg, "# HELP metrics_series_dropped_total Increments that went to a metric's "
                       "_overflow series because it had reached its series limit.\n"
                       "# TYPE metrics_series_dropped_total counter\n"
                       "metrics_series_dropped_total{metric=\"x_total\"} 2\n"
                       "metrics_series_dropped_total{metric=\"y_ms\"} 1\n"
                       "# HELP x_total X.\n"
                       "# TYPE x_total counter\n"
                       "x_total{k=\"_overflow\"} 2\n"
                       "x_total{k=\"a\"} 2\n"
                       "x_total{k=\"b\"} 1\n"
                       "# HELP y_ms Y.\n"
                       "# TYPE y_ms histogram\n"
                       "y_ms_bucket{a=\"1\",b=\"1\",le=\"1\"} 1\n"
                       "y_ms_bucket{a=\"1\",b=\"1\",le=\"+Inf\"} 1\n"
                       "y_ms_sum{a=\"1\",b=\"1\"} 0.5\n"
                       "y_ms_count{a=\"1\",b=\"1\"} 1\n"
                       "y_ms_bucket{a=\"2\",b=\"2\",le=\"1\"} 1\n"
                       "y_ms_bucket{a=\"2\",b=\"2\",le=\"+Inf\"} 1\n"
                       "y_ms_sum{a=\"2\",b=\"2\"} 0.5\n"
                       "y_ms_count{a=\"2\",b=\"2\"} 1\n"
                       "y_ms_bucket{a=\"_overflow\",b=\"_overflow\",le=\"1\"} 0\n"
                       "y_ms_bucket{a=\"_overflow\",b=\"_overflow\",le=\"+Inf\"} 1\n"
                       "y_ms_sum{a=\"_overflow\",b=\"_overflow\"} 5\n"
                       "y_ms_count{a=\"_overflow\",b=\"_overflow\"} 1\n");
    assert_int_equal(cx_counter_value(c, V(CX_METRICS_OVERFLOW)), 2);
    assert_int_equal(cx_counter_value(c, V("c")), 0);
    cx_metrics_free(reg);
}

static void test_metrics_overflow_at_default_limit(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "x_total", "X.", V("k", NULL));
    char v[32];
    for (int i = 0; i < CX_METRICS_MAX_SERIES + 5; i++) {
        snprintf(v, sizeof v, "v%d", i);
        cx_counter_inc(c, V(v), 1);
    }
    for (int i = 0; i < CX_METRICS_MAX_SERIES; i += 997) {
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(cx_counter_value(c, V(v)), 1);
    }
    assert_int_equal(cx_counter_value(c, V(CX_METRICS_OVERFLOW)), 5);
    cx_buf_t b;
    cx_buf_init(&b, 1 << 24);
    assert_int_equal(cx_metrics_render(reg, &b), 0);
    assert_non_null(strstr(b.data, "metrics_series_dropped_total{metric=\"x_total\"} 5\n"));
    size_t lines = 0;
    for (const char *p = b.data; (p = strstr(p, "\nx_total{")) != NULL; p++)
        lines++;
    assert_int_equal(lines, CX_METRICS_MAX_SERIES + 1);
    cx_buf_free(&b);
    cx_metrics_free(reg);
}

static void test_metrics_registration_validates_and_is_idempotent(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "ok_total", "h", V("a", "b", NULL));
    assert_non_null(c);
    assert_ptr_equal(cx_metrics_counter(reg, "ok_total", "other help", V("a", "b", NULL)), c);
    assert_null(cx_metrics_counter(reg, "ok_total", "h", V("a", NULL)));
    assert_null(cx_metrics_counter(reg, "ok_total", "h", V("b", "a", NULL)));
    assert_null(cx_metrics_histogram(reg, "ok_total", "h", V("a", "b", NULL), NULL, 0));
    assert_non_null(cx_metrics_counter(reg, "ns:sub_total", "h", NULL));

    static const char *const BAD_NAMES[] = {"", "1x", "a-b", "a b", "é"};
    for (size_t i = 0; i < sizeof BAD_NAMES / sizeof BAD_NAMES[0]; i++)
        assert_null(cx_metrics_counter(reg, BAD_NAMES[i], "h", NULL));
    assert_null(cx_metrics_counter(reg, NULL, "h", NULL));
    assert_null(cx_metrics_counter(NULL, "x_total", "h", NULL));
    assert_null(cx_metrics_counter(reg, "l1_total", "h", V("__reserved", NULL)));
    assert_null(cx_metrics_counter(reg, "l2_total", "h", V("a:b", NULL)));
    assert_null(cx_metrics_counter(reg, "l3_total", "h", V("a", "a", NULL)));
    assert_null(cx_metrics_counter(reg, "l4_total", "h",
                                   V("a", "b", "c", "d", "e", "f", "g", "h", "i", NULL)));
    assert_non_null(
        cx_metrics_counter(reg, "l5_total", "h", V("a", "b", "c", "d", "e", "f", "g", "h", NULL)));
    assert_null(cx_metrics_histogram(reg, "h1_ms", "h", V("le", NULL), NULL, 0));
    assert_null(cx_metrics_histogram(reg, "h2_ms", "h", NULL, (const double[]){2, 1}, 2));
    assert_null(cx_metrics_histogram(reg, "h3_ms", "h", NULL, (const double[]){1, 1}, 2));
    assert_null(cx_metrics_histogram(reg, "h4_ms", "h", NULL, (const double[]){1, NAN}, 2));
    assert_null(cx_metrics_histogram(reg, "h5_ms", "h", NULL, (const double[]){INFINITY}, 1));
    double many[CX_METRICS_MAX_BUCKETS + 1];
    for (int i = 0; i <= CX_METRICS_MAX_BUCKETS; i++)
        many[i] = i;
    assert_null(cx_metrics_histogram(reg, "h6_ms", "h", NULL, many, CX_METRICS_MAX_BUCKETS + 1));
    cx_histogram_t *h = cx_metrics_histogram(reg, "h7_ms", "h", NULL, many, CX_METRICS_MAX_BUCKETS);
    assert_non_null(h);
    assert_ptr_equal(cx_metrics_histogram(reg, "h7_ms", "h", NULL, many, CX_METRICS_MAX_BUCKETS),
                     h);
    assert_null(cx_metrics_histogram(reg, "h7_ms", "h", NULL, many, 3));

    /* NULL handles and missing values are no-ops, not crashes. */
    cx_counter_inc(NULL, V("x"), 1);
    cx_counter_inc(c, NULL, 1);
    cx_histogram_observe(NULL, NULL, 1);
    assert_int_equal(cx_counter_value(NULL, NULL), 0);
    cx_metrics_free(reg);
    cx_metrics_free(NULL);
}

static void test_metrics_register_standard_names_and_labels(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_metrics_std_t std, again;
    assert_int_equal(cx_metrics_register_standard(reg, &std), 0);
    assert_int_equal(cx_metrics_register_standard(reg, &again), 0);
    assert_memory_equal(&std, &again, sizeof std);
    assert_int_equal(cx_metrics_register_standard(NULL, &std), CX_EINVAL);

    cx_counter_inc(std.webhook_requests_total, V("whatsapp", "200"), 1);
    cx_histogram_observe(std.webhook_latency_ms, V("whatsapp"), 3);
    cx_counter_inc(std.events_processed_total, V("whatsapp", "messaging"), 1);
    cx_counter_inc(std.events_deduped_total, V("whatsapp", "messaging"), 1);
    cx_counter_inc(std.events_failed_total, V("whatsapp", "messaging", "CX_EHANDLER"), 1);
    cx_histogram_observe(std.handler_latency_ms, V("whatsapp", "messaging"), 3);
    cx_counter_inc(std.outbound_requests_total, V("whatsapp", "messaging", "200"), 1);
    cx_counter_inc(std.outbound_failures_total, V("whatsapp", "messaging", "CX_ETIMEOUT"), 1);
    cx_histogram_observe(std.outbound_latency_ms, V("whatsapp", "messaging"), 3);

    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_metrics_render(reg, &b), 0);
    static const char *const WANT[] = {
        "# TYPE webhook_requests_total counter\n",
        "webhook_requests_total{connector=\"whatsapp\",status=\"200\"} 1\n",
        "# TYPE webhook_latency_ms histogram\n",
        "webhook_latency_ms_count{connector=\"whatsapp\"} 1\n",
        "events_processed_total{connector=\"whatsapp\",capability=\"messaging\"} 1\n",
        "events_deduped_total{connector=\"whatsapp\",capability=\"messaging\"} 1\n",
        "events_failed_total{connector=\"whatsapp\",capability=\"messaging\","
        "error_code=\"CX_EHANDLER\"} 1\n",
        "# TYPE handler_latency_ms histogram\n",
        "handler_latency_ms_bucket{connector=\"whatsapp\",capability=\"messaging\",le=\"5\"} 1\n",
        "outbound_requests_total{connector=\"whatsapp\",capability=\"messaging\",status=\"200\"} "
        "1\n",
        "outbound_failures_total{connector=\"whatsapp\",capability=\"messaging\","
        "error_code=\"CX_ETIMEOUT\"} 1\n",
        "outbound_latency_ms_sum{connector=\"whatsapp\",capability=\"messaging\"} 3\n",
    };
    for (size_t i = 0; i < sizeof WANT / sizeof WANT[0]; i++) {
        if (strstr(b.data, WANT[i]) == NULL)
            fail_msg("missing: %s", WANT[i]);
    }
    cx_buf_free(&b);
    cx_metrics_free(reg);
}

static void test_metrics_render_reports_full_buffer(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    char mem[64];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(cx_metrics_render(reg, &b), CX_ENOSPC);
    assert_int_equal(cx_metrics_render(NULL, &b), CX_EINVAL);
    assert_int_equal(cx_metrics_render(reg, NULL), CX_EINVAL);
    cx_metrics_free(reg);
}

/* ---- Concurrency -------------------------------------------------------------------------- */

#define THREADS 8
#define INCS_PER_THREAD 200000
#define COMBOS 64

static const char *const CONNECTORS[8] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"};
static const char *const STATUSES[8] = {"200", "201", "400", "401", "404", "429", "500", "503"};

typedef struct {
    cx_counter_t *c;
    cx_histogram_t *h;
    int id;
    long n;
} inc_worker_t;

static void *inc_worker(void *arg)
{
    inc_worker_t *w = arg;
    for (long j = 0; j < w->n; j++) {
        int combo = (int)((j * 7 + w->id) % COMBOS);
        const char *v[2] = {CONNECTORS[combo / 8], STATUSES[combo % 8]};
        cx_counter_inc(w->c, v, (uint64_t)(combo + 1));
        if (w->h != NULL && j % 4 == 0)
            cx_histogram_observe(w->h, v, (double)(combo % 13));
    }
    return NULL;
}

typedef struct {
    cx_metrics_t *reg;
    atomic_int stop;
    int renders;
    int failures;
} render_worker_t;

static void *render_worker(void *arg)
{
    render_worker_t *r = arg;
    while (!atomic_load(&r->stop)) {
        cx_buf_t b;
        cx_buf_init(&b, 1 << 22);
        if (cx_metrics_render(r->reg, &b) != 0)
            r->failures++;
        r->renders++;
        cx_buf_free(&b);
    }
    return NULL;
}

static void test_metrics_concurrent_increments_sum_exactly(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "x_total", "X.", V("connector", "status", NULL));
    cx_histogram_t *h =
        cx_metrics_histogram(reg, "x_ms", "X.", V("connector", "status", NULL), NULL, 0);
    render_worker_t rw = {reg, 0, 0, 0};
    pthread_t rt;
    assert_int_equal(pthread_create(&rt, NULL, render_worker, &rw), 0);
    pthread_t th[THREADS];
    inc_worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (inc_worker_t){c, h, i, INCS_PER_THREAD};
        assert_int_equal(pthread_create(&th[i], NULL, inc_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&rw.stop, 1);
    pthread_join(rt, NULL);
    assert_int_equal(rw.failures, 0);

    /* The same arithmetic, single-threaded. */
    uint64_t want[COMBOS] = {0}, want_obs[COMBOS] = {0}, total = 0, got_total = 0;
    double want_sum[COMBOS] = {0};
    for (int i = 0; i < THREADS; i++) {
        for (long j = 0; j < INCS_PER_THREAD; j++) {
            int combo = (int)((j * 7 + i) % COMBOS);
            want[combo] += (uint64_t)(combo + 1);
            if (j % 4 == 0) {
                want_obs[combo]++;
                want_sum[combo] += combo % 13;
            }
        }
    }
    for (int k = 0; k < COMBOS; k++) {
        const char *v[2] = {CONNECTORS[k / 8], STATUSES[k % 8]};
        assert_int_equal(cx_counter_value(c, v), want[k]);
        double sum;
        assert_int_equal(cx_histogram_count(h, v, &sum), want_obs[k]);
        assert_true(sum == want_sum[k]);
        total += want[k];
        got_total += cx_counter_value(c, v);
    }
    assert_int_equal(got_total, total);
    assert_int_equal(cx_counter_value(c, V(CX_METRICS_OVERFLOW, CX_METRICS_OVERFLOW)), 0);
    cx_metrics_free(reg);
}

/* Many threads creating distinct series at once: every series exists once, with its count. */
typedef struct {
    cx_counter_t *c;
    int id;
} create_worker_t;

static void *create_worker(void *arg)
{
    create_worker_t *w = arg;
    char v[16];
    for (int rep = 0; rep < 3; rep++) {
        for (int i = 0; i < 2000; i++) {
            /* Every thread touches every series, in a different order. */
            snprintf(v, sizeof v, "s%d", (i * 13 + w->id * 250) % 2000);
            cx_counter_inc(w->c, (const char *const[]){v}, 1);
        }
    }
    return NULL;
}

static void test_metrics_concurrent_series_creation_no_duplicates(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_counter_t *c = cx_metrics_counter(reg, "x_total", "X.", V("k", NULL));
    pthread_t th[THREADS];
    create_worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (create_worker_t){c, i};
        assert_int_equal(pthread_create(&th[i], NULL, create_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    char v[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(v, sizeof v, "s%d", i);
        assert_int_equal(cx_counter_value(c, V(v)), THREADS * 3);
    }
    cx_buf_t b;
    cx_buf_init(&b, 1 << 22);
    assert_int_equal(cx_metrics_render(reg, &b), 0);
    size_t lines = 0;
    for (const char *p = b.data; (p = strstr(p, "\nx_total{")) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2000);
    cx_buf_free(&b);
    cx_metrics_free(reg);
}

/* Not a pass/fail bound (machines differ): prints the hot-path rate for the record. */
static void test_metrics_hot_path_rate(void **state)
{
    (void)state;
    cx_metrics_t *reg = reg_new(0);
    cx_metrics_std_t std;
    assert_int_equal(cx_metrics_register_standard(reg, &std), 0);
    pthread_t th[THREADS];
    inc_worker_t w[THREADS];
    struct timespec t0, t1;
    timespec_get(&t0, TIME_UTC);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (inc_worker_t){std.webhook_requests_total, NULL, i, 1000000};
        assert_int_equal(pthread_create(&th[i], NULL, inc_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    timespec_get(&t1, TIME_UTC);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("cx_counter_inc: %d threads, %.1f M inc/s total\n", THREADS,
                  THREADS * 1000000 / secs / 1e6);
    cx_metrics_free(reg);
}

/* ---- Allocation failures ------------------------------------------------------------------ */

typedef struct {
    long budget; /* allocations left before failing; < 0: never fail */
    long live;
    long failed;
} alloc_state_t;

static void *counting_alloc(void *ud, size_t n)
{
    alloc_state_t *a = ud;
    if (a->budget == 0) {
        a->failed++;
        return NULL;
    }
    if (a->budget > 0)
        a->budget--;
    void *p = malloc(n);
    if (p != NULL)
        a->live++;
    return p;
}

static void counting_free(void *ud, void *p)
{
    alloc_state_t *a = ud;
    if (p != NULL)
        a->live--;
    free(p);
}

/* Fails the first, second, ... allocation in turn: every call reports CX_ENOMEM (or NULL, or
 * counts in the overflow series) and nothing leaks. */
static void test_metrics_failing_allocator_enomem_no_leak(void **state)
{
    (void)state;
    for (long budget = 0;; budget++) {
        alloc_state_t a = {budget, 0, 0};
        cx_allocator_t alloc = {counting_alloc, counting_free, &a};
        cx_metrics_config_t cfg = {.max_series = 0, .allocator = &alloc};
        cx_metrics_t *reg = NULL;
        int rc = cx_metrics_new(&cfg, &reg);
        if (rc != 0) {
            assert_int_equal(rc, CX_ENOMEM);
            assert_null(reg);
            assert_int_equal(a.live, 0);
            continue;
        }
        cx_counter_t *c = cx_metrics_counter(reg, "x_total", "X.", V("k", NULL));
        cx_histogram_t *h = cx_metrics_histogram(reg, "y_ms", "Y.", NULL, NULL, 0);
        cx_metrics_std_t std;
        int std_rc = cx_metrics_register_standard(reg, &std);
        assert_true(std_rc == 0 || std_rc == CX_ENOMEM);
        char v[16];
        for (int i = 0; i < 40; i++) {
            snprintf(v, sizeof v, "v%d", i);
            cx_counter_inc(c, V(v), 1);
        }
        cx_histogram_observe(h, NULL, 1);
        if (c != NULL) {
            /* Every increment landed in its series or in the overflow series. */
            uint64_t sum = cx_counter_value(c, V(CX_METRICS_OVERFLOW));
            for (int i = 0; i < 40; i++) {
                snprintf(v, sizeof v, "v%d", i);
                sum += cx_counter_value(c, V(v));
            }
            assert_int_equal(sum, 40);
        }
        cx_buf_t b;
        cx_buf_init(&b, 1 << 20);
        rc = cx_metrics_render(reg, &b);
        assert_true(rc == 0 || rc == CX_ENOMEM);
        cx_buf_free(&b);
        cx_metrics_free(reg);
        assert_int_equal(a.live, 0);
        if (a.failed == 0)
            break; /* the budget covered every allocation: all paths were failed once */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_counter_renders_exact_text),
        cmocka_unit_test(test_metrics_metrics_and_series_sorted_whatever_the_order),
        cmocka_unit_test(test_metrics_histogram_renders_cumulative_buckets),
        cmocka_unit_test(test_metrics_histogram_observe_many_equals_one_at_a_time),
        cmocka_unit_test(test_metrics_unlabelled_metrics_render_from_zero),
        cmocka_unit_test(test_metrics_label_values_and_help_escaped),
        cmocka_unit_test(test_metrics_overflow_series_past_the_limit),
        cmocka_unit_test(test_metrics_overflow_at_default_limit),
        cmocka_unit_test(test_metrics_registration_validates_and_is_idempotent),
        cmocka_unit_test(test_metrics_register_standard_names_and_labels),
        cmocka_unit_test(test_metrics_render_reports_full_buffer),
        cmocka_unit_test(test_metrics_concurrent_increments_sum_exactly),
        cmocka_unit_test(test_metrics_concurrent_series_creation_no_duplicates),
        cmocka_unit_test(test_metrics_hot_path_rate),
        cmocka_unit_test(test_metrics_failing_allocator_enomem_no_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
