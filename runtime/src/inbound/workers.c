/* Queued mode: the worker threads (docs/durable-processing.md).
 *
 * A process runs `workers` threads and one housekeeping thread around one in-memory buffer:
 *
 *   fetch      one thread at a time fetches (due retries are promoted, a silent consumer's
 *              items reclaimed, new items read, blocking up to FETCH_BLOCK_MS), decodes the
 *              job records and renews their dedupe claims in one round trip: an item whose key
 *              another delivery holds, or that is done, is a duplicate and is acknowledged
 *              without running. The rest wait in the buffer (at most `prefetch`).
 *   take       a thread takes the first buffered item whose tenant runs fewer than
 *              `tenant_concurrency` handlers in this process. When the buffer is full of items
 *              of tenants at their cap, those go back to the schedule for DEFER_MS (plus
 *              jitter) so the others' items can be fetched: one tenant never stalls the rest.
 *   limit      with rate limits, the item asks the limiter; over a limit it is rescheduled at
 *              its reserved slot (or the next UTC day for a quota), no attempt counted.
 *   run        the handler, with a deadline (handler_deadline_ms) shorter than the stream
 *              claim (worker_claim_ttl_ms). C cannot interrupt a handler: the heartbeat keeps
 *              touching the items this process holds (buffered and running), every third of
 *              the claim TTL, so a live but slow handler keeps its item; when the process dies
 *              the touches stop and another consumer reclaims the items after the TTL.
 *   finish     success: the dedupe claim is completed (processing -> done; retried until it
 *              succeeds, since the handler ran), then the entry acknowledged. A transient
 *              failure: the next attempt is scheduled with exponential backoff and full jitter
 *              (one atomic step: ack + schedule), unless attempts or age are exhausted. A
 *              permanent failure or exhaustion: the dead-letter store gets the item, the
 *              claim is released, the entry acknowledged.
 *
 * Exactly once, and where it stops: every run is preceded by a renewal that fails when another
 * claim or a completion holds the key, and every success completes the claim before the entry
 * is acknowledged, so duplicates (provider redeliveries, reclaimed entries, DLQ replays, a
 * second copy of an entry) never run twice. The one window left is a process killed after a
 * handler returned and before its completion reached the store (microseconds): the reclaimed
 * entry runs again (at least once). Handlers with external side effects make them idempotent
 * by the item's dedupe key (the outbound intent keys for provider calls): delivery at least
 * once, effects exactly once (docs/durable-processing.md, "Exactly once under kill -9").
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "inbound/job.h"
#include "inbound/runtime_internal.h"

#define FETCH_BLOCK_MS 100u
#define GAUGES_EVERY_MS 1000
#define DEFER_MS 250u               /* tenant at its cap with a full buffer */
#define LIMITER_DOWN_DELAY_MS 1000u /* the rate limiter did not answer */
#define FETCH_PAUSE_MS 500          /* after a failed fetch */
#define ACK_BATCH 64                /* acknowledgements sent together */
#define ACK_DELAY_MS 20             /* at most this late */

typedef struct cx__workers_s cx__workers_t;

typedef struct held_s {
    struct held_s *next; /* buffer FIFO */
    cx_queue_msg_t msg;
    cx_arena_t arena;
    cx__job_t job;
    cx_dedupe_item_t claim;
    const cx_msg_meta_t *meta;
    int lost; /* the heartbeat found the entry held by another consumer */
} held_t;

typedef struct tslot_s {
    char *tenant;
    unsigned running;
} tslot_t;

struct cx__workers_s {
    cx_runtime_t *rt;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* work, state changes; CLOCK_MONOTONIC */
    pthread_cond_t hk_cv; /* wakes the housekeeping thread */
    held_t *head, *tail;
    size_t n_buf;
    held_t **running;
    size_t n_running;
    tslot_t *tenants;
    size_t n_tenants, cap_tenants;
    int fetching;
    int stopping;
    int hk_stop;
    unsigned alive;
    pthread_t *threads;
    unsigned n_threads;
    pthread_t hk;
    int hk_started;
    int64_t fetch_pause_until;
    int64_t last_error_log;
    char (*acks)[CX_QUEUE_ID_SIZE]; /* finished entries not acknowledged yet */
    size_t n_acks, cap_acks;
};

/* ---- Small helpers ------------------------------------------------------------------------- */

int64_t cx__now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static _Thread_local uint64_t rng_state;

static uint64_t rng(void)
{
    if (rng_state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                    (uint64_t)(uintptr_t)&rng_state ^ ((uint64_t)getpid() << 16);
    }
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void held_free(held_t *h)
{
    if (h == NULL)
        return;
    cx_queue_msgs_free(&h->msg, 1);
    cx_arena_release(&h->arena);
    free(h);
}

static const char *cap_of(const held_t *h)
{
    return h->job.capability ? h->job.capability : "unknown";
}

/* One log line about a queued item. */
static void log_job(cx_runtime_t *rt, int level, const held_t *h, const char *outcome,
                    uint32_t attempt, int code, double latency_ms, int64_t delay_ms,
                    const char *msg)
{
    cx_log_record_t r;
    if (!cx_log_begin(&r, rt->log, level))
        return;
    const cx__job_t *j = &h->job;
    cx_log_set_connector(&r, j->connector);
    cx_log_set_correlation_id(&r, j->correlation_id);
    cx_log_set_tenant_id(&r, j->tenant);
    cx_log_set_capability(&r, j->capability);
    cx_log_set_event_type(&r, h->meta ? h->meta->event_type : j->type);
    cx_log_set_dedupe_key(&r, j->key);
    cx_log_set_dedupe_hit(&r, strcmp(outcome, "deduped") == 0);
    cx_log_set_outcome(&r, outcome);
    if (latency_ms >= 0)
        cx_log_set_latency_ms(&r, latency_ms);
    if (attempt)
        cx_log_set_attempt(&r, attempt);
    if (code) {
        cx_log_set_error_code(&r, cx__code_name(code));
        cx_log_set_error_class(&r, cx_err_class(code));
    }
    if (delay_ms >= 0)
        cx_log_set_int(&r, "delay_ms", delay_ms);
    cx_log_set_msg(&r, msg);
    cx_log_emit(&r);
}

static void log_store_error(cx__workers_t *w, const char *what, const cx_error_t *err)
{
    int64_t now = cx__mono_now_ms();
    pthread_mutex_lock(&w->mu);
    int quiet = now - w->last_error_log < 5000;
    if (!quiet)
        w->last_error_log = now;
    pthread_mutex_unlock(&w->mu);
    if (quiet)
        return;
    char msg[400];
    snprintf(msg, sizeof msg, "%s: %s", what, err->message[0] ? err->message : "unavailable");
    cx_log_record_t r;
    if (cx_log_begin(&r, w->rt->log, CX_LOG_ERROR)) {
        cx_log_set_error(&r, err->code ? err->code : CX_EUNAVAILABLE);
        cx_log_set_outcome(&r, "retry");
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

/* ---- Tenants -------------------------------------------------------------------------------- */

/* The running count of a tenant (under w->mu); NULL on no memory. */
static tslot_t *tenant_slot(cx__workers_t *w, const char *tenant)
{
    if (tenant == NULL)
        tenant = "";
    for (size_t i = 0; i < w->n_tenants; i++)
        if (strcmp(w->tenants[i].tenant, tenant) == 0)
            return &w->tenants[i];
    /* Reuse a slot nobody runs in before growing: tenants come and go. */
    for (size_t i = 0; i < w->n_tenants; i++)
        if (w->tenants[i].running == 0) {
            char *t = strdup(tenant);
            if (t == NULL)
                return NULL;
            free(w->tenants[i].tenant);
            w->tenants[i].tenant = t;
            return &w->tenants[i];
        }
    if (w->n_tenants == w->cap_tenants) {
        size_t cap = w->cap_tenants ? w->cap_tenants * 2 : 16;
        tslot_t *v = realloc(w->tenants, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        w->tenants = v;
        w->cap_tenants = cap;
    }
    char *t = strdup(tenant);
    if (t == NULL)
        return NULL;
    w->tenants[w->n_tenants] = (tslot_t){t, 0};
    return &w->tenants[w->n_tenants++];
}

/* The first buffered item whose tenant is under its cap, moved to running (under w->mu).
 * Items the heartbeat lost are dropped on the way: another consumer runs them. */
static held_t *take_runnable(cx__workers_t *w)
{
    unsigned cap = w->rt->cfg.tenant_concurrency;
    held_t *prev = NULL;
    for (held_t *h = w->head; h;) {
        held_t *next = h->next;
        tslot_t *t = h->lost ? NULL : tenant_slot(w, h->job.tenant);
        if (h->lost || (t && t->running < cap)) {
            if (prev)
                prev->next = next;
            else
                w->head = next;
            if (w->tail == h)
                w->tail = prev;
            w->n_buf--;
            h->next = NULL;
            if (h->lost) {
                held_free(h);
                h = next;
                continue;
            }
            t->running++;
            w->running[w->n_running++] = h;
            return h;
        }
        prev = h;
        h = next;
    }
    return NULL;
}

/* Ends a run (under w->mu). */
static void finish_run(cx__workers_t *w, held_t *h)
{
    tslot_t *t = tenant_slot(w, h->job.tenant);
    if (t && t->running)
        t->running--;
    for (size_t i = 0; i < w->n_running; i++)
        if (w->running[i] == h) {
            w->running[i] = w->running[--w->n_running];
            break;
        }
}

/* ---- Queue transitions ---------------------------------------------------------------------- */

/* Sends the acknowledgements collected so far in one round trip. */
static void flush_acks(cx__workers_t *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->n_acks;
    char(*ids)[CX_QUEUE_ID_SIZE] = w->acks;
    w->acks = NULL;
    w->n_acks = w->cap_acks = 0;
    pthread_mutex_unlock(&w->mu);
    if (n == 0) {
        free(ids);
        return;
    }
    const char **ptr = malloc(n * sizeof *ptr);
    cx_error_t err;
    cx_error_clear(&err);
    if (ptr) {
        for (size_t i = 0; i < n; i++)
            ptr[i] = ids[i];
        /* A lost ack is harmless: the entry is reclaimed later and its renewal finds it done
         * (or held by whoever runs it). */
        if (w->rt->queue->ops->ack(w->rt->queue, ptr, n, &err) != 0)
            log_store_error(w, "cannot acknowledge queue entries (they are skipped when reclaimed)",
                            &err);
    }
    free(ptr);
    free(ids);
}

/* Acknowledges an entry whose item is finished (completed, dead-lettered, a duplicate). Acks
 * are batched: the fetcher and the housekeeping thread send them within ACK_DELAY_MS, or at
 * once past ACK_BATCH. Until then the entry stays pending for this consumer, which is safe: its
 * item is finished, and a reclaim would only skip it. */
static void ack(cx__workers_t *w, const char *id)
{
    pthread_mutex_lock(&w->mu);
    if (w->n_acks == w->cap_acks) {
        size_t cap = w->cap_acks ? w->cap_acks * 2 : 64;
        void *v = realloc(w->acks, cap * sizeof *w->acks);
        if (v == NULL) {
            pthread_mutex_unlock(&w->mu);
            cx_error_t err;
            cx_error_clear(&err);
            w->rt->queue->ops->ack(w->rt->queue, (const char *[]){id}, 1, &err);
            return;
        }
        w->acks = v;
        w->cap_acks = cap;
    }
    snprintf(w->acks[w->n_acks++], CX_QUEUE_ID_SIZE, "%s", id);
    int full = w->n_acks >= ACK_BATCH;
    pthread_mutex_unlock(&w->mu);
    if (full)
        flush_acks(w);
}

/* Renews the item's dedupe claim for ttl_ms (a long delay ahead). Returns 0 when it is still
 * ours (OWNED). */
static int renew_claim(cx__workers_t *w, held_t *h, uint64_t ttl_ms)
{
    cx_runtime_t *rt = w->rt;
    if (ttl_ms > UINT32_MAX)
        ttl_ms = UINT32_MAX;
    cx_dedupe_item_t c = h->claim;
    cx_error_t err;
    cx_error_clear(&err);
    if (rt->dedupe->ops->renew(rt->dedupe, &c, 1, (uint32_t)ttl_ms, &err) != 0) {
        log_store_error(w, "cannot renew a dedupe claim", &err);
        return -1;
    }
    return c.state == CX_CLAIM_OWNED ? 0 : -1;
}

/* Puts the item back into the schedule, due in delay_ms, with its (updated) job record. The
 * claim is renewed first when the delay is long, so a provider duplicate arriving meanwhile
 * is still deduped. On failure the entry stays pending: it is reclaimed and runs later. */
static int defer(cx__workers_t *w, held_t *h, uint64_t delay_ms)
{
    cx_runtime_t *rt = w->rt;
    if (delay_ms > UINT32_MAX)
        delay_ms = UINT32_MAX;
    if (delay_ms > rt->cfg.queued_claim_ttl_ms / 2 &&
        renew_claim(w, h, delay_ms + rt->cfg.queued_claim_ttl_ms) != 0)
        return -1;
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    int rc = cx__job_encode(&h->job, &b);
    cx_error_t err;
    cx_error_clear(&err);
    int lost = 0;
    if (rc == 0)
        rc = rt->queue->ops->schedule(rt->queue, rt->consumer, h->msg.id, b.data, b.len,
                                      (uint32_t)delay_ms, &lost, &err);
    cx_buf_free(&b);
    if (rc != 0) {
        log_store_error(w, "cannot schedule a queue entry (it will be reclaimed)", &err);
        return -1;
    }
    if (lost)
        log_job(rt, CX_LOG_WARN, h, "lost", 0, 0, -1, -1,
                "queue entry taken over by another consumer before it could be rescheduled");
    return 0;
}

/* Sends the item to the dead-letter store, releases its claim, acknowledges the entry. */
static void dead_letter(cx__workers_t *w, held_t *h, int code, const char *reason,
                        const char *message, uint32_t attempts)
{
    cx_runtime_t *rt = w->rt;
    cx__job_t j = h->job;
    j.attempt = attempts;
    j.last_error = code;
    j.id = j.key;
    j.reason = reason;
    j.error_code = cx__code_name(code);
    j.error_class = cx_err_class(code);
    j.message = message && message[0] ? message : cx_strerror(code);
    j.dead_ms = cx__now_wall_ms();
    j.flags = 0;
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx__job_encode(&j, &b);
    if (rc == 0)
        rc = cx__dead_letter_put(rt, j.id ? j.id : h->msg.id, j.connector, j.capability, j.dead_ms,
                                 b.data, b.len, &err);
    cx_buf_free(&b);
    if (rc != 0) {
        /* Not recorded: leave the entry pending, it is reclaimed and runs again later. */
        log_store_error(w, "cannot write a dead letter (the item will be retried)", &err);
        return;
    }
    if (h->claim.state == CX_CLAIM_OWNED) {
        cx_dedupe_item_t c = h->claim;
        cx_error_clear(&err);
        rt->dedupe->ops->release(rt->dedupe, &c, 1, &err);
    }
    ack(w, h->msg.id);
    cx__count_item(rt, j.connector, cap_of(h), "failed", cx__code_name(code));
    log_job(rt, CX_LOG_WARN, h, "dead_letter", attempts, code, -1, -1,
            strcmp(reason, "exhausted") == 0 ? "retries exhausted: item dead-lettered"
                                             : "item dead-lettered");
}

/* ---- Fetch ---------------------------------------------------------------------------------- */

/* An entry whose record cannot be read: kept as a dead letter with its raw bytes. */
static void dead_letter_raw(cx__workers_t *w, const cx_queue_msg_t *m)
{
    cx_runtime_t *rt = w->rt;
    char id[CX_QUEUE_ID_SIZE + 16];
    snprintf(id, sizeof id, "undecodable:%s", m->id);
    cx__job_t j = {.connector = "unknown",
                   .id = id,
                   .reason = "invalid",
                   .error_code = cx__code_name(CX_EMALFORMED),
                   .error_class = cx_err_class(CX_EMALFORMED),
                   .message = "queue entry this release cannot read",
                   .event = m->data,
                   .event_len = m->len,
                   .first_ms = cx__now_wall_ms()};
    j.dead_ms = j.first_ms;
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx__job_encode(&j, &b);
    if (rc == 0)
        rc = cx__dead_letter_put(rt, id, "unknown", "unknown", j.dead_ms, b.data, b.len, &err);
    cx_buf_free(&b);
    if (rc == 0)
        ack(w, m->id);
}

static void fetch_batch(cx__workers_t *w, size_t want)
{
    cx_runtime_t *rt = w->rt;
    cx_queue_msg_t *msgs = calloc(want, sizeof *msgs);
    held_t **hs = calloc(want, sizeof *hs);
    cx_dedupe_item_t *claims = calloc(want, sizeof *claims);
    size_t n = 0, nh = 0;
    cx_error_t err;
    cx_error_clear(&err);
    if (msgs == NULL || hs == NULL || claims == NULL)
        goto done;
    if (rt->queue->ops->fetch(rt->queue, rt->consumer, want, FETCH_BLOCK_MS,
                              rt->cfg.worker_claim_ttl_ms, msgs, &n, &err) != 0) {
        log_store_error(w, "cannot fetch from the work queue", &err);
        pthread_mutex_lock(&w->mu);
        w->fetch_pause_until = cx__mono_now_ms() + FETCH_PAUSE_MS;
        pthread_mutex_unlock(&w->mu);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        held_t *h = calloc(1, sizeof *h);
        if (h == NULL)
            break; /* not taken: reclaimed after the claim TTL */
        h->msg = msgs[i];
        msgs[i].data = NULL;
        cx_arena_init(&h->arena, NULL, rt->cfg.arena_limit);
        if (cx__job_decode(h->msg.data, h->msg.len, &h->arena, &h->job) != 0 ||
            h->job.key == NULL || strlen(h->job.token) != CX_DEDUPE_TOKEN_SIZE - 1) {
            dead_letter_raw(w, &h->msg);
            held_free(h);
            continue;
        }
        h->meta = cx_schema_find(h->job.type);
        h->claim = (cx_dedupe_item_t){
            .key = h->job.key, .done_ttl_s = h->job.done_ttl_s, .state = CX_CLAIM_OWNED};
        memcpy(h->claim.token, h->job.token, sizeof h->claim.token);
        claims[nh] = h->claim;
        hs[nh++] = h;
    }
    if (nh == 0)
        goto done;
    /* One round trip: every item's claim is still ours (renewed), or the item is a duplicate. */
    if (rt->dedupe->ops->renew(rt->dedupe, claims, nh, rt->cfg.queued_claim_ttl_ms, &err) != 0) {
        log_store_error(w, "cannot renew dedupe claims of fetched items", &err);
        for (size_t i = 0; i < nh; i++)
            held_free(hs[i]); /* still pending for us: reclaimed after the claim TTL */
        nh = 0;
        pthread_mutex_lock(&w->mu);
        w->fetch_pause_until = cx__mono_now_ms() + FETCH_PAUSE_MS;
        pthread_mutex_unlock(&w->mu);
        goto done;
    }
    size_t kept = 0;
    for (size_t i = 0; i < nh; i++) {
        held_t *h = hs[i];
        if (claims[i].state == CX_CLAIM_OWNED) {
            hs[kept++] = h;
            continue;
        }
        /* Done already (a crash between completion and ack, a duplicate entry), or another
         * delivery holds the key and runs it: skip. */
        ack(w, h->msg.id);
        cx__count_item(rt, h->job.connector, cap_of(h), "deduped", NULL);
        log_job(rt, CX_LOG_DEBUG, h, "deduped", 0, 0, -1, -1,
                "queue entry skipped: its item is done or held by another delivery");
        held_free(h);
    }
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < kept; i++) {
        /* Our own entry reclaimed (its touches failed longer than the claim TTL while Redis was
         * away): this process holds it already; never run it twice side by side. */
        int held = 0;
        for (held_t *o = w->head; o && !held; o = o->next)
            held = strcmp(o->msg.id, hs[i]->msg.id) == 0;
        for (size_t r = 0; r < w->n_running && !held; r++)
            held = strcmp(w->running[r]->msg.id, hs[i]->msg.id) == 0;
        if (held) {
            held_free(hs[i]);
            continue;
        }
        if (w->tail)
            w->tail->next = hs[i];
        else
            w->head = hs[i];
        w->tail = hs[i];
        w->n_buf++;
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    nh = 0;
done:
    if (msgs)
        cx_queue_msgs_free(msgs, n);
    free(msgs);
    free(hs);
    free(claims);
}

/* The buffer is full of items whose tenants are at their cap: put those back for a moment so
 * other tenants' items can be fetched. */
static void shed_capped(cx__workers_t *w)
{
    unsigned cap = w->rt->cfg.tenant_concurrency;
    held_t *shed = NULL, **tailp = &shed;
    pthread_mutex_lock(&w->mu);
    held_t *prev = NULL;
    for (held_t *h = w->head; h;) {
        held_t *next = h->next;
        tslot_t *t = tenant_slot(w, h->job.tenant);
        if (t && t->running >= cap) {
            if (prev)
                prev->next = next;
            else
                w->head = next;
            if (w->tail == h)
                w->tail = prev;
            w->n_buf--;
            h->next = NULL;
            *tailp = h;
            tailp = &h->next;
        } else {
            prev = h;
        }
        h = next;
    }
    pthread_mutex_unlock(&w->mu);
    while (shed) {
        held_t *h = shed;
        shed = h->next;
        defer(w, h, DEFER_MS + rng() % DEFER_MS);
        held_free(h);
    }
}

/* ---- Running one item ----------------------------------------------------------------------- */

size_t cx__rate_checks(const cx_runtime_t *rt, const char *tenant, const char *capability,
                       cx_ratelimit_check_t *c, char keys[2][CX_RATELIMIT_KEY_MAX + 1])
{
    const cx__rule_t *best[2] = {NULL, NULL};
    if (tenant == NULL)
        tenant = "";
    for (size_t i = 0; i < rt->n_rules; i++) {
        const cx__rule_t *r = &rt->rules[i];
        if (r->tenant && strcmp(r->tenant, tenant) != 0)
            continue;
        int k;
        if (r->capability == NULL)
            k = 0;
        else if (capability && strcmp(r->capability, capability) == 0)
            k = 1;
        else
            continue;
        if (best[k] == NULL || (best[k]->tenant == NULL && r->tenant != NULL))
            best[k] = r;
    }
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        if (best[k] == NULL)
            continue;
        if (k == 0)
            snprintf(keys[n], CX_RATELIMIT_KEY_MAX + 1, "{%s}:t", tenant);
        else
            snprintf(keys[n], CX_RATELIMIT_KEY_MAX + 1, "{%s}:c:%s", tenant, capability);
        c[n] =
            (cx_ratelimit_check_t){keys[n], best[k]->interval_us, best[k]->burst, best[k]->per_day};
        n++;
    }
    return n;
}

/* The first completion attempt, made the instant the handler returned: until it reaches the
 * store, a kill of this process means the item runs again elsewhere. Returns the call's code;
 * *claim_rc the item's. */
static int complete_now(cx__workers_t *w, held_t *h, int *claim_rc, cx_error_t *err)
{
    cx_dedupe_item_t c = h->claim;
    int rc = w->rt->dedupe->ops->complete(w->rt->dedupe, &c, 1, err);
    *claim_rc = c.rc;
    return rc;
}

static void succeed(cx__workers_t *w, held_t *h, uint32_t attempt, double latency_ms, int first_rc,
                    int first_claim_rc, const cx_error_t *first_err)
{
    cx_runtime_t *rt = w->rt;
    /* The handler ran: the completion must reach the store before the entry is acknowledged,
     * or a reclaim would run the item again. Retry while the store is away (the heartbeat
     * keeps the entry ours meanwhile). */
    int64_t backoff = 50;
    for (int tries = 0;; tries++) {
        cx_dedupe_item_t c = h->claim;
        cx_error_t err = *first_err;
        int rc = first_rc;
        c.rc = first_claim_rc;
        if (tries > 0) {
            cx_error_clear(&err);
            rc = rt->dedupe->ops->complete(rt->dedupe, &c, 1, &err);
        }
        if (rc == 0) {
            if (c.rc == CX_ETIMEOUT)
                log_job(rt, CX_LOG_WARN, h, "processed", attempt, CX_ETIMEOUT, latency_ms, -1,
                        "another claim took the key while the handler ran: it may have run "
                        "twice");
            break;
        }
        log_store_error(w, "cannot complete a processed item's claim (retrying)", &err);
        pthread_mutex_lock(&w->mu);
        int stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stopping) {
            log_job(rt, CX_LOG_ERROR, h, "processed", attempt, CX_EUNAVAILABLE, latency_ms, -1,
                    "stopping with a completion not stored: the item may run again");
            return;
        }
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    ack(w, h->msg.id);
    cx__count_item(rt, h->job.connector, cap_of(h), "processed", NULL);
    log_job(rt, CX_LOG_INFO, h, "processed", attempt, 0, latency_ms, -1, "item handled");
}

static void retry_or_dead(cx__workers_t *w, held_t *h, uint32_t attempt, int code,
                          const char *message)
{
    cx_runtime_t *rt = w->rt;
    const cx_retry_policy_t *p = &rt->cfg.retry;
    uint64_t ceiling = p->base_delay_ms;
    for (uint32_t i = 1; i < attempt && ceiling < p->max_delay_ms; i++)
        ceiling *= 2;
    if (ceiling > p->max_delay_ms)
        ceiling = p->max_delay_ms;
    uint64_t delay = rng() % (ceiling + 1); /* full jitter */
    int64_t age_ms = cx__now_wall_ms() + (int64_t)delay - h->job.first_ms;
    if (attempt >= p->max_attempts || age_ms > (int64_t)p->max_age_s * 1000) {
        dead_letter(w, h, code, "exhausted", message, attempt);
        return;
    }
    h->job.attempt = attempt;
    h->job.last_error = code;
    if (defer(w, h, delay) != 0)
        return;
    cx_counter_inc(rt->m_retried, (const char *[]){h->job.connector, cap_of(h)}, 1);
    log_job(rt, CX_LOG_WARN, h, "retry", attempt, code, -1, (int64_t)delay,
            "handler failed (transient): retry scheduled");
}

static void process(cx__workers_t *w, held_t *h)
{
    cx_runtime_t *rt = w->rt;
    cx__job_t *j = &h->job;
    if (rt->ratelimit && !(j->flags & CX__JOB_ADMITTED)) {
        cx_ratelimit_check_t checks[2];
        char keys[2][CX_RATELIMIT_KEY_MAX + 1];
        cx_ratelimit_request_t req = {checks,
                                      cx__rate_checks(rt, j->tenant, j->capability, checks, keys)};
        if (req.n) {
            cx_ratelimit_result_t res;
            cx_error_t err;
            cx_error_clear(&err);
            if (rt->ratelimit->ops->acquire(rt->ratelimit, &req, 1, &res, &err) != 0) {
                log_store_error(w, "rate limiter unreachable: item delayed", &err);
                defer(w, h, LIMITER_DOWN_DELAY_MS);
                return;
            }
            if (res.delay_ms > 0) {
                if (res.reserved)
                    j->flags |= CX__JOB_ADMITTED;
                if (defer(w, h, res.delay_ms) == 0) {
                    cx_counter_inc(rt->m_rate_limited, (const char *[]){j->tenant ? j->tenant : ""},
                                   1);
                    log_job(rt, CX_LOG_DEBUG, h, "delayed", 0, CX_ERATE_LIMITED, -1,
                            (int64_t)res.delay_ms,
                            res.reserved ? "rate limited: delayed to its reserved slot"
                                         : "daily quota reached: delayed to the next day");
                }
                return;
            }
        }
    }
    j->flags &= ~CX__JOB_ADMITTED;
    uint32_t attempt = j->attempt + 1;
    ProtobufCAllocator alloc = cx_arena_protobuf_allocator(&h->arena);
    ProtobufCMessage *msg = h->meta && j->event ? protobuf_c_message_unpack(h->meta->desc, &alloc,
                                                                            j->event_len, j->event)
                                                : NULL;
    if (msg == NULL) {
        dead_letter(w, h, CX_EMALFORMED, "invalid", "the queued event cannot be decoded",
                    j->attempt);
        return;
    }
    cx_event_t ev = {h->meta, msg, j->account, 0, NULL};
    const cx_handler_t *hd = cx__handler_for(rt, h->meta->capability);
    cx_error_t herr;
    cx_error_clear(&herr);
    int64_t t0 = cx__mono_now_ms();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int hrc;
    int crc = 0, claim_rc = 0;
    cx_error_t cerr;
    cx_error_clear(&cerr);
    if (hd == NULL) {
        hrc = CX_ENOT_IMPLEMENTED;
    } else {
        cx_item_t view = {&ev,    j->connector,      j->tenant,
                          j->key, j->correlation_id, t0 + rt->cfg.handler_deadline_ms,
                          attempt};
        hrc = hd->fn(hd->ud, &view, &herr);
        if (hrc == 0) /* before anything else: the at-least-once window is this gap */
            crc = complete_now(w, h, &claim_rc, &cerr);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double latency = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    cx__observe_handler(rt, j->connector, h->meta->capability, latency);
    if (latency > rt->cfg.handler_deadline_ms)
        log_job(rt, CX_LOG_WARN, h, hrc == 0 ? "processed" : "failed", attempt, 0, latency, -1,
                "handler exceeded its deadline");
    if (hrc == 0)
        succeed(w, h, attempt, latency, crc, claim_rc, &cerr);
    else if (hrc == CX_EHANDLER_PERMANENT || hrc == CX_ENOT_IMPLEMENTED)
        dead_letter(w, h, hrc, "permanent", herr.message, attempt);
    else
        retry_or_dead(w, h, attempt, CX_EHANDLER, herr.message);
}

/* ---- Threads -------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    cx__workers_t *w = arg;
    size_t prefetch = w->rt->cfg.prefetch;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        held_t *h = take_runnable(w);
        if (h) {
            pthread_mutex_unlock(&w->mu);
            process(w, h);
            pthread_mutex_lock(&w->mu);
            finish_run(w, h);
            held_free(h);
            /* This thread looks for its next item itself; the tenant slot it freed may let
             * one more run, so wake one waiter, not all (a broadcast per item had every worker
             * fight over w->mu). Stopping and fetched items still broadcast. */
            pthread_cond_signal(&w->cv);
            continue;
        }
        int64_t now = cx__mono_now_ms();
        if (!w->fetching && w->n_buf < prefetch && now >= w->fetch_pause_until) {
            w->fetching = 1;
            size_t want = prefetch - w->n_buf;
            pthread_mutex_unlock(&w->mu);
            flush_acks(w);
            fetch_batch(w, want);
            pthread_mutex_lock(&w->mu);
            w->fetching = 0;
            pthread_cond_broadcast(&w->cv);
            continue;
        }
        if (w->n_buf >= prefetch && !w->fetching) {
            /* Full of items nobody may run now (their tenants are at their cap). */
            pthread_mutex_unlock(&w->mu);
            shed_capped(w);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        struct timespec ts;
        int64_t wait = w->fetch_pause_until > now ? w->fetch_pause_until - now : 50;
        deadline_in(&ts, wait > 50 ? 50 : wait);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    w->alive--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Heartbeats for held items; gauges. */
static void *housekeeping_main(void *arg)
{
    cx__workers_t *w = arg;
    cx_runtime_t *rt = w->rt;
    int64_t every = rt->cfg.worker_claim_ttl_ms / 3;
    if (every < 50)
        every = 50;
    int64_t next_touch = cx__mono_now_ms() + every, next_gauges = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->hk_stop) {
        int64_t now = cx__mono_now_ms();
        if (now >= next_touch) {
            next_touch = now + every;
            size_t n = w->n_buf + w->n_running, k = 0;
            char(*ids)[CX_QUEUE_ID_SIZE] = n ? malloc(n * sizeof *ids) : NULL;
            for (held_t *h = w->head; ids && h; h = h->next)
                memcpy(ids[k++], h->msg.id, CX_QUEUE_ID_SIZE);
            for (size_t i = 0; ids && i < w->n_running; i++)
                memcpy(ids[k++], w->running[i]->msg.id, CX_QUEUE_ID_SIZE);
            pthread_mutex_unlock(&w->mu);
            const char **ptr = k ? malloc(k * sizeof *ptr) : NULL;
            unsigned char *lost = k ? calloc(k, 1) : NULL;
            cx_error_t err;
            cx_error_clear(&err);
            int rc = -1;
            if (ptr && lost) {
                for (size_t i = 0; i < k; i++)
                    ptr[i] = ids[i];
                rc = rt->queue->ops->touch(rt->queue, rt->consumer, ptr, k, lost, &err);
                if (rc != 0)
                    log_store_error(w, "cannot touch held queue entries", &err);
            }
            pthread_mutex_lock(&w->mu);
            for (size_t i = 0; rc == 0 && i < k; i++) {
                if (!lost[i])
                    continue;
                for (held_t *h = w->head; h; h = h->next)
                    if (strcmp(h->msg.id, ids[i]) == 0)
                        h->lost = 1;
                for (size_t r = 0; r < w->n_running; r++)
                    if (strcmp(w->running[r]->msg.id, ids[i]) == 0 && !w->running[r]->lost) {
                        w->running[r]->lost = 1;
                        log_job(rt, CX_LOG_WARN, w->running[r], "lost", 0, 0, -1, -1,
                                "queue entry taken over by another consumer while its handler "
                                "ran (this process stalled longer than the claim TTL)");
                    }
            }
            free(ids);
            free(ptr);
            free(lost);
            continue;
        }
        if (w->n_acks) {
            pthread_mutex_unlock(&w->mu);
            flush_acks(w);
            pthread_mutex_lock(&w->mu);
        }
        if (now >= next_gauges) {
            next_gauges = now + GAUGES_EVERY_MS;
            pthread_mutex_unlock(&w->mu);
            cx_error_t err;
            cx_error_clear(&err);
            (void)cx_runtime_refresh_gauges(rt, &err);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        int64_t until = next_touch < next_gauges ? next_touch : next_gauges;
        if (until > now + ACK_DELAY_MS)
            until = now + ACK_DELAY_MS;
        struct timespec ts;
        deadline_in(&ts, until - now > 0 ? until - now : 1);
        pthread_cond_timedwait(&w->hk_cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void workers_free(cx__workers_t *w)
{
    while (w->head) {
        held_t *h = w->head;
        w->head = h->next;
        held_free(h);
    }
    for (size_t i = 0; i < w->n_tenants; i++)
        free(w->tenants[i].tenant);
    free(w->tenants);
    free(w->running);
    free(w->threads);
    free(w->acks);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->hk_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int cx_runtime_queued(const cx_runtime_t *rt)
{
    return rt && rt->queued;
}

int cx_runtime_start_workers(cx_runtime_t *rt, cx_error_t *err)
{
    if (rt == NULL || !rt->queued)
        return cx_error_set(err, CX_EINVAL, NULL, "workers run only in queued mode");
    pthread_mutex_lock(&rt->workers_mu);
    if (rt->workers) {
        pthread_mutex_unlock(&rt->workers_mu);
        return cx_error_set(err, CX_EINVAL, NULL, "workers already started");
    }
    cx__workers_t *w = calloc(1, sizeof *w);
    unsigned n = rt->cfg.workers;
    if (w == NULL || (w->threads = calloc(n, sizeof *w->threads)) == NULL ||
        (w->running = calloc(n, sizeof *w->running)) == NULL) {
        if (w) {
            free(w->threads);
            free(w);
        }
        pthread_mutex_unlock(&rt->workers_mu);
        return cx_error_set(err, CX_ENOMEM, NULL, "workers: out of memory");
    }
    w->rt = rt;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->hk_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            rc = CX_ENOMEM;
            break;
        }
        w->n_threads++;
        w->alive++;
    }
    if (rc == 0 && pthread_create(&w->hk, NULL, housekeeping_main, w) == 0)
        w->hk_started = 1;
    else
        rc = CX_ENOMEM;
    pthread_mutex_unlock(&w->mu);
    rt->workers = w;
    pthread_mutex_unlock(&rt->workers_mu);
    if (rc != 0) {
        cx_runtime_stop_workers(rt, 0);
        return cx_error_set(err, rc, NULL, "cannot start the worker threads");
    }
    cx_log_record_t r;
    if (cx_log_begin(&r, rt->log, CX_LOG_INFO)) {
        cx_log_set_outcome(&r, "started");
        cx_log_set_int(&r, "workers", n);
        cx_log_set_int(&r, "tenant_concurrency", rt->cfg.tenant_concurrency);
        cx_log_set_int(&r, "prefetch", rt->cfg.prefetch);
        /* The effective settings (defaults filled in), so operators see what runs (at most
         * CX_LOG_MAX_EXTRA fields). */
        cx_log_set_int(&r, "worker_claim_ttl_ms", rt->cfg.worker_claim_ttl_ms);
        cx_log_set_int(&r, "retry_max_attempts", rt->cfg.retry.max_attempts);
        cx_log_set_int(&r, "retry_base_delay_ms", rt->cfg.retry.base_delay_ms);
        cx_log_set_int(&r, "retry_max_delay_ms", rt->cfg.retry.max_delay_ms);
        cx_log_set_int(&r, "retry_max_age_s", rt->cfg.retry.max_age_s);
        cx_log_set_msg(&r, "queue workers started");
        cx_log_emit(&r);
    }
    return 0;
}

int cx_runtime_stop_workers(cx_runtime_t *rt, uint32_t timeout_ms)
{
    if (rt == NULL)
        return 0;
    pthread_mutex_lock(&rt->workers_mu);
    cx__workers_t *w = rt->workers;
    if (w == NULL) {
        pthread_mutex_unlock(&rt->workers_mu);
        return 0;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cv);
    struct timespec ts;
    deadline_in(&ts, timeout_ms);
    while (w->alive > 0) {
        if (timeout_ms == 0)
            pthread_cond_wait(&w->cv, &w->mu);
        else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT && w->alive > 0) {
            pthread_mutex_unlock(&w->mu);
            pthread_mutex_unlock(&rt->workers_mu);
            return CX_ETIMEOUT;
        }
    }
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    flush_acks(w);
    /* Items held but not started go back, due at once, for any process (instead of waiting for
     * the claim TTL to let another consumer reclaim them). The heartbeat still runs meanwhile. */
    for (;;) {
        pthread_mutex_lock(&w->mu);
        held_t *h = w->head;
        if (h) {
            w->head = h->next;
            if (w->tail == h)
                w->tail = NULL;
            w->n_buf--;
        }
        pthread_mutex_unlock(&w->mu);
        if (h == NULL)
            break;
        if (!h->lost) {
            cx_buf_t b;
            cx_buf_init(&b, 64u << 20);
            int lost = 0;
            cx_error_t err;
            cx_error_clear(&err);
            if (cx__job_encode(&h->job, &b) == 0)
                rt->queue->ops->schedule(rt->queue, rt->consumer, h->msg.id, b.data, b.len, 0,
                                         &lost, &err);
            cx_buf_free(&b);
        }
        held_free(h);
    }
    if (w->hk_started) {
        pthread_mutex_lock(&w->mu);
        w->hk_stop = 1;
        pthread_cond_broadcast(&w->hk_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->hk, NULL);
    }
    rt->workers = NULL;
    pthread_mutex_unlock(&rt->workers_mu);
    workers_free(w);
    cx_log_record_t r;
    if (cx_log_begin(&r, rt->log, CX_LOG_INFO)) {
        cx_log_set_outcome(&r, "stopped");
        cx_log_set_msg(&r, "queue workers stopped");
        cx_log_emit(&r);
    }
    return 0;
}

/* ---- Gauges --------------------------------------------------------------------------------- */

int cx_runtime_refresh_gauges(cx_runtime_t *rt, cx_error_t *err)
{
    if (rt == NULL)
        return CX_EINVAL;
    int rc = 0;
    if (rt->queue) {
        cx_queue_stats_t st;
        rc = rt->queue->ops->stats(rt->queue, &st, err);
        if (rc == 0) {
            cx_gauge_set(rt->g_depth, NULL, (double)st.depth);
            cx_gauge_set(rt->g_pending, NULL, (double)st.pending);
            cx_gauge_set(rt->g_scheduled, NULL, (double)st.scheduled);
            cx_gauge_set(rt->g_oldest, NULL, st.oldest_age_s);
        }
    }
    enum { MAX_GROUPS = 256 };
    cx_dlq_count_t *c = malloc(MAX_GROUPS * sizeof *c);
    size_t n = 0;
    if (c == NULL)
        return rc ? rc : CX_ENOMEM;
    int drc = rt->dlq->ops->counts(rt->dlq, c, MAX_GROUPS, &n, err);
    if (drc == 0) {
        pthread_mutex_lock(&rt->gauge_mu);
        if (rt->dead_seen == NULL &&
            (rt->dead_seen = calloc(CX__DEAD_SEEN_MAX, sizeof *rt->dead_seen)) == NULL) {
            pthread_mutex_unlock(&rt->gauge_mu);
            free(c);
            return rc ? rc : CX_ENOMEM;
        }
        /* Groups seen before and absent now went back to zero. */
        for (size_t s = 0; s < rt->n_dead_seen; s++) {
            size_t i = 0;
            while (i < n && strcmp(c[i].group, rt->dead_seen[s].group) != 0)
                i++;
            if (i == n) {
                char g[CX_DLQ_GROUP_MAX + 1];
                snprintf(g, sizeof g, "%s", rt->dead_seen[s].group);
                char *bar = strchr(g, '|');
                if (bar)
                    *bar++ = '\0';
                cx_gauge_set(rt->g_dead, (const char *[]){g, bar ? bar : ""}, 0);
            }
        }
        for (size_t i = 0; i < n; i++) {
            char g[CX_DLQ_GROUP_MAX + 1];
            snprintf(g, sizeof g, "%s", c[i].group);
            char *bar = strchr(g, '|');
            if (bar)
                *bar++ = '\0';
            cx_gauge_set(rt->g_dead, (const char *[]){g, bar ? bar : ""}, (double)c[i].count);
            size_t s = 0;
            while (s < rt->n_dead_seen && strcmp(rt->dead_seen[s].group, c[i].group) != 0)
                s++;
            if (s == rt->n_dead_seen && s < CX__DEAD_SEEN_MAX)
                rt->dead_seen[rt->n_dead_seen++] = c[i];
        }
        pthread_mutex_unlock(&rt->gauge_mu);
    }
    free(c);
    return rc ? rc : drc;
}

/* ---- Set-up --------------------------------------------------------------------------------- */

static void consumer_name(cx_runtime_t *rt)
{
    if (rt->cfg.consumer && rt->cfg.consumer[0]) {
        snprintf(rt->consumer, sizeof rt->consumer, "%s", rt->cfg.consumer);
        return;
    }
    char host[64] = "host";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            *p = '_';
    unsigned char r[4] = {0};
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0, sizeof r);
    snprintf(rt->consumer, sizeof rt->consumer, "%s-%ld-%02x%02x%02x%02x", host, (long)getpid(),
             r[0], r[1], r[2], r[3]);
}

int cx__durable_init(cx_runtime_t *rt, cx_error_t *err)
{
    cx_runtime_config_t *c = &rt->cfg;
    if (c->handler_mode > CX_HANDLER_MODE_QUEUED)
        return cx_error_set(err, CX_EINVAL, "handler_mode", "unknown handler mode");
    rt->queued = c->handler_mode == CX_HANDLER_MODE_QUEUED ||
                 (c->handler_mode == CX_HANDLER_MODE_AUTO && c->queue != NULL);
    if (c->retry.max_attempts == 0)
        c->retry.max_attempts = 10;
    if (c->retry.base_delay_ms == 0)
        c->retry.base_delay_ms = 1000;
    if (c->retry.max_delay_ms == 0)
        c->retry.max_delay_ms = 600000;
    if (c->retry.max_age_s == 0)
        c->retry.max_age_s = 86400;
    if (c->queued_claim_ttl_ms == 0)
        c->queued_claim_ttl_ms = 900000;
    if (c->worker_claim_ttl_ms == 0)
        c->worker_claim_ttl_ms = 30000;
    if (c->workers == 0) {
        /* A worker waits on a Redis round trip per item (its completion): several per core
         * keep the cores busy (docs/benchmarks.md, queued mode). */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = 8 * (cores > 0 ? (unsigned)cores : 1);
    }
    if (c->tenant_concurrency == 0)
        c->tenant_concurrency = (c->workers + 1) / 2;
    if (c->prefetch == 0)
        c->prefetch = c->workers;
    if (rt->queued && (c->handler_deadline_ms >= c->worker_claim_ttl_ms ||
                       c->handler_deadline_ms >= c->queued_claim_ttl_ms))
        return cx_error_set(err, CX_ECONFIG, "handler_deadline_ms",
                            "the handler deadline must be shorter than the worker claim TTL and "
                            "the queued claim TTL");
    consumer_name(rt);
    c->consumer = rt->consumer;
    int rc;
    if (c->dlq) {
        rt->dlq = c->dlq;
    } else {
        if ((rc = cx_dlq_embedded(rt->environment, &rt->dlq, err)) != 0)
            return rc;
        rt->own_dlq = 1;
    }
    if (rt->queued) {
        if (c->queue) {
            rt->queue = c->queue;
        } else {
            if ((rc = cx_queue_embedded(rt->environment, NULL, &rt->queue, err)) != 0)
                return rc;
            rt->own_queue = 1;
        }
    } else {
        rt->queue = c->queue; /* replays enqueue there when one is given */
    }
    if (c->n_rate_limits) {
        rt->rules = calloc(c->n_rate_limits, sizeof *rt->rules);
        if (rt->rules == NULL)
            return cx_error_set(err, CX_ENOMEM, NULL, "rate limits: out of memory");
        for (size_t i = 0; i < c->n_rate_limits; i++) {
            const cx_rate_limit_rule_t *r = &c->rate_limits[i];
            cx__rule_t *d = &rt->rules[rt->n_rules++];
            if (!(r->per_second >= 0) || (r->per_second > 0 && r->per_second < 1e-6))
                return cx_error_set(err, CX_EINVAL, "rate_limits", "per_second out of range");
            if (r->tenant && strcmp(r->tenant, "*") != 0 && (d->tenant = strdup(r->tenant)) == NULL)
                return cx_error_set(err, CX_ENOMEM, NULL, "rate limits: out of memory");
            if (r->capability && strcmp(r->capability, "*") != 0 &&
                (d->capability = strdup(r->capability)) == NULL)
                return cx_error_set(err, CX_ENOMEM, NULL, "rate limits: out of memory");
            d->interval_us = r->per_second > 0 ? (uint64_t)(1e6 / r->per_second + 0.5) : 0;
            if (r->per_second > 0 && d->interval_us == 0)
                d->interval_us = 1;
            d->burst = r->burst ? r->burst : r->per_second >= 1 ? (uint32_t)r->per_second : 1;
            d->per_day = r->per_day;
        }
        if (c->ratelimit) {
            rt->ratelimit = c->ratelimit;
        } else {
            if ((rc = cx_ratelimit_embedded(rt->environment, &rt->ratelimit, err)) != 0)
                return rc;
            rt->own_ratelimit = 1;
        }
    }
    c->rate_limits = NULL;
    cx_metrics_t *m = rt->metrics;
    static const char *const CONN_CAP[] = {"connector", "capability", NULL};
    rt->m_queued = cx_metrics_counter(m, "events_queued_total",
                                      "Events appended to the work queue (queued mode).", CONN_CAP);
    rt->m_retried = cx_metrics_counter(
        m, "events_retried_total", "Transient handler failures scheduled for a retry.", CONN_CAP);
    rt->m_rate_limited =
        cx_metrics_counter(m, "rate_limited_total", "Items delayed by a rate limit or daily quota.",
                           (const char *[]){"tenant", NULL});
    rt->g_depth = cx_metrics_gauge(m, "queue_depth",
                                   "Items in the work queue (waiting and being handled).", NULL);
    rt->g_pending = cx_metrics_gauge(m, "queue_pending",
                                     "Items delivered to a worker and not yet acknowledged.", NULL);
    rt->g_scheduled = cx_metrics_gauge(
        m, "queue_scheduled", "Items in the retry schedule (retries, rate-limited).", NULL);
    rt->g_oldest = cx_metrics_gauge(m, "queue_oldest_age_seconds",
                                    "Age of the oldest item in the work queue.", NULL);
    rt->g_dead = cx_metrics_gauge(m, "dead_letters", "Items in the dead-letter store.", CONN_CAP);
    return 0;
}

void cx__durable_free(cx_runtime_t *rt)
{
    cx_runtime_stop_workers(rt, 0);
    if (rt->own_queue)
        cx_queue_destroy(rt->queue);
    if (rt->own_dlq)
        cx_dlq_destroy(rt->dlq);
    if (rt->own_ratelimit)
        cx_ratelimit_destroy(rt->ratelimit);
    for (size_t i = 0; i < rt->n_rules; i++) {
        free(rt->rules[i].tenant);
        free(rt->rules[i].capability);
    }
    free(rt->rules);
    rt->rules = NULL;
    rt->n_rules = 0;
    free(rt->dead_seen);
    rt->dead_seen = NULL;
}
