/* One worker process of the queued-mode crash tests (tests/unit/test_queued.c).
 *
 * It runs a runtime in queued mode on a real Redis (dedupe, queue, dead letters), registers a
 * handler, starts the workers, prints "ready" and runs until SIGTERM/SIGINT (then it stops the
 * workers, giving back what it holds) or until it is killed.
 *
 * The handler's side effect is idempotent by the item's dedupe key, the way a real handler's
 * must be (docs/durable-processing.md, "Exactly once under kill -9"): it creates the record
 * <effects dir>/<dedupe key> holding its pid, atomically (a fully written temporary file is
 * link()ed to the name, which fails with EEXIST when the record exists). A run that finds the
 * record leaves it alone and succeeds: the effect happened once, by whoever created it.
 *
 * Everything is also written to --count-file, one write() per line with O_APPEND (lines of many
 * processes never interleave; the file lives outside the processes and survives kill -9):
 *
 *   ran <key> <pid>              this run applied the effect (created the record)
 *   again <key> <pid> <applier>  this run found the effect applied by process <applier>
 *   done <key> <pid>             the runtime stored the item's completion (from its
 *                                "item handled" log line, emitted after the store took it)
 *
 *   --port N              Redis on 127.0.0.1:N (required)
 *   --count-file PATH     the lines above (required)
 *   --effects-dir DIR     where effect records are created (required)
 *   --threads N           worker threads (default 2)
 *   --prefetch N          items held beyond the running ones (default: threads)
 *   --claim-ttl-ms N      worker claim TTL (XAUTOCLAIM idle; default 1500)
 *   --work-us N           each handler sleeps a random 0..N microseconds first (default 0)
 *   --hang                every handler blocks forever before its effect (to hold items)
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cx/runtime.h"

static int count_fd = -1;
static const char *effects_dir;
static int hang;
static long work_us;
static atomic_ulong tmp_seq;

static void count_line(const char *line, size_t n)
{
    ssize_t w;
    do {
        w = write(count_fd, line, n);
    } while (w < 0 && errno == EINTR);
}

/* The effect record of a key: '/' (never in the tests' keys) would leave the directory. */
static void effect_path(const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/", effects_dir);
    for (const char *k = key; *k && (size_t)n + 1 < cap; k++)
        out[n++] = *k == '/' ? '_' : *k;
    out[n] = '\0';
}

static int handler(void *ud, const cx_item_t *item, cx_error_t *err)
{
    (void)ud;
    if (hang)
        for (;;)
            pause();
    if (work_us > 0) {
        long us = (long)((unsigned long)rand() % (unsigned long)work_us);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    long pid = (long)getpid();
    char path[1024], tmp[1024], line[1200];
    effect_path(item->dedupe_key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%ld-%lu", effects_dir, pid,
             (unsigned long)atomic_fetch_add(&tmp_seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return cx_error_set(err, CX_EHANDLER, NULL, "effect store: cannot write");
    int n = snprintf(line, sizeof line, "%ld\n", pid);
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    int rc = w == n ? link(tmp, path) : -1;
    int e = errno;
    unlink(tmp);
    if (rc == 0) {
        n = snprintf(line, sizeof line, "ran %s %ld\n", item->dedupe_key, pid);
        count_line(line, (size_t)n);
        return 0;
    }
    if (w != n || e != EEXIST)
        return cx_error_set(err, CX_EHANDLER, NULL, "effect store: cannot link");
    /* Applied already (a run of a process killed before the item's completion was stored):
     * nothing to do again. */
    long applier = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld", &applier) != 1)
            applier = 0;
        fclose(f);
    }
    n = snprintf(line, sizeof line, "again %s %ld %ld\n", item->dedupe_key, pid, applier);
    count_line(line, (size_t)n);
    return 0;
}

/* The runtime's log: "item handled" (a completion the store took) becomes a "done" line;
 * errors go to stderr; the rest is dropped. */
static void log_sink(void *ud, const char *line, size_t len)
{
    (void)ud;
    static const char handled[] = "\"msg\":\"item handled\"", key[] = "\"dedupe_key\":\"",
                      error[] = "\"level\":\"error\"";
    if (memmem(line, len, handled, sizeof handled - 1) != NULL) {
        const char *k = memmem(line, len, key, sizeof key - 1);
        if (k == NULL)
            return;
        k += sizeof key - 1;
        const char *end = memchr(k, '"', len - (size_t)(k - line));
        if (end == NULL)
            return;
        char out[1200];
        int n = snprintf(out, sizeof out, "done %.*s %ld\n", (int)(end - k), k, (long)getpid());
        if (n > 0 && (size_t)n < sizeof out)
            count_line(out, (size_t)n);
        return;
    }
    if (memmem(line, len, error, sizeof error - 1) != NULL) {
        ssize_t w = write(2, line, len);
        (void)w;
    }
}

int main(int argc, char **argv)
{
    int port = 0, threads = 2, prefetch = 0;
    unsigned claim_ttl = 1500;
    const char *count_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--hang") == 0) {
            hang = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "queue_worker: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--count-file") == 0)
            count_file = v;
        else if (strcmp(a, "--effects-dir") == 0)
            effects_dir = v;
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--prefetch") == 0)
            prefetch = atoi(v);
        else if (strcmp(a, "--claim-ttl-ms") == 0)
            claim_ttl = (unsigned)atoi(v);
        else if (strcmp(a, "--work-us") == 0)
            work_us = atol(v);
        else {
            fprintf(stderr, "queue_worker: unknown option %s\n", a);
            return 2;
        }
    }
    if (port <= 0 || count_file == NULL || effects_dir == NULL || threads <= 0) {
        fprintf(stderr, "usage: queue_worker --port N --count-file PATH --effects-dir DIR "
                        "[options]\n");
        return 2;
    }
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    count_fd = open(count_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (count_fd < 0) {
        perror("queue_worker: count file");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the worker threads */

    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = port,
                             .connect_timeout_ms = 500,
                             .command_timeout_ms = 1000,
                             .pool_size = threads + 4};
    cx_dedupe_store_t *dedupe = NULL;
    cx_queue_t *queue = NULL;
    cx_dlq_t *dlq = NULL;
    if (cx_dedupe_store_redis("development", &ro, &dedupe, &err) != 0 ||
        cx_queue_redis("development", NULL, &ro, &queue, &err) != 0 ||
        cx_dlq_redis("development", NULL, &ro, &dlq, &err) != 0) {
        fprintf(stderr, "queue_worker: stores: %s\n", err.message);
        return 1;
    }
    cx_logger_t *log = NULL;
    cx_logger_config_t lc = {.service = "queue_worker", .level = CX_LOG_INFO, .sink = log_sink};
    cx_logger_new(&lc, &log);
    static const unsigned char key[] = "pseudonym-key-for-tests";
    cx_runtime_config_t cfg = {.environment = CX_ENV_DEVELOPMENT,
                               .logger = log,
                               .dedupe = dedupe,
                               .pseudonym_key = key,
                               .pseudonym_key_len = sizeof key - 1,
                               .handler_mode = CX_HANDLER_MODE_QUEUED,
                               .queue = queue,
                               .dlq = dlq,
                               .handler_deadline_ms = claim_ttl / 2,
                               .worker_claim_ttl_ms = claim_ttl,
                               .workers = (unsigned)threads,
                               .tenant_concurrency = (unsigned)threads,
                               .prefetch = (unsigned)(prefetch > 0 ? prefetch : threads)};
    cx_runtime_t *rt = NULL;
    if (cx_runtime_create(&cfg, &rt, &err) != 0 ||
        cx_runtime_on(rt, "*", handler, NULL, &err) != 0 ||
        cx_runtime_start_workers(rt, &err) != 0) {
        fprintf(stderr, "queue_worker: runtime: %s\n", err.message);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    int rc = cx_runtime_stop_workers(rt, 5000);
    cx_runtime_destroy(rt);
    cx_queue_destroy(queue);
    cx_dlq_destroy(dlq);
    cx_dedupe_store_destroy(dedupe);
    cx_logger_free(log);
    close(count_fd);
    return rc == 0 ? 0 : 1;
}
