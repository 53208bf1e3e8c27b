/* WhatsApp adapter benchmark: prints figures, asserts nothing (docs/benchmarks.md).
 *
 * Signed 10-item WhatsApp batches, shaped like the load generator's
 * (../shared/peers/loadgen/webhook.lua: text messages with unique ids, one contact), go
 * through, on one thread:
 *
 *   verify + parse + validate + dedupe key   the connector's part of the pipeline, per item
 *   verify only / parse only                  the same, split
 *   cx_runtime_handle                         the whole in-process pipeline: tenant, embedded
 *                                             dedupe store (claims, completions), a no-op
 *                                             handler, the JSON response
 *
 * Bodies are built and signed before the clock starts (a pool of distinct batches, reused
 * round-robin; no dedupe store is involved in the first three figures). Target for the first:
 * at least 200,000 items/s on one core.
 *
 * usage: bench_whatsapp [SECONDS_PER_FIGURE]
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cx/log.h"
#include "cx/runtime.h"
#include "cx/schema.h"
#include "cx/signature.h"
#include "whatsapp/whatsapp.h"

#define BATCH 10
#define POOL 4096
#define SECRET "bench-app-secret"
#define PHONE_ID "106540352242922"

static char *bodies[POOL];
static size_t lens[POOL];
static char sigs[POOL][80];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void build_pool(long run)
{
    for (int p = 0; p < POOL; p++) {
        char *b = malloc(4096);
        int o = snprintf(b, 4096,
                         "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":"
                         "\"102290129340398\",\"changes\":[{\"value\":{\"messaging_product\":"
                         "\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\","
                         "\"phone_number_id\":\"" PHONE_ID "\"},\"contacts\":[{\"profile\":"
                         "{\"name\":\"Load Generator\"},\"wa_id\":\"16505551234\"}],"
                         "\"messages\":[");
        for (int i = 0; i < BATCH; i++)
            o += snprintf(b + o, 4096 - (size_t)o,
                          "%s{\"from\":\"16505551234\",\"id\":\"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ"
                          "%08lx%06d%03d\",\"timestamp\":\"1700000000\",\"type\":\"text\","
                          "\"text\":{\"body\":\"load test message %d of the batch\"}}",
                          i ? "," : "", run, p, i, i + 1);
        o += snprintf(b + o, 4096 - (size_t)o, "]},\"field\":\"messages\"}]}]}");
        bodies[p] = b;
        lens[p] = (size_t)o;
        cx_signature_sign_hex((const unsigned char *)SECRET, strlen(SECRET), b, (size_t)o,
                              "sha256=", sigs[p], sizeof sigs[p]);
    }
}

enum { VERIFY = 1, PARSE = 2, CHECK = 4 };

/* Runs the connector steps in `what` for `seconds`; returns items/s. */
static double run_steps(cx_runtime_t *rt, const cx_connector_t *c, int what, double seconds,
                        long *bad)
{
    static const unsigned char key[] = "bench-pseudonym-key";
    cx_keyring_t keyring = {key, sizeof key - 1};
    long items = 0;
    double t0 = now(), end = t0 + seconds, t = t0;
    for (long n = 0; t < end; n++) {
        int p = (int)(n % POOL);
        cx_header_t h[2] = {{"Content-Type", "application/json"}, {"X-Hub-Signature-256", sigs[p]}};
        cx_request_t req = {"POST", "/webhook/whatsapp", "", h, 2, bodies[p], lens[p]};
        cx_arena_t arena;
        cx_arena_init(&arena, NULL, 1 << 20);
        cx_ctx_t ctx = {rt, "whatsapp", 1700000000, &arena};
        cx_error_t err;
        cx_error_clear(&err);
        if ((what & VERIFY) && c->verify(c, &ctx, &req, &err) != 0)
            (*bad)++;
        if (what & PARSE) {
            cx_parse_out_t out = {NULL, 0, 0, &arena};
            if (c->parse(c, &ctx, &req, &out, &err) != 0 || out.n != BATCH)
                (*bad)++;
            for (size_t i = 0; (what & CHECK) && i < out.n; i++) {
                cx_violation_t vb[4];
                cx_violations_t v = {vb, 4, 0};
                char kmem[512];
                cx_buf_t kb;
                cx_buf_init_fixed(&kb, kmem, sizeof kmem);
                if (cx_validate(out.events[i].meta, out.events[i].msg, &v) != 0 ||
                    cx_dedupe_key(out.events[i].meta, out.events[i].msg, &keyring, &kb, &err) != 0)
                    (*bad)++;
            }
        }
        cx_arena_release(&arena);
        items += BATCH;
        if ((n & 63) == 0)
            t = now();
    }
    return (double)items / (now() - t0);
}

/* Validate + dedupe key only: one parsed batch, its events checked over and over. */
static double run_check(cx_runtime_t *rt, const cx_connector_t *c, double seconds, long *bad)
{
    static const unsigned char key[] = "bench-pseudonym-key";
    cx_keyring_t keyring = {key, sizeof key - 1};
    cx_header_t h[1] = {{"X-Hub-Signature-256", sigs[0]}};
    cx_request_t req = {"POST", "/webhook/whatsapp", "", h, 1, bodies[0], lens[0]};
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_ctx_t ctx = {rt, "whatsapp", 1700000000, &arena};
    cx_parse_out_t out = {NULL, 0, 0, &arena};
    cx_error_t err;
    cx_error_clear(&err);
    if (c->parse(c, &ctx, &req, &out, &err) != 0 || out.n != BATCH) {
        (*bad)++;
        cx_arena_release(&arena);
        return 0;
    }
    long items = 0;
    double t0 = now(), end = t0 + seconds, t = t0;
    for (long n = 0; t < end; n++) {
        for (size_t i = 0; i < out.n; i++) {
            cx_violation_t vb[4];
            cx_violations_t v = {vb, 4, 0};
            char kmem[512];
            cx_buf_t kb;
            cx_buf_init_fixed(&kb, kmem, sizeof kmem);
            if (cx_validate(out.events[i].meta, out.events[i].msg, &v) != 0 ||
                cx_dedupe_key(out.events[i].meta, out.events[i].msg, &keyring, &kb, &err) != 0)
                (*bad)++;
        }
        items += BATCH;
        if ((n & 63) == 0)
            t = now();
    }
    cx_arena_release(&arena);
    return (double)items / (now() - t0);
}

static int noop(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)ud;
    (void)item;
    (void)err;
    return 0;
}

/* The whole pipeline with the embedded store; fresh ids so nothing is deduped. */
static double run_pipeline(cx_runtime_t *rt, double seconds, long *bad)
{
    long items = 0;
    char out[16384];
    double t0 = now(), end = t0 + seconds, t = t0;
    for (long n = 0; t < end; n++) {
        int p = (int)(n % POOL);
        if (p == 0 && n > 0) {
            /* New ids (the store would dedupe a replay); the rebuild is not measured. */
            double r0 = now();
            for (int k = 0; k < POOL; k++)
                free(bodies[k]);
            build_pool(n / POOL);
            double spent = now() - r0;
            t0 += spent;
            end += spent;
        }
        cx_header_t h[2] = {{"Content-Type", "application/json"}, {"X-Hub-Signature-256", sigs[p]}};
        cx_request_t req = {"POST", "/webhook/whatsapp", "", h, 2, bodies[p], lens[p]};
        cx_buf_t body;
        cx_buf_init_fixed(&body, out, sizeof out);
        cx_response_t resp = {0, NULL, &body};
        if (cx_runtime_handle(rt, "whatsapp", &req, &resp) != 0 || resp.status != 200)
            (*bad)++;
        items += BATCH;
        if ((n & 63) == 0)
            t = now();
    }
    return (double)items / (now() - t0);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    char dir[] = "/tmp/cx-bench-wa-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/whatsapp", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/whatsapp/app_secret", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 1;
    fputs(SECRET "\n", f);
    fclose(f);

    static const unsigned char key[] = "bench-pseudonym-key";
    int devnull = open("/dev/null", O_WRONLY);
    cx_logger_t *log;
    cx_logger_config_t lc = {
        .service = "bench", .level = CX_LOG_WARN, .sink = cx_log_fd_sink, .sink_ud = &devnull};
    if (cx_logger_new(&lc, &log) != 0)
        return 1;
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT,
                               .secrets_dir = dir,
                               .logger = log,
                               .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1};
    cx_runtime_t *rt;
    cx_error_t err;
    const cx_connector_t *c = cx_whatsapp_connector();
    if (cx_runtime_create(&cfg, &rt, &err) != 0 || cx_runtime_add_connector(rt, c, &err) != 0 ||
        cx_runtime_add_account(rt, "whatsapp", PHONE_ID, "acme", &err) != 0 ||
        cx_runtime_on(rt, "*", noop, NULL, &err) != 0) {
        fprintf(stderr, "bench_whatsapp: setup: %s\n", err.message);
        return 1;
    }
    build_pool(0);
    long bad = 0;
    (void)run_steps(rt, c, VERIFY | PARSE | CHECK, seconds / 3, &bad); /* warm-up */
    bad = 0;
    double full = run_steps(rt, c, VERIFY | PARSE | CHECK, seconds, &bad);
    double verify = run_steps(rt, c, VERIFY, seconds, &bad);
    double parse = run_steps(rt, c, PARSE, seconds, &bad);
    double check = run_check(rt, c, seconds, &bad);
    printf("whatsapp batch=%d body=%zu bytes, one thread:\n", BATCH, lens[0]);
    printf("  verify + parse + validate + dedupe key: %9.0f items/s (%.2f us per batch)\n", full,
           1e6 * BATCH / full);
    printf("  verify only:                            %9.0f items/s (%.2f us per batch)\n", verify,
           1e6 * BATCH / verify);
    printf("  parse only:                             %9.0f items/s (%.2f us per batch)\n", parse,
           1e6 * BATCH / parse);
    printf("  validate + dedupe key only:             %9.0f items/s (%.2f us per batch)\n", check,
           1e6 * BATCH / check);
    double pipe = run_pipeline(rt, seconds, &bad);
    printf("  cx_runtime_handle (embedded store):     %9.0f items/s (%.2f us per batch)\n", pipe,
           1e6 * BATCH / pipe);
    if (bad)
        printf("  %ld batches did not go through cleanly\n", bad);
    cx_runtime_destroy(rt);
    cx_logger_free(log);
    close(devnull);
    for (int k = 0; k < POOL; k++)
        free(bodies[k]);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    return system(path) == 0 ? 0 : 1;
}
