/* `cx serve`: the webhook gateway process.
 *
 * Start-up: configuration (config.c) -> connectors (built-in + --connector-lib) -> stores
 * (Redis when configured: dedupe, dead letters, and in queued mode the work queue and the rate
 * limiter; else embedded) -> runtime, accounts, the default "*" handler -> cx_runtime_boot
 * (staging/production refuse to start without Redis and their secrets: exit 78, or 69 when
 * Redis does not answer) -> queue workers (queued mode) -> the gateway (gateway.c) -> the
 * signal loop.
 *
 * Handler mode (docs/durable-processing.md): `handler_mode` in the configuration, or
 * CX_HANDLER_MODE; by default queued in staging and production (acked once durable in the
 * Redis queue, run by this process's worker threads) and inline in development (where the
 * queue would be embedded, and an item acked from process memory would be lost by a restart).
 *
 * Signals go through a self-pipe: the handlers only write the signal number, the main thread
 * does the work. SIGHUP re-reads the secrets. SIGTERM/SIGINT stop accepting connections
 * (MHD_quiesce_daemon), wait until the requests in flight are answered (at most
 * drain_timeout_s; a second signal stops waiting), flush the logs and exit 0 — or 70 when
 * requests had to be abandoned (their claims expire and the provider redelivers them). In
 * queued mode the workers then stop too: running handlers finish (within the same deadline),
 * items held but not started go back to the queue for another process.
 *
 * The default handler only counts (serve_handled_total, and --count-file for tests): an
 * application registers its real handlers through the library API (cx_runtime_on) in its own
 * program; `cx serve` is the gateway for connectors and operations, not for business logic.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "connectors.h"
#include "cx/cx.h"
#include "serve.h"
#include "serve_outbound.h"

#define SUB "serve"

/* ---- The default handler ---------------------------------------------------------------- */

typedef struct {
    cx_counter_t *handled; /* serve_handled_total{connector,capability} */
    uint32_t delay_ms;     /* test-only: --test-handler-delay-ms */
    int count_fd;          /* test-only: --count-file, -1 when off */
} default_handler_t;

static int default_handler(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)err;
    default_handler_t *h = ud;
    if (h->delay_ms) {
        struct timespec ts = {h->delay_ms / 1000, (long)(h->delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    const char *cap = item->event->meta->capability ? item->event->meta->capability : "";
    cx_counter_inc(h->handled, (const char *[]){item->connector, cap}, 1);
    if (h->count_fd >= 0) {
        /* One write() per line with O_APPEND: lines from many threads and processes never
         * interleave. */
        char line[CX_DEDUPE_KEY_MAX + 2];
        size_t n = strlen(item->dedupe_key);
        if (n > CX_DEDUPE_KEY_MAX)
            n = CX_DEDUPE_KEY_MAX;
        memcpy(line, item->dedupe_key, n);
        line[n++] = '\n';
        ssize_t w;
        do {
            w = write(h->count_fd, line, n);
        } while (w < 0 && errno == EINTR);
    }
    return 0;
}

/* ---- Signals ------------------------------------------------------------------------------- */

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_pipe[1], &b, 1); /* async-signal-safe; a full pipe drops it */
    (void)w;
    errno = saved;
}

static int setup_signals(sigset_t *blocked)
{
    if (pipe(sig_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(sig_pipe[i], F_SETFL, fcntl(sig_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The gateway's threads inherit this mask, so only the main thread takes the signals. */
    sigemptyset(blocked);
    sigaddset(blocked, SIGTERM);
    sigaddset(blocked, SIGINT);
    sigaddset(blocked, SIGHUP);
    return pthread_sigmask(SIG_BLOCK, blocked, NULL) == 0 ? 0 : -1;
}

/* ---- Logging helpers ----------------------------------------------------------------------- */

static void log_line(cx_logger_t *lg, cx_log_level_t level, const char *connector,
                     const char *outcome, const char *msg)
{
    cx_log_record_t r;
    if (cx_log_begin(&r, lg, level)) {
        cx_log_set_connector(&r, connector);
        cx_log_set_outcome(&r, outcome);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

static int exit_code_for(int rc)
{
    switch (rc) {
    case CX_ECONFIG:
    case CX_EINVAL:
    case CX_EABI:
    case CX_ENOTFOUND:
        return CX_EXIT_CONFIG;
    case CX_EUNAVAILABLE:
    case CX_ETIMEOUT:
        return CX_EXIT_UNAVAILABLE;
    default:
        return CX_EXIT_INTERNAL;
    }
}

static char *read_password(const char *path, char *why, size_t cap)
{
    char *pw = NULL;
    size_t len = 0;
    if (cx_cli_read_file(path, 4096, &pw, &len) != 0) {
        snprintf(why, cap, "redis.password_file %s: %s", path,
                 errno ? strerror(errno) : "too large");
        return NULL;
    }
    while (len && (pw[len - 1] == '\n' || pw[len - 1] == '\r'))
        pw[--len] = '\0';
    return pw;
}

/* ---- The command --------------------------------------------------------------------------- */

int cx_cmd_serve(int argc, char **argv)
{
    cx_serve_config_t cfg;
    int rc = cx_serve_config_load(&cfg, argc, argv);
    if (rc != 0) {
        cx_serve_config_free(&cfg);
        return rc < 0 ? CX_EXIT_OK : rc;
    }
    int exit_code = CX_EXIT_INTERNAL;
    char why[1024];
    cx_logger_t *lg = NULL;
    cx_metrics_t *metrics = NULL;
    cx_dedupe_store_t *store = NULL;
    cx_queue_t *queue = NULL; /* queued mode (docs/durable-processing.md) */
    cx_dlq_t *dlq = NULL;
    cx_ratelimit_t *limiter = NULL;
    /* Resolved by the configuration: never AUTO here. */
    int queued = cfg.handler_mode == CX_HANDLER_MODE_QUEUED;
    cx_runtime_t *rt = NULL;
    cx_gw_t *gw = NULL;
    cx_serve_outbound_t *outbound = NULL; /* /commands, /oauth */
    cx_connector_set_t conns;
    memset(&conns, 0, sizeof conns);
    default_handler_t dh = {NULL, cfg.test_handler_delay_ms, -1};
    cx_error_t err;
    cx_error_clear(&err);

    cx_logger_config_t lc = {.service = "cx", .level = cfg.log_level};
    if (cx_logger_new(&lc, &lg) != 0 || cx_metrics_new(NULL, &metrics) != 0) {
        cx_cli_error(SUB, "out of memory");
        goto done;
    }

    cx_connectors_builtin(&conns);
    for (size_t i = 0; i < cfg.n_libs; i++)
        if (cx_connectors_load(&conns, cfg.libs[i], why, sizeof why) != 0) {
            cx_cli_error(SUB, "%s", why);
            exit_code = CX_EXIT_CONFIG;
            goto done;
        }
    if (cfg.connectors && cx_connectors_select(&conns, cfg.connectors, why, sizeof why) != 0) {
        cx_cli_error(SUB, "%s", why);
        exit_code = CX_EXIT_CONFIG;
        goto done;
    }

    /* Default pool threads: 8 per core. An inline handler, a Redis round trip or an outbound
     * call blocks its thread, so one thread per core would leave the cores idle while requests
     * wait in the queue (docs/benchmarks.md has the measurements). */
    if (cfg.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.threads = 8 * (n > 0 ? (unsigned)n : 1);
    }

    if (cfg.have_redis) {
        char *pw = NULL;
        if (cfg.redis_password_file &&
            (pw = read_password(cfg.redis_password_file, why, sizeof why)) == NULL) {
            cx_cli_error(SUB, "%s", why);
            exit_code = CX_EXIT_CONFIG;
            goto done;
        }
        cx_redis_options_t ro = {.host = cfg.redis_host,
                                 .port = cfg.redis_port,
                                 .password = pw,
                                 .pool_size = cfg.redis_pool_size   ? cfg.redis_pool_size
                                              : cfg.threads + 2 > 8 ? (int)cfg.threads + 2
                                                                    : 8};
        rc = cx_dedupe_store_redis(cx_environment_name(cfg.environment), &ro, &store, &err);
        if (rc == 0)
            rc = cx_dlq_redis(cx_environment_name(cfg.environment), NULL, &ro, &dlq, &err);
        if (rc == 0 && queued)
            rc = cx_queue_redis(cx_environment_name(cfg.environment), NULL, &ro, &queue, &err);
        if (rc == 0 && queued && cfg.n_rate_limits)
            rc = cx_ratelimit_redis(cx_environment_name(cfg.environment), &ro, &limiter, &err);
        if (pw) {
            memset(pw, 0, strlen(pw));
            free(pw);
        }
        if (rc != 0) {
            cx_cli_error(SUB, "redis %s:%d: %s", cfg.redis_host, cfg.redis_port,
                         err.message[0] ? err.message : cx_strerror(rc));
            exit_code = exit_code_for(rc);
            goto done;
        }
    }

    cx_runtime_config_t rc_cfg = {.environment = cfg.environment,
                                  .service = "cx",
                                  .secrets_dir = cfg.secrets_dir,
                                  .max_body_bytes = cfg.max_body_bytes,
                                  .processing_ttl_ms = cfg.processing_ttl_ms,
                                  .handler_deadline_ms = cfg.handler_deadline_ms,
                                  .dedupe = store,
                                  .logger = lg,
                                  .metrics = metrics,
                                  .handler_mode =
                                      queued ? CX_HANDLER_MODE_QUEUED : CX_HANDLER_MODE_INLINE,
                                  .queue = queue,
                                  .dlq = dlq,
                                  .ratelimit = limiter,
                                  .rate_limits = queued ? cfg.rate_limits : NULL,
                                  .n_rate_limits = queued ? cfg.n_rate_limits : 0,
                                  .retry = cfg.retry,
                                  .queued_claim_ttl_ms = cfg.queued_claim_ttl_ms,
                                  .worker_claim_ttl_ms = cfg.worker_claim_ttl_ms,
                                  .workers = cfg.workers,
                                  .tenant_concurrency = cfg.tenant_concurrency};
    if ((rc = cx_runtime_create(&rc_cfg, &rt, &err)) != 0) {
        cx_cli_error(SUB, "%s", err.message[0] ? err.message : cx_strerror(rc));
        exit_code = exit_code_for(rc);
        goto done;
    }
    if (!queued && cfg.n_rate_limits)
        log_line(lg, CX_LOG_WARN, NULL, "ignored",
                 "rate_limits apply in queued mode only: handler_mode is inline");
    for (size_t i = 0; i < conns.n; i++) {
        const cx_connector_t *c = conns.items[i];
        if (c->manifest->inbound_auth == CX_AUTH_NONE && cfg.environment == CX_ENV_PRODUCTION &&
            !cfg.expose_unauthenticated) {
            snprintf(why, sizeof why,
                     "connector not exposed: it authenticates nothing (inbound_auth none) and "
                     "this is production; set expose_unauthenticated_connectors to expose it");
            log_line(lg, CX_LOG_WARN, c->manifest->id, "hidden", why);
            continue;
        }
        if ((rc = cx_runtime_add_connector(rt, c, &err)) != 0) {
            cx_cli_error(SUB, "connector %s: %s", c->manifest->id,
                         err.message[0] ? err.message : cx_strerror(rc));
            exit_code = exit_code_for(rc);
            goto done;
        }
    }
    for (size_t i = 0; i < cfg.n_accounts; i++) {
        const cx_serve_account_t *a = &cfg.accounts[i];
        if ((rc = cx_runtime_add_account(rt, a->connector, a->account_id, a->tenant_id, &err))) {
            cx_cli_error(SUB, "account %s:%s: %s", a->connector, a->account_id,
                         err.message[0] ? err.message : cx_strerror(rc));
            exit_code = exit_code_for(rc);
            goto done;
        }
    }
    if (cfg.count_file &&
        (dh.count_fd = open(cfg.count_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        cx_cli_error(SUB, "--count-file %s: %s", cfg.count_file, strerror(errno));
        exit_code = CX_EXIT_CONFIG;
        goto done;
    }
    dh.handled = cx_metrics_counter(metrics, "serve_handled_total",
                                    "Items run by the default handler of cx serve.",
                                    (const char *[]){"connector", "capability", NULL});
    if ((rc = cx_runtime_on(rt, "*", default_handler, &dh, &err)) != 0) {
        cx_cli_error(SUB, "%s", err.message);
        goto done;
    }
    if ((rc = cx_runtime_boot(rt, &err)) != 0) {
        cx_cli_error(SUB, "%s", err.message[0] ? err.message : cx_strerror(rc));
        exit_code = exit_code_for(rc);
        goto done;
    }
    {
        int orc = cx_serve_outbound_start(&cfg, rt, lg, metrics, &outbound, why, sizeof why);
        if (orc != CX_EXIT_OK) {
            cx_cli_error(SUB, "%s", why);
            exit_code = orc;
            goto done;
        }
    }
    if (cx_runtime_queued(rt) && (rc = cx_runtime_start_workers(rt, &err)) != 0) {
        cx_cli_error(SUB, "%s", err.message[0] ? err.message : cx_strerror(rc));
        goto done;
    }

    sigset_t blocked;
    if (setup_signals(&blocked) != 0) {
        cx_cli_error(SUB, "cannot install signal handlers: %s", strerror(errno));
        goto done;
    }
    cx_serve_app_t app = {rt, metrics, NULL, outbound};
    cx_gw_config_t gc = {.host = cfg.listen_host,
                         .port = cfg.listen_port,
                         .threads = cfg.threads,
                         .pipeline_threads = cfg.pipeline_threads,
                         .max_connections = cfg.max_connections,
                         .max_connections_per_ip = cfg.max_connections_per_ip,
                         .connection_timeout_s = cfg.connection_timeout_s,
                         .max_header_bytes = cfg.max_header_bytes,
                         .max_body_bytes = cfg.max_body_bytes,
                         .routes = cx_serve_routes,
                         .n_routes = cx_serve_n_routes,
                         .app = &app,
                         .log = lg,
                         .metrics = metrics};
    if (cx_gw_start(&gc, &gw, why, sizeof why) != 0) {
        cx_cli_error(SUB, "%s", why);
        exit_code = CX_EXIT_UNAVAILABLE;
        goto done;
    }
    app.gw = gw;
    pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
    {
        cx_log_record_t r;
        if (cx_log_begin(&r, lg, CX_LOG_INFO)) {
            cx_log_set_outcome(&r, "listening");
            cx_log_set_pii(&r, "host", cfg.listen_host, CX_PII_NONE);
            cx_log_set_int(&r, "port", cx_gw_port(gw));
            cx_log_set_int(&r, "connectors", (int64_t)conns.n);
            cx_log_set_pii(&r, "handler_mode", queued ? "queued" : "inline", CX_PII_NONE);
            cx_log_set_msg(&r, "listening");
            cx_log_emit(&r);
        }
    }

    /* The signal loop. */
    int draining = 0, abandoned = 0;
    double deadline = 0;
    for (;;) {
        struct pollfd p = {sig_pipe[0], POLLIN, 0};
        int pr = poll(&p, 1, draining ? 20 : -1);
        if (pr < 0 && errno != EINTR)
            break;
        unsigned char sigs[64];
        ssize_t n = pr > 0 ? read(sig_pipe[0], sigs, sizeof sigs) : 0;
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGHUP) {
                cx_runtime_reload_secrets(rt, &err);
                cx_serve_outbound_reload(outbound);
            } else if (!draining) {
                draining = 1;
                deadline = cx_cli_now_ms() + cfg.drain_timeout_s * 1000.0;
                cx_gw_quiesce(gw);
                cx_log_record_t r;
                if (cx_log_begin(&r, lg, CX_LOG_INFO)) {
                    cx_log_set_outcome(&r, "draining");
                    cx_log_set_int(&r, "in_flight", (int64_t)cx_gw_in_flight(gw));
                    cx_log_set_msg(&r, "stopped accepting; draining in-flight requests");
                    cx_log_emit(&r);
                }
            } else {
                deadline = 0; /* a second SIGTERM/SIGINT: stop waiting */
            }
        }
        if (draining && cx_gw_in_flight(gw) == 0)
            break;
        if (draining && cx_cli_now_ms() >= deadline) {
            abandoned = 1;
            break;
        }
    }
    if (abandoned) {
        cx_log_record_t r;
        if (cx_log_begin(&r, lg, CX_LOG_ERROR)) {
            cx_log_set_outcome(&r, "abandoned");
            cx_log_set_int(&r, "in_flight", (int64_t)cx_gw_in_flight(gw));
            cx_log_set_msg(&r, "drain deadline passed; exiting with requests in flight (their "
                               "claims expire and providers redeliver them)");
            cx_log_emit(&r);
        }
        cx_logger_flush(lg);
        /* Pool threads are still inside handlers: joining them would wait past the bound. */
        _exit(CX_EXIT_INTERNAL);
    }
    /* Workers finish their running items; what they hold goes back to the queue. */
    if (cx_runtime_stop_workers(rt, cfg.drain_timeout_s * 1000u) != 0) {
        log_line(lg, CX_LOG_ERROR, NULL, "abandoned",
                 "drain deadline passed with handlers running (their items are reclaimed by "
                 "another worker)");
        cx_logger_flush(lg);
        _exit(CX_EXIT_INTERNAL);
    }
    log_line(lg, CX_LOG_INFO, NULL, "stopped", "drained; exiting");
    exit_code = CX_EXIT_OK;

done:
    cx_gw_stop(gw);
    cx_serve_outbound_free(outbound);
    cx_runtime_destroy(rt);
    cx_queue_destroy(queue);
    cx_ratelimit_destroy(limiter);
    cx_dlq_destroy(dlq);
    cx_dedupe_store_destroy(store);
    cx_connectors_free(&conns);
    if (dh.count_fd >= 0)
        close(dh.count_fd);
    if (lg)
        cx_logger_flush(lg);
    cx_logger_free(lg);
    cx_metrics_free(metrics);
    cx_serve_config_free(&cfg);
    for (int i = 0; i < 2; i++)
        if (sig_pipe[i] >= 0) {
            close(sig_pipe[i]);
            sig_pipe[i] = -1;
        }
    return exit_code;
}
