/* dedupe_claimer: one process of the multi-process dedupe test (test_dedupe_store).
 *
 * Several copies run against one Redis at once. Each starts --threads threads that, for each
 * of --rounds rounds, claim the same --keys keys ("stress:r<round>:k<index>") in batches of
 * --batch until every key is DONE in their view: an OWNED key runs a fake handler that fails
 * with probability --fail-permille (then the claim is released, and the key is claimed again
 * later, by anyone) or succeeds (then it is completed). Keys found IN_PROGRESS are retried.
 *
 * Every event is appended to --out as "<round> <key> <event>" (O owned, C completed, X
 * complete lost its claim, R released), so the test counts owners outside the processes.
 * With --holders FILE (one byte per round x key, shared by every process through mmap) an
 * owner also marks its key held for the handler's duration with an atomic compare-and-swap:
 * two owners at once would find the byte set and are reported as V (violation).
 *
 * Protocol with the test: after connecting, print "ready" on stdout; start when stdin reaches
 * end of file, so every process starts together. Exit status 0 when no call failed and no
 * violation was seen.
 *
 *   dedupe_claimer --port P --env E --out FILE [--host H] [--password PW] [--threads 8]
 *                  [--keys 1000] [--rounds 10] [--batch 10] [--fail-permille 0]
 *                  [--holders FILE] [--ttl-ms 30000]
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cx/dedupe_store.h"

typedef struct opts_s {
    const char *host, *password, *env, *out, *holders;
    int port, threads, keys, rounds, batch, fail_permille;
    unsigned ttl_ms;
} opts_t;

typedef struct shared_s {
    opts_t o;
    cx_dedupe_store_t *store;
    pthread_barrier_t barrier;
    pthread_mutex_t out_mu;
    FILE *out;
    atomic_uchar *held; /* rounds x keys, or NULL */
    atomic_int errors;
    atomic_int violations;
} shared_t;

typedef struct worker_s {
    shared_t *sh;
    int index;
    char *log; /* this thread's events, written out at the end */
    size_t len, cap;
    unsigned seed;
} worker_t;

static void emit(worker_t *w, int round, int key, char ev)
{
    if (w->cap - w->len < 32) {
        size_t cap = w->cap ? w->cap * 2 : 1 << 16;
        char *p = realloc(w->log, cap);
        if (p == NULL) {
            atomic_fetch_add(&w->sh->errors, 1);
            return;
        }
        w->log = p;
        w->cap = cap;
    }
    w->len += (size_t)snprintf(w->log + w->len, w->cap - w->len, "%d %d %c\n", round, key, ev);
}

static void fail_call(worker_t *w, const char *op, int rc, const cx_error_t *err)
{
    atomic_fetch_add(&w->sh->errors, 1);
    fprintf(stderr, "claimer[%d]: %s: %s: %s\n", w->index, op, cx_err_name(rc), err->message);
}

static atomic_uchar *held_of(shared_t *sh, int round, int key)
{
    return sh->held ? &sh->held[(size_t)round * (size_t)sh->o.keys + (size_t)key] : NULL;
}

/* Claims all keys of one round until each is DONE from this thread's point of view. */
static void run_round(worker_t *w, int round)
{
    shared_t *sh = w->sh;
    const opts_t *o = &sh->o;
    int n = o->keys;
    int *pending = malloc(sizeof(int) * (size_t)n);
    char(*names)[48] = malloc(sizeof(*names) * (size_t)o->batch);
    cx_dedupe_item_t *items = calloc((size_t)o->batch, sizeof *items);
    int *which = malloc(sizeof(int) * (size_t)o->batch);
    if (!pending || !names || !items || !which) {
        atomic_fetch_add(&sh->errors, 1);
        goto out;
    }
    /* Threads walk the keys from different starts and directions, so they collide on keys in
     * every state: absent, just claimed, completed. */
    int start = (int)(((unsigned)w->index * 131u) % (unsigned)n);
    for (int i = 0; i < n; i++)
        pending[i] = (w->index & 1) ? (start - i + n) % n : (start + i) % n;
    int npending = n;
    while (npending > 0 && atomic_load(&sh->errors) == 0) {
        int kept = 0;
        for (int at = 0; at < npending; at += o->batch) {
            int m = npending - at < o->batch ? npending - at : o->batch;
            for (int j = 0; j < m; j++) {
                which[j] = pending[at + j];
                snprintf(names[j], sizeof names[j], "stress:r%d:k%d", round, which[j]);
                memset(&items[j], 0, sizeof items[j]);
                items[j].key = names[j];
                items[j].done_ttl_s = 3600;
            }
            cx_error_t err;
            cx_error_clear(&err);
            int rc = sh->store->ops->claim(sh->store, items, (size_t)m, o->ttl_ms, &err);
            if (rc != 0) {
                fail_call(w, "claim", rc, &err);
                goto out;
            }
            cx_dedupe_item_t done[64], rel[64];
            int dk[64], rk[64], nd = 0, nr = 0;
            for (int j = 0; j < m; j++) {
                if (items[j].state == CX_CLAIM_IN_PROGRESS) {
                    pending[kept++] = which[j]; /* try again in the next pass */
                    continue;
                }
                if (items[j].state != CX_CLAIM_OWNED)
                    continue;
                emit(w, round, which[j], 'O');
                atomic_uchar *h = held_of(sh, round, which[j]);
                unsigned char zero = 0;
                if (h && !atomic_compare_exchange_strong(h, &zero, 1)) {
                    atomic_fetch_add(&sh->violations, 1);
                    emit(w, round, which[j], 'V');
                }
                bool fails =
                    o->fail_permille > 0 && (int)(rand_r(&w->seed) % 1000) < o->fail_permille;
                if (fails) {
                    rel[nr] = items[j];
                    rk[nr++] = which[j];
                    pending[kept++] = which[j];
                } else {
                    done[nd] = items[j];
                    dk[nd++] = which[j];
                }
            }
            /* The "handler" has run; clear the held marks before giving up the claims. */
            for (int j = 0; j < nd; j++)
                if (held_of(sh, round, dk[j]))
                    atomic_store(held_of(sh, round, dk[j]), 0);
            for (int j = 0; j < nr; j++)
                if (held_of(sh, round, rk[j]))
                    atomic_store(held_of(sh, round, rk[j]), 0);
            if (nd > 0) {
                cx_error_clear(&err);
                rc = sh->store->ops->complete(sh->store, done, (size_t)nd, &err);
                if (rc != 0) {
                    fail_call(w, "complete", rc, &err);
                    goto out;
                }
                for (int j = 0; j < nd; j++)
                    emit(w, round, dk[j], done[j].rc == 0 ? 'C' : 'X');
            }
            if (nr > 0) {
                cx_error_clear(&err);
                rc = sh->store->ops->release(sh->store, rel, (size_t)nr, &err);
                if (rc != 0) {
                    fail_call(w, "release", rc, &err);
                    goto out;
                }
                for (int j = 0; j < nr; j++)
                    emit(w, round, rk[j], rel[j].rc == 0 ? 'R' : 'X');
            }
        }
        if (kept == npending) {
            struct timespec ts = {0, 200000}; /* nobody progressed here: let owners finish */
            nanosleep(&ts, NULL);
        }
        npending = kept;
    }
out:
    free(pending);
    free(names);
    free(items);
    free(which);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int r = 0; r < w->sh->o.rounds; r++) {
        pthread_barrier_wait(&w->sh->barrier);
        run_round(w, r);
    }
    pthread_mutex_lock(&w->sh->out_mu);
    if (w->len && fwrite(w->log, 1, w->len, w->sh->out) != w->len)
        atomic_fetch_add(&w->sh->errors, 1);
    pthread_mutex_unlock(&w->sh->out_mu);
    return NULL;
}

static int parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.host = "127.0.0.1",
                  .threads = 8,
                  .keys = 1000,
                  .rounds = 10,
                  .batch = 10,
                  .ttl_ms = 30000};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host"))
            o->host = v;
        else if (!strcmp(k, "--port"))
            o->port = atoi(v);
        else if (!strcmp(k, "--password"))
            o->password = v;
        else if (!strcmp(k, "--env"))
            o->env = v;
        else if (!strcmp(k, "--out"))
            o->out = v;
        else if (!strcmp(k, "--holders"))
            o->holders = v;
        else if (!strcmp(k, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(k, "--keys"))
            o->keys = atoi(v);
        else if (!strcmp(k, "--rounds"))
            o->rounds = atoi(v);
        else if (!strcmp(k, "--batch"))
            o->batch = atoi(v);
        else if (!strcmp(k, "--fail-permille"))
            o->fail_permille = atoi(v);
        else if (!strcmp(k, "--ttl-ms"))
            o->ttl_ms = (unsigned)atoi(v);
        else
            return -1;
    }
    if (argc % 2 == 0 || !o->env || !o->out || o->port <= 0 || o->threads <= 0 || o->keys <= 0 ||
        o->rounds <= 0 || o->batch <= 0 || o->batch > 64)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static shared_t sh;
    if (parse(argc, argv, &sh.o) != 0) {
        fprintf(stderr, "usage: dedupe_claimer --port P --env E --out FILE [options]\n");
        return 2;
    }
    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = sh.o.host,
                             .port = sh.o.port,
                             .password = sh.o.password,
                             .pool_size = sh.o.threads,
                             .connect_timeout_ms = 2000,
                             .command_timeout_ms = 5000};
    int rc = cx_dedupe_store_redis(sh.o.env, &ro, &sh.store, &err);
    if (rc == 0)
        rc = sh.store->ops->ping(sh.store, &err);
    if (rc != 0) {
        fprintf(stderr, "dedupe_claimer: %s: %s\n", cx_err_name(rc), err.message);
        cx_dedupe_store_destroy(sh.store);
        return 1;
    }
    sh.out = fopen(sh.o.out, "a");
    if (sh.out == NULL) {
        fprintf(stderr, "dedupe_claimer: %s: %s\n", sh.o.out, strerror(errno));
        cx_dedupe_store_destroy(sh.store);
        return 1;
    }
    size_t held_len = (size_t)sh.o.rounds * (size_t)sh.o.keys;
    if (sh.o.holders) {
        int fd = open(sh.o.holders, O_RDWR);
        void *m =
            fd >= 0 ? mmap(NULL, held_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
        if (fd >= 0)
            close(fd);
        if (m == MAP_FAILED) {
            fprintf(stderr, "dedupe_claimer: cannot map %s\n", sh.o.holders);
            fclose(sh.out);
            cx_dedupe_store_destroy(sh.store);
            return 1;
        }
        sh.held = m;
    }
    pthread_barrier_init(&sh.barrier, NULL, (unsigned)sh.o.threads);
    pthread_mutex_init(&sh.out_mu, NULL);
    worker_t *w = calloc((size_t)sh.o.threads, sizeof *w);
    pthread_t *t = calloc((size_t)sh.o.threads, sizeof *t);
    if (!w || !t)
        return 1;

    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < sh.o.threads; i++) {
        w[i].sh = &sh;
        w[i].index = (int)getpid() * 8 + i;
        w[i].seed = (unsigned)getpid() * 7919u + (unsigned)i;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < sh.o.threads; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "dedupe_claimer[%d]: %d threads x %d rounds x %d keys in %.2f s\n",
            (int)getpid(), sh.o.threads, sh.o.rounds, sh.o.keys, secs);
    for (int i = 0; i < sh.o.threads; i++)
        free(w[i].log);
    free(w);
    free(t);
    if (sh.held)
        munmap((void *)sh.held, held_len);
    fclose(sh.out);
    pthread_barrier_destroy(&sh.barrier);
    pthread_mutex_destroy(&sh.out_mu);
    cx_dedupe_store_destroy(sh.store);
    int errors = atomic_load(&sh.errors), violations = atomic_load(&sh.violations);
    if (errors || violations)
        fprintf(stderr, "dedupe_claimer: %d failed calls, %d violations\n", errors, violations);
    return errors || violations ? 1 : 0;
}
