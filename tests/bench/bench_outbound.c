/* Outbound benchmark: prints figures, asserts nothing.
 *
 * Against the loopback mock provider (tests/harness/mock_provider.h, libmicrohttpd, recording
 * off), with connection reuse:
 *
 *   1. bare libcurl: one easy handle, POST with CURLOPT_POSTFIELDS, sequential requests;
 *   2. cx_http_send: the same requests through the client (handle pool, read callback,
 *      classification, metrics); the difference of the latency percentiles to (1) is the
 *      client's added latency;
 *   3. cx_outbound_send: whole commands (validate, intent key, claim, send, store the result)
 *      with the embedded intent store, from 1 and from T threads: sends/s;
 *   4. the same with the Redis intent store (a redis-server started on a free port), when
 *      one can be started.
 *
 * usage: bench_outbound [SECONDS per phase, default 3] [THREADS, default 4]
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cx/http.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/outbound.h"
#include "mock_provider.h"
#include "redis_server.h"

#define MAX_SAMPLES (1 << 21)
#define BODY                                                                                       \
    "{\"messaging_product\":\"whatsapp\",\"to\":\"15550001111\",\"type\":\"text\","                \
    "\"text\":{\"body\":\"benchmark\"}}"

static double seconds = 3;
static cx_mock_provider_t *mock;
static char url[128];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef struct stats_s {
    float *s;
    size_t n;
    double total_ms;
    long errors;
} stats_t;

static double pct(stats_t *st, double p)
{
    if (st->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(st->n - 1));
    return st->s[i];
}

static void finish(stats_t *st, const char *name)
{
    qsort(st->s, st->n, sizeof *st->s, cmp_f);
    printf("%-34s %9.0f req/s   p50 %7.1f us   p99 %7.1f us   errors %ld\n", name,
           (double)st->n / (st->total_ms / 1000.0), pct(st, 0.5) * 1000, pct(st, 0.99) * 1000,
           st->errors);
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static void bench_bare(stats_t *st, double ms)
{
    static CURL *h; /* one handle (and connection) for every slice */
    if (h == NULL)
        h = curl_easy_init();
    static struct curl_slist *hd;
    if (hd == NULL) {
        hd = curl_slist_append(NULL, "Content-Type: application/json");
        hd = curl_slist_append(hd, "Authorization: Bearer bench-token");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, BODY);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    double end = now_ms() + ms, t0 = now_ms();
    while (now_ms() < end && st->n < MAX_SAMPLES) {
        double a = now_ms();
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 200)
            st->errors++;
        st->s[st->n++] = (float)(now_ms() - a);
    }
    st->total_ms += now_ms() - t0;
}

static size_t bare_read(char *buf, size_t size, size_t n, void *ud)
{
    size_t *off = ud, left = strlen(BODY) - *off, want = size * n;
    size_t k = want < left ? want : left;
    memcpy(buf, BODY + *off, k);
    *off += k;
    return k;
}

/* Bare libcurl with the body from a read callback (how cx_http sends non-idempotent bodies),
 * to separate the cost of that mode from the client's own. */
static void bench_bare_read(stats_t *st, double ms)
{
    static CURL *h; /* one handle (and connection) for every slice */
    if (h == NULL)
        h = curl_easy_init();
    static struct curl_slist *hd;
    if (hd == NULL) {
        hd = curl_slist_append(NULL, "Content-Type: application/json");
        hd = curl_slist_append(hd, "Authorization: Bearer bench-token");
    }
    static size_t off;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(BODY));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, bare_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &off);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    double end = now_ms() + ms, t0 = now_ms();
    while (now_ms() < end && st->n < MAX_SAMPLES) {
        double a = now_ms();
        off = 0;
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 200)
            st->errors++;
        st->s[st->n++] = (float)(now_ms() - a);
    }
    st->total_ms += now_ms() - t0;
}

static void bench_client(stats_t *st, cx_http_client_t *c, double ms)
{
    cx_http_header_t hd[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = "POST",
                            .url = url,
                            .headers = hd,
                            .n_headers = 1,
                            .body = BODY,
                            .body_len = strlen(BODY),
                            .bearer_token = "bench-token",
                            .capability = "outbound_messages"};
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    cx_error_t err;
    double end = now_ms() + ms, t0 = now_ms();
    while (now_ms() < end && st->n < MAX_SAMPLES) {
        double a = now_ms();
        cx_error_clear(&err);
        if (cx_http_send(c, &rq, &rs, &err) != 0)
            st->errors++;
        st->s[st->n++] = (float)(now_ms() - a);
    }
    st->total_ms += now_ms() - t0;
    cx_http_response_free(&rs);
}

/* ---- Whole commands ------------------------------------------------------------------------ */

typedef struct run_s {
    cx_outbound_t *ob;
    cx_mock_sender_t *sender;
    double end;
    atomic_long *seq;
    atomic_long *errors;
    float *lat;
    atomic_long *nlat;
} run_t;

static void *cmd_worker(void *arg)
{
    run_t *r = arg;
    cx_common_channel_ref_t ch;
    cx_common_channel_ref_init(&ch);
    ch.channel = "whatsapp";
    ch.account_id = "1065";
    cx_messaging_text_content_t text;
    cx_messaging_text_content_init(&text);
    text.body = "benchmark";
    cx_messaging_send_message_command_t m;
    cx_messaging_send_message_command_init(&m);
    m.channel = &ch;
    m.tenant_id = "t1";
    m.to = "15550001111";
    m.content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT;
    m.text = &text;
    char cmid[32];
    m.client_message_id = cmid;
    cx_outbound_command_t cmd = {.meta = &cx_messaging_send_message_command_meta,
                                 .msg = &m.base,
                                 .connector = "whatsapp",
                                 .account_id = "1065",
                                 .tenant_id = "t1",
                                 .send = cx_mock_send,
                                 .send_ud = r->sender};
    cx_outbound_result_t *res = malloc(sizeof *res);
    cx_error_t err;
    while (now_ms() < r->end) {
        snprintf(cmid, sizeof cmid, "b-%ld", atomic_fetch_add(r->seq, 1));
        cx_error_clear(&err);
        double a = now_ms();
        if (cx_outbound_send(r->ob, &cmd, NULL, res, &err) != 0 || res->replayed)
            atomic_fetch_add(r->errors, 1);
        long i = atomic_fetch_add(r->nlat, 1);
        if (i < MAX_SAMPLES)
            r->lat[i] = (float)(now_ms() - a);
    }
    free(res);
    return NULL;
}

static void bench_commands(const char *name, cx_intent_store_t *is, cx_http_client_t *c,
                           int threads, float *lat)
{
    cx_outbound_t *ob;
    cx_error_t err;
    cx_error_clear(&err);
    cx_outbound_config_t oc = {.intents = is};
    if (cx_outbound_new(&oc, &ob, &err) != 0) {
        fprintf(stderr, "cx_outbound_new: %s\n", err.message);
        return;
    }
    cx_mock_sender_t sender = {
        .http = c, .base_url = cx_mock_provider_url(mock), .token = "bench-token"};
    static atomic_long seq;
    atomic_long errors = 0, nlat = 0;
    run_t r = {
        .ob = ob, .sender = &sender, .seq = &seq, .errors = &errors, .lat = lat, .nlat = &nlat};
    pthread_t th[64];
    double t0 = now_ms();
    r.end = t0 + seconds * 1000;
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, cmd_worker, &r);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    stats_t st = {.s = lat,
                  .n = (size_t)(nlat < MAX_SAMPLES ? nlat : MAX_SAMPLES),
                  .total_ms = now_ms() - t0,
                  .errors = errors};
    char label[96];
    snprintf(label, sizeof label, "%s, %d thread%s", name, threads, threads > 1 ? "s" : "");
    qsort(st.s, st.n, sizeof *st.s, cmp_f);
    printf("%-34s %9.0f sends/s p50 %7.1f us   p99 %7.1f us   errors %ld\n", label,
           (double)nlat / (st.total_ms / 1000.0), pct(&st, 0.5) * 1000, pct(&st, 0.99) * 1000,
           st.errors);
    cx_outbound_free(ob);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        seconds = atof(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (seconds <= 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: bench_outbound [SECONDS] [THREADS]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (cx_mock_provider_start(&mock) != 0)
        return 1;
    cx_mock_provider_set_recording(mock, 0);
    snprintf(url, sizeof url, "%s/v19.0/1065/messages", cx_mock_provider_url(mock));
    float *s1 = malloc(sizeof(float) * MAX_SAMPLES), *s2 = malloc(sizeof(float) * MAX_SAMPLES);
    if (!s1 || !s2)
        return 1;
    cx_http_client_t *c;
    cx_error_t err;
    cx_error_clear(&err);
    cx_http_config_t hc = {.connector = "whatsapp", .allow_loopback_http = 1, .max_handles = 64};
    if (cx_http_client_new(&hc, &c, &err) != 0)
        return 1;

    printf("bench_outbound: %.1f s per phase, loopback mock provider (libmicrohttpd), "
           "keep-alive\n",
           seconds);
    /* The three loops take turns in short slices, so background load on the machine falls
     * on all of them alike. */
    stats_t bare = {.s = s1}, client = {.s = s2};
    float *s3 = malloc(sizeof(float) * MAX_SAMPLES);
    stats_t bare_rd = {.s = s3};
    int slices = (int)(seconds / 0.25) + 1;
    for (int i = 0; i < slices; i++) {
        bench_bare(&bare, seconds * 1000 / slices);
        bench_client(&client, c, seconds * 1000 / slices);
        bench_bare_read(&bare_rd, seconds * 1000 / slices);
    }
    finish(&bare, "bare libcurl POST (POSTFIELDS)");
    finish(&bare_rd, "bare libcurl POST (read callback)");
    finish(&client, "cx_http_send POST");
    printf("%-34s p50 %+7.1f us   p99 %+7.1f us\n", "client added latency",
           (pct(&client, 0.5) - pct(&bare, 0.5)) * 1000,
           (pct(&client, 0.99) - pct(&bare, 0.99)) * 1000);
    free(s3);
    printf("mock connections accepted so far: %zu\n", cx_mock_provider_connections(mock));

    cx_intent_store_t *emb;
    if (cx_intent_store_embedded("bench", 0, &emb, &err) == 0) {
        bench_commands("cx_outbound_send, embedded", emb, c, 1, s1);
        bench_commands("cx_outbound_send, embedded", emb, c, threads, s1);
        cx_intent_store_destroy(emb);
    }
#ifdef CX_WITH_REDIS
    cx_test_redis_t redis;
    if (cx_test_redis_start(&redis, NULL) == 0) {
        cx_redis_options_t ro = {.host = "127.0.0.1", .port = redis.port, .pool_size = 64};
        cx_intent_store_t *rs;
        if (cx_intent_store_redis("bench", &ro, NULL, &rs, &err) == 0) {
            bench_commands("cx_outbound_send, redis", rs, c, 1, s1);
            bench_commands("cx_outbound_send, redis", rs, c, threads, s1);
            cx_intent_store_destroy(rs);
        }
        cx_test_redis_destroy(&redis);
    } else {
        printf("(no redis-server: Redis figures skipped)\n");
    }
#endif
    printf("mock requests received: %zu, connections: %zu\n", cx_mock_provider_count(mock),
           cx_mock_provider_connections(mock));
    cx_http_client_free(c);
    cx_mock_provider_stop(mock);
    free(s1);
    free(s2);
    curl_global_cleanup();
    return 0;
}
