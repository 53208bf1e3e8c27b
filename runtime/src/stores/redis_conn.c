/* The hiredis connection pool shared by the Redis stores (see redis_conn.h). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "stores/redis_conn.h"

#define DEFAULT_TIMEOUT_MS 1000u
#define DEFAULT_POOL_SIZE 8
#define MAX_POOL_SIZE 1024

typedef struct slot_s {
    redisContext *ctx; /* NULL while disconnected */
} slot_t;

struct cx__redis_pool_s {
    char *host;
    char *username; /* NULL: AUTH <password> */
    char *password; /* NULL: no AUTH; wiped on destroy */
    int port;
    uint32_t connect_ms;
    uint32_t command_ms;
    char name[300]; /* "host:port" */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a slot is given back; CLOCK_MONOTONIC */
    size_t size;
    size_t nfree;
    slot_t **free; /* stack of idle slots, nfree of them */
    /* Joined round trips (cx__redis_pipeline_joined): callers queue under jmu; at most
     * JOIN_LEADERS of them at a time send everything queued in one round trip. */
    pthread_mutex_t jmu;
    struct joiner_s *jhead, *jtail; /* each waits on its own condition variable */
    int leaders;
    slot_t slots[];
};

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int cx__redis_pool_create(const cx_redis_options_t *opts, cx__redis_pool_t **out, cx_error_t *err)
{
    *out = NULL;
    if (opts == NULL || opts->host == NULL || opts->host[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "host", "redis host is empty");
    if (opts->port <= 0 || opts->port > 65535)
        return cx_error_set(err, CX_EINVAL, "port", "redis port %d outside 1..65535", opts->port);
    if (opts->pool_size < 0 || opts->pool_size > MAX_POOL_SIZE)
        return cx_error_set(err, CX_EINVAL, "pool_size", "pool_size outside 0..%d", MAX_POOL_SIZE);
    size_t size = opts->pool_size ? (size_t)opts->pool_size : DEFAULT_POOL_SIZE;
    cx__redis_pool_t *p = calloc(1, sizeof *p + size * sizeof(slot_t));
    slot_t **stack = calloc(size, sizeof *stack);
    bool oom = p == NULL || stack == NULL;
    if (oom) {
        free(p);
        free(stack);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis pool: out of memory");
    }
    p->host = dup_or_null(opts->host, &oom);
    p->username = dup_or_null(opts->username, &oom);
    p->password = dup_or_null(opts->password, &oom);
    p->port = opts->port;
    p->connect_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_TIMEOUT_MS;
    p->command_ms = opts->command_timeout_ms ? opts->command_timeout_ms : DEFAULT_TIMEOUT_MS;
    snprintf(p->name, sizeof p->name, "%s:%d", opts->host, opts->port);
    p->size = size;
    p->free = stack;
    for (size_t i = 0; i < size; i++)
        p->free[p->nfree++] = &p->slots[size - 1 - i];
    pthread_condattr_t ca;
    int bad = pthread_condattr_init(&ca);
    if (bad == 0) {
        bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (bad == 0)
            bad = pthread_cond_init(&p->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (oom || bad != 0) {
        if (bad == 0)
            pthread_cond_destroy(&p->cv);
        free(p->host);
        free(p->username);
        wipe_free(p->password);
        free(p->free);
        free(p);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis pool: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->jmu, NULL);
    *out = p;
    return 0;
}

void cx__redis_pool_destroy(cx__redis_pool_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->size; i++) {
        if (p->slots[i].ctx)
            redisFree(p->slots[i].ctx);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->jmu);
    free(p->host);
    free(p->username);
    wipe_free(p->password);
    free(p->free);
    free(p);
}

const char *cx__redis_pool_name(const cx__redis_pool_t *p)
{
    return p->name;
}

/* ---- SIGPIPE ------------------------------------------------------------------------------
 *
 * hiredis 0.14 writes with write(2), so a write to a socket the server has reset raises
 * SIGPIPE, whose default action kills the process. A library must not change the process's
 * signal dispositions, so, like libpq, we block SIGPIPE in this thread for the duration of the
 * I/O (SIGPIPE from a write is delivered to the writing thread) and consume one that our
 * write caused before unblocking. A SIGPIPE the application had blocked or pending already is
 * left alone. */

typedef struct sigpipe_guard_s {
    sigset_t old;
    bool was_blocked;
    bool was_pending;
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    g->was_blocked = sigismember(&g->old, SIGPIPE) == 1;
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

static void sigpipe_restore(sigpipe_guard_t *g)
{
    if (g->was_blocked)
        return;
    sigset_t pending;
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- Connections ------------------------------------------------------------------------ */

static struct timeval tv_of(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* Records why c failed. errno_at_failure tells a timeout (EAGAIN from SO_RCVTIMEO /
 * SO_SNDTIMEO) from other I/O errors, which hiredis reports with the same code. */
static int io_error(const cx__redis_pool_t *p, const redisContext *c, int errno_at_failure,
                    const char *what, cx_error_t *err)
{
    if (c == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis %s: %s: out of memory", p->name, what);
    if (c->err == REDIS_ERR_OOM)
        return cx_error_set(err, CX_ENOMEM, NULL, "redis %s: %s: out of memory", p->name, what);
    if (c->err == REDIS_ERR_IO && (errno_at_failure == EAGAIN || errno_at_failure == EWOULDBLOCK))
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s: timed out after %u ms",
                            p->name, what, (unsigned)p->command_ms);
    if (c->err == REDIS_ERR_EOF)
        return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s: connection closed", p->name,
                            what);
    return cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: %s: %s", p->name, what,
                        c->errstr[0] ? c->errstr : "I/O error");
}

/* The first word of an error reply ("WRONGPASS", "NOAUTH", "ERR"): enough to act on, and it
 * cannot carry an argument back into our logs. */
static int first_word(const redisReply *r)
{
    int n = 0;
    while (r->str && (size_t)n < r->len && n < 32 && r->str[n] != ' ')
        n++;
    return n;
}

static int conn_open(cx__redis_pool_t *p, slot_t *slot, cx_error_t *err)
{
    redisContext *c = redisConnectWithTimeout(p->host, p->port, tv_of(p->connect_ms));
    if (c == NULL || c->err) {
        int rc = c ? cx_error_set(err, CX_EUNAVAILABLE, NULL, "redis %s: connect: %s", p->name,
                                  c->errstr[0] ? c->errstr : "failed")
                   : io_error(p, NULL, 0, "connect", err);
        redisFree(c);
        return rc;
    }
    if (redisSetTimeout(c, tv_of(p->command_ms)) != REDIS_OK) {
        int rc = io_error(p, c, errno, "set timeout", err);
        redisFree(c);
        return rc;
    }
    /* Keepalive finds a peer that vanished without a FIN (host down) on idle connections. */
    (void)redisEnableKeepAlive(c);
    if (p->password) {
        const char *argv[3] = {"AUTH", p->username, p->password};
        int argc = 3;
        if (p->username == NULL) {
            argv[1] = p->password;
            argc = 2;
        }
        redisReply *r = redisCommandArgv(c, argc, argv, NULL);
        int saved = errno;
        if (r == NULL) {
            int rc = io_error(p, c, saved, "AUTH", err);
            redisFree(c);
            return rc;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            int rc = cx_error_set(err, CX_EUNAVAILABLE, NULL,
                                  "redis %s: AUTH rejected (%.*s); check the password secret",
                                  p->name, first_word(r), r->str);
            freeReplyObject(r);
            redisFree(c);
            return rc;
        }
        freeReplyObject(r);
    }
    slot->ctx = c;
    return 0;
}

/* True when a pooled connection can be used: no error recorded, and the server has not
 * closed it (a restarted Redis leaves every pooled socket at EOF). Bytes waiting mean the
 * connection is out of step with its replies; it is not reused either. */
static bool conn_alive(const redisContext *c)
{
    if (c->err)
        return false;
    char b;
    ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- Sessions: one borrowed connection ------------------------------------------------- */

typedef struct session_s {
    cx__redis_pool_t *pool;
    slot_t *slot;
    sigpipe_guard_t guard;
} session_t;

static int take_slot(cx__redis_pool_t *p, slot_t **out, cx_error_t *err)
{
    pthread_mutex_lock(&p->mu);
    if (p->nfree == 0) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += p->command_ms / 1000;
        deadline.tv_nsec += (long)(p->command_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (p->nfree == 0) {
            if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT && p->nfree == 0) {
                pthread_mutex_unlock(&p->mu);
                return cx_error_set(err, CX_EUNAVAILABLE, NULL,
                                    "redis %s: all %zu pooled connections busy for %u ms", p->name,
                                    p->size, (unsigned)p->command_ms);
            }
        }
    }
    *out = p->free[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void give_slot(cx__redis_pool_t *p, slot_t *slot)
{
    pthread_mutex_lock(&p->mu);
    p->free[p->nfree++] = slot;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Borrows a connected connection. Connecting happens outside the pool's lock, so one slow
 * connect does not stall callers that find a live connection. */
static int session_begin(session_t *s, cx__redis_pool_t *p, cx_error_t *err)
{
    s->pool = p;
    int rc = take_slot(p, &s->slot, err);
    if (rc != 0)
        return rc;
    sigpipe_block(&s->guard);
    if (s->slot->ctx && !conn_alive(s->slot->ctx)) {
        redisFree(s->slot->ctx);
        s->slot->ctx = NULL;
    }
    if (s->slot->ctx == NULL)
        rc = conn_open(p, s->slot, err);
    if (rc != 0) {
        sigpipe_restore(&s->guard);
        give_slot(p, s->slot);
    }
    return rc;
}

/* Gives the connection back; broken drops it (the next user reconnects). */
static void session_end(session_t *s, bool broken)
{
    if (broken || s->slot->ctx == NULL || s->slot->ctx->err) {
        redisFree(s->slot->ctx);
        s->slot->ctx = NULL;
    }
    sigpipe_restore(&s->guard);
    give_slot(s->pool, s->slot);
}

/* Appends one command in RESP to c's output buffer. hiredis's own formatter (sdscatfmt per
 * argument) cost more than the rest of a claim; this writes it in one pass. */
static int append_cmd(redisContext *c, const cx__redis_cmd_t *cmd)
{
    char stack[1024];
    size_t need = 16;
    for (int i = 0; i < cmd->argc; i++)
        need += 32 + (cmd->argvlen ? cmd->argvlen[i] : strlen(cmd->argv[i]));
    char *buf = need <= sizeof stack ? stack : malloc(need);
    if (buf == NULL)
        return REDIS_ERR;
    size_t o = (size_t)snprintf(buf, need, "*%d\r\n", cmd->argc);
    for (int i = 0; i < cmd->argc; i++) {
        size_t len = cmd->argvlen ? cmd->argvlen[i] : strlen(cmd->argv[i]);
        char num[24];
        size_t k = sizeof num;
        size_t v = len;
        do {
            num[--k] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        buf[o++] = '$';
        memcpy(buf + o, num + k, sizeof num - k);
        o += sizeof num - k;
        buf[o++] = '\r';
        buf[o++] = '\n';
        memcpy(buf + o, cmd->argv[i], len);
        o += len;
        buf[o++] = '\r';
        buf[o++] = '\n';
    }
    int rc = redisAppendFormattedCommand(c, buf, o);
    if (buf != stack)
        free(buf);
    return rc;
}

/* Appends n commands and reads n replies on c. On failure frees what was read. */
static int round_trip(cx__redis_pool_t *p, redisContext *c, const cx__redis_cmd_t *cmds, size_t n,
                      redisReply **replies, cx_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (append_cmd(c, &cmds[i]) != REDIS_OK)
            return io_error(p, c, errno, "send", err);
    }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || r == NULL) {
            int rc = io_error(p, c, errno, "round trip", err);
            for (size_t j = 0; j < i; j++) {
                freeReplyObject(replies[j]);
                replies[j] = NULL;
            }
            return rc;
        }
        replies[i] = r;
    }
    return 0;
}

int cx__redis_pipeline(cx__redis_pool_t *p, const cx__redis_cmd_t *cmds, size_t n,
                       redisReply **replies, cx_error_t *err)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n == 0)
        return 0;
    session_t s;
    int rc = session_begin(&s, p, err);
    if (rc != 0)
        return rc;
    rc = round_trip(p, s.slot->ctx, cmds, n, replies, err);
    /* A failed round trip may leave commands unsent or replies unread: never reuse it. */
    session_end(&s, rc != 0);
    return rc;
}

/* ---- Joined round trips ----------------------------------------------------------------- *
 *
 * Flat combining: a caller queues its commands; if fewer than JOIN_LEADERS round trips are in
 * flight, it becomes a leader, takes everything queued (its own commands and those of callers
 * that arrived meanwhile, up to JOIN_MAX_CMDS), sends it in one write, reads every reply and
 * hands each caller its own. Under load, Redis then reads and answers many requests' commands
 * per system call instead of one request's; alone, a caller leads its own round trip at once
 * and waits for nobody. */

#define JOIN_LEADERS 2
#define JOIN_MAX_CMDS 4096

typedef struct joiner_s {
    const cx__redis_cmd_t *cmds;
    size_t n;
    redisReply **replies;
    int rc;
    cx_error_t err;
    bool taken;        /* a leader has it */
    bool done;         /* replies (or rc) are in */
    pthread_cond_t cv; /* signalled when done, or when it may lead */
    struct joiner_s *next;
} joiner_t;

/* Sends the batch (the list from first) on one connection and distributes the replies. A caller
 * whose replies were all read before a failure keeps them; the others get the failure. */
static void lead(cx__redis_pool_t *p, joiner_t *first)
{
    session_t s;
    cx_error_t err = {0};
    int rc = session_begin(&s, p, &err);
    joiner_t *j = first;
    if (rc == 0) {
        redisContext *c = s.slot->ctx;
        for (joiner_t *q = first; rc == 0 && q; q = q->next)
            for (size_t i = 0; rc == 0 && i < q->n; i++)
                if (append_cmd(c, &q->cmds[i]) != REDIS_OK)
                    rc = io_error(p, c, errno, "send", &err);
        while (rc == 0 && j) {
            for (size_t i = 0; i < j->n; i++) {
                void *r = NULL;
                if (redisGetReply(c, &r) != REDIS_OK || r == NULL) {
                    rc = io_error(p, c, errno, "round trip", &err);
                    for (size_t k = 0; k < i; k++) {
                        freeReplyObject(j->replies[k]);
                        j->replies[k] = NULL;
                    }
                    break;
                }
                j->replies[i] = r;
            }
            if (rc == 0) {
                j->rc = 0;
                j = j->next;
            }
        }
        session_end(&s, rc != 0);
    }
    for (; j; j = j->next) {
        j->rc = rc;
        j->err = err;
    }
}

int cx__redis_pipeline_joined(cx__redis_pool_t *p, const cx__redis_cmd_t *cmds, size_t n,
                              redisReply **replies, cx_error_t *err)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n == 0)
        return 0;
    joiner_t me = {.cmds = cmds, .n = n, .replies = replies};
    pthread_cond_init(&me.cv, NULL);
    pthread_mutex_lock(&p->jmu);
    if (p->jtail)
        p->jtail->next = &me;
    else
        p->jhead = &me;
    p->jtail = &me;
    while (!me.done) {
        if (me.taken || p->leaders >= JOIN_LEADERS) {
            pthread_cond_wait(&me.cv, &p->jmu);
            continue;
        }
        /* Lead: take the queue from its head (where we are, or behind us) up to the cap. */
        joiner_t *first = p->jhead, *last = first;
        size_t total = first->n;
        first->taken = true;
        while (last->next && total + last->next->n <= JOIN_MAX_CMDS) {
            last = last->next;
            last->taken = true;
            total += last->n;
        }
        p->jhead = last->next;
        if (p->jhead == NULL)
            p->jtail = NULL;
        last->next = NULL;
        p->leaders++;
        pthread_mutex_unlock(&p->jmu);
        lead(p, first);
        pthread_mutex_lock(&p->jmu);
        for (joiner_t *q = first; q;) {
            joiner_t *next = q->next; /* q may return and vanish once done is seen */
            q->done = true;
            if (q != &me)
                pthread_cond_signal(&q->cv);
            q = next;
        }
        p->leaders--;
        /* Wake only who can use it: the waiter at the head of the queue leads next. */
        if (p->jhead)
            pthread_cond_signal(&p->jhead->cv);
    }
    pthread_mutex_unlock(&p->jmu);
    pthread_cond_destroy(&me.cv);
    if (me.rc != 0 && err)
        *err = me.err;
    return me.rc;
}

/* ---- Scripts ---------------------------------------------------------------------------- */

int cx__redis_script_init(cx__redis_script_t *script, const char *source)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    script->source = source;
    script->sha1[0] = '\0';
    if (EVP_Digest(source, strlen(source), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        return CX_ECRYPTO;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        script->sha1[2 * i] = hex[md[i] >> 4];
        script->sha1[2 * i + 1] = hex[md[i] & 15];
    }
    script->sha1[40] = '\0';
    return 0;
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

int cx__redis_eval(cx__redis_pool_t *p, const cx__redis_script_t *script, size_t nkeys,
                   const char *const *keys, const size_t *keylens, size_t nargs,
                   const char *const *args, const size_t *arglens, redisReply **reply,
                   cx_error_t *err)
{
    *reply = NULL;
    if (nkeys > (size_t)INT_MAX - 3 - nargs)
        return cx_error_set(err, CX_EINVAL, NULL, "redis script: too many arguments");
    size_t argc = 3 + nkeys + nargs;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return cx_error_set(err, CX_ENOMEM, NULL, "redis script: out of memory");
    }
    char nk[24];
    int nklen = snprintf(nk, sizeof nk, "%zu", nkeys);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = script->sha1;
    lens[1] = 40;
    argv[2] = nk;
    lens[2] = (size_t)nklen;
    for (size_t i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        lens[3 + i] = keylens[i];
    }
    for (size_t i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arglens[i];
    }
    cx__redis_cmd_t cmd = {(int)argc, argv, lens};
    session_t s;
    int rc = session_begin(&s, p, err);
    if (rc == 0) {
        rc = round_trip(p, s.slot->ctx, &cmd, 1, reply, err);
        /* A server that has not seen the script yet (new, restarted, SCRIPT FLUSH): send the
         * source once on the same connection; later calls hit the cache again. */
        if (rc == 0 && is_noscript(*reply)) {
            freeReplyObject(*reply);
            *reply = NULL;
            argv[0] = "EVAL";
            lens[0] = 4;
            argv[1] = script->source;
            lens[1] = strlen(script->source);
            rc = round_trip(p, s.slot->ctx, &cmd, 1, reply, err);
        }
        session_end(&s, rc != 0);
    }
    free(argv);
    free(lens);
    return rc;
}
