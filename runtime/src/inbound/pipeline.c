/* The webhook pipeline (docs/pipeline.md): one path for every connector.
 *
 * A request runs start to finish in the calling thread with one arena for everything it
 * decodes. The only shared state it touches is read-mostly (connectors, accounts, handlers,
 * fixed after boot), the secrets cache (a read lock), the stores (dedupe, queue, dead letters:
 * their own locking or Redis), the logger and the metrics (both thread-safe).
 *
 * After the claims, items run inline (handlers here, completions after) or, in queued mode
 * (docs/durable-processing.md), are appended to the work queue in one round trip and answered
 * "queued"; workers.c runs them. Items that failed permanently are dead-lettered in both
 * modes. The all-items-succeed path costs no more than before: dead letters are written only
 * when something failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/secrets.h"
#include "core/words.h"
#include "cx/runtime.h"
#include "inbound/job.h"
#include "inbound/runtime_internal.h"
#include "schema/access.h"

#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_PROCESSING_TTL_MS 30000u
#define DEFAULT_DEADLINE_MS 10000u
#define DEFAULT_ARENA (8u << 20)

/* An item's outcome: one of these four strings, compared by address (they are what the
 * response and the logs print). */
static const char OUT_PROCESSED[] = "processed";
static const char OUT_DEDUPED[] = "deduped";
static const char OUT_QUEUED[] = "queued";
static const char OUT_FAILED[] = "failed";

/* Per-item state while a request runs. */
typedef struct {
    const cx_event_t *ev;
    const char *tenant;
    char *key; /* dedupe key (arena), NULL when the item failed before */
    size_t keylen;
    int rc;              /* 0 or the failure */
    int permanent;       /* the failure is permanent: no redelivery helps */
    const char *outcome; /* OUT_*, NULL while undecided */
    int claim;           /* index into the claim array, -1 when not claimed */
    double latency_ms;
} item_t;

static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "CX_EUNKNOWN_ACCOUNT" -> "UNKNOWN_ACCOUNT": the error code users see in responses/logs. */
const char *cx__code_name(int rc)
{
    const char *n = cx_err_name(rc);
    return strncmp(n, "CX_E", 4) == 0 ? n + 4 : n;
}

/* A correlation id: kept from X-Correlation-Id when it is a sane token, else generated from a
 * per-process random prefix and a counter (unique without a system call per request). */
static const char *correlation_id(cx_runtime_t *rt, const cx_request_t *req, char *buf, size_t cap)
{
    const char *h = cx_request_header(req, "X-Correlation-Id");
    if (h) {
        size_t n = strlen(h);
        int ok = n > 0 && n < cap && n <= 128;
        for (size_t i = 0; ok && i < n; i++)
            ok = (h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
                 (h[i] >= '0' && h[i] <= '9') || h[i] == '-' || h[i] == '_' || h[i] == '.';
        if (ok)
            return h;
    }
    uint64_t n = atomic_fetch_add_explicit(&rt->request_counter, 1, memory_order_relaxed);
    /* "<instance>-<counter as at least 12 hex digits>", without printf (every request). */
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    size_t nd = 0;
    do {
        digits[nd++] = hex[n & 0xf];
        n >>= 4;
    } while (n);
    while (nd < 12)
        digits[nd++] = '0';
    size_t il = strlen(rt->instance_id); /* < 24; cap is 64 */
    if (il + 1 + nd + 1 > cap)
        return rt->instance_id;
    memcpy(buf, rt->instance_id, il);
    buf[il] = '-';
    for (size_t i = 0; i < nd; i++)
        buf[il + 1 + i] = digits[nd - 1 - i];
    buf[il + 1 + nd] = '\0';
    return buf;
}

static void json_str(cx_buf_t *b, const char *s)
{
    cx_buf_putc(b, '"');
    size_t start = 0, i = 0;
    for (; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            cx_buf_append(b, s + start, i - start);
            if (c == '"' || c == '\\') {
                cx_buf_putc(b, '\\');
                cx_buf_putc(b, (char)c);
            } else {
                cx_buf_printf(b, "\\u%04x", c);
            }
            start = i + 1;
        }
    }
    cx_buf_append(b, s + start, i - start);
    cx_buf_putc(b, '"');
}

/* A response without items (401, 400, 413, 404, 405, 503 before parsing). */
static void reject(cx_runtime_t *rt, const char *connector, const char *cid, cx_response_t *resp,
                   int status, int rc, const char *msg, double t0)
{
    resp->status = status;
    resp->content_type = "application/json";
    cx_buf_printf(resp->body, "{\"ok\":false,\"correlationId\":");
    json_str(resp->body, cid);
    cx_buf_printf(resp->body, ",\"errorCode\":\"%s\",\"message\":", cx__code_name(rc));
    json_str(resp->body, msg);
    cx_buf_puts(resp->body, "}");
    cx_log_record_t r;
    if (cx_log_begin(&r, rt->log, status >= 500 ? CX_LOG_ERROR : CX_LOG_WARN)) {
        cx_log_set_connector(&r, connector);
        cx_log_set_correlation_id(&r, cid);
        cx_log_set_outcome(&r, "rejected");
        cx_log_set_error_code(&r, cx__code_name(rc));
        cx_log_set_error_class(&r, cx_err_class(rc));
        cx_log_set_int(&r, "status", status);
        cx_log_set_latency_ms(&r, mono_ms_f() - t0);
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
    cx__count_request(rt, connector, status, mono_ms_f() - t0);
}

/* The tenant_id field of a message type: a string field of that name, or NULL. */
static const ProtobufCFieldDescriptor *tenant_field(const ProtobufCMessageDescriptor *desc)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(desc, "tenant_id");
    return fd && fd->type == PROTOBUF_C_TYPE_STRING && !cx__is_repeated(fd) ? fd : NULL;
}

/* Sets the message's tenant_id field, when its type has one, to the resolved tenant. */
void cx__stamp_tenant(ProtobufCMessage *msg, const char *tenant)
{
    const ProtobufCFieldDescriptor *fd = tenant_field(msg->descriptor);
    if (fd)
        *(const char **)cx__field_ptr(msg, fd) = tenant;
}

static const char *first_violation(const cx_violations_t *v, char *buf, size_t cap)
{
    if (v->count == 0)
        return "invalid";
    snprintf(buf, cap, "%s: %s", v->items[0].path, v->items[0].rule);
    return buf;
}

static void fail(item_t *it, int rc, int permanent)
{
    it->rc = rc;
    it->permanent = permanent;
    it->outcome = OUT_FAILED;
}

/* A hash of a key for the table below, eight bytes per step (keys are tens of bytes; a byte
 * at a time cost more than the rest of the duplicate check). Not keyed: the table lives for
 * one batch of at most a request's items, so a crafted collision costs only probes. */
static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (; n >= 8; k += 8, n -= 8) {
        h = (h ^ cx__word(k)) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, k, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static int same_key(const item_t *a, const item_t *b)
{
    return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

/* Marks the later of two items with the same key as deduped (a duplicate inside one batch). */
static void dedupe_in_batch(item_t *items, size_t n, cx_arena_t *arena)
{
    if (n < 2)
        return;
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    uint32_t *slots = cx_arena_alloc(arena, cap * sizeof *slots); /* index + 1, 0 = empty */
    for (size_t i = 0; i < n; i++) {
        if (items[i].key == NULL)
            continue;
        uint64_t h = key_hash(items[i].key, items[i].keylen);
        if (slots == NULL) { /* arena exhausted: quadratic fallback */
            for (size_t j = 0; j < i; j++)
                if (items[j].key && items[j].outcome == NULL && same_key(&items[i], &items[j])) {
                    items[i].outcome = OUT_DEDUPED;
                    break;
                }
            continue;
        }
        for (size_t s = h & (cap - 1);; s = (s + 1) & (cap - 1)) {
            if (slots[s] == 0) {
                slots[s] = (uint32_t)i + 1;
                break;
            }
            if (same_key(&items[slots[s] - 1], &items[i])) {
                items[i].outcome = OUT_DEDUPED;
                break;
            }
        }
    }
}

const cx_handler_t *cx__handler_for(const cx_runtime_t *rt, const char *capability)
{
    const cx_handler_t *fallback = NULL;
    for (size_t i = 0; i < rt->n_handlers; i++) {
        if (capability && strcmp(rt->handlers[i].capability, capability) == 0)
            return &rt->handlers[i];
        if (strcmp(rt->handlers[i].capability, "*") == 0)
            fallback = &rt->handlers[i];
    }
    return fallback;
}

static void log_item(cx_runtime_t *rt, const char *connector, const char *cid, size_t index,
                     const item_t *it)
{
    cx_log_record_t r;
    int failed = it->outcome && it->outcome == OUT_FAILED;
    if (!cx_log_begin(&r, rt->log, failed ? CX_LOG_WARN : CX_LOG_INFO))
        return;
    cx_log_set_connector(&r, connector);
    cx_log_set_correlation_id(&r, cid);
    cx_log_set_tenant_id(&r, it->tenant);
    if (it->ev->meta) {
        cx_log_set_capability(&r, it->ev->meta->capability);
        cx_log_set_event_type(&r, it->ev->meta->event_type);
    }
    cx_log_set_dedupe_key(&r, it->key);
    cx_log_set_dedupe_hit(&r, it->outcome && it->outcome == OUT_DEDUPED);
    cx_log_set_outcome(&r, it->outcome);
    cx_log_set_latency_ms(&r, it->latency_ms);
    if (it->outcome != OUT_QUEUED && it->outcome != OUT_DEDUPED)
        cx_log_set_attempt(&r, 1);
    cx_log_set_int(&r, "index", (int64_t)index);
    if (it->rc) {
        cx_log_set_error_code(&r, cx__code_name(it->rc));
        cx_log_set_error_class(&r, cx_err_class(it->rc));
        cx_log_set_int(&r, "permanent", it->permanent);
    }
    cx_log_set_msg(&r, failed                      ? "item failed"
                       : it->outcome == OUT_QUEUED ? "item queued"
                                                   : "item handled");
    cx_log_emit(&r);
}

/* Writers into memory reserved with cx_buf_reserve (the caller bounds the length). */
static char *put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT(p, lit) put_lit((p), (lit), sizeof(lit) - 1)

static char *put_uint(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = sizeof tmp;
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put_lit(p, tmp + n, sizeof tmp - n);
}

/* Whether any of the 8 bytes at s is '"', '\\' or a control character. */
static int word_needs_escape(const char *s)
{
    uint64_t w = cx__word(s);
    return (cx__word_has(w, '"') | cx__word_has(w, '\\') | cx__word_has_below(w, 0x20)) != 0;
}

/* A JSON string; at most 6 bytes per input byte plus 2. */
static char *put_json_str(char *p, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    *p++ = '"';
    size_t i = 0;
    while (i < len) {
        /* Runs without a byte to escape (all of a key or a type, in practice) are copied
         * whole; the scan looks at eight bytes per step. */
        size_t run = i;
        while (run + 8 <= len && !word_needs_escape(s + run))
            run += 8;
        while (run < len && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20)
            run++;
        p = put_lit(p, s + i, run - i);
        if (run == len)
            break;
        unsigned char c = (unsigned char)s[run];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else {
            p = PUT(p, "\\u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
        i = run + 1;
    }
    *p++ = '"';
    return p;
}

/* The response body: one reserve per piece, not an append per token (it is on every
 * request's path). */
static void write_results(cx_buf_t *b, const char *cid, int ok, const item_t *items, size_t n,
                          unsigned processed, unsigned queued, unsigned deduped, unsigned failed)
{
    size_t cid_len = strlen(cid);
    char *p = cx_buf_reserve(b, 160 + 6 * cid_len + 5 * 20);
    if (p == NULL)
        return;
    char *start = p;
    p = ok ? PUT(p, "{\"ok\":true,\"correlationId\":") : PUT(p, "{\"ok\":false,\"correlationId\":");
    p = put_json_str(p, cid, cid_len);
    p = PUT(p, ",\"summary\":{\"total\":");
    p = put_uint(p, n);
    p = PUT(p, ",\"processed\":");
    p = put_uint(p, processed);
    p = PUT(p, ",\"queued\":");
    p = put_uint(p, queued);
    p = PUT(p, ",\"deduped\":");
    p = put_uint(p, deduped);
    p = PUT(p, ",\"failed\":");
    p = put_uint(p, failed);
    p = PUT(p, "},\"results\":[");
    cx_buf_commit(b, (size_t)(p - start));
    for (size_t i = 0; i < n; i++) {
        const item_t *it = &items[i];
        const char *type = NULL;
        if (it->ev->meta)
            type = it->ev->meta->event_type ? it->ev->meta->event_type : it->ev->meta->full_name;
        size_t tlen = type ? strlen(type) : 0, klen = it->key ? it->keylen : 0;
        const char *code = it->rc ? cx__code_name(it->rc) : "";
        const char *cls = it->rc ? cx_err_class(it->rc) : "";
        size_t need = 200 + 6 * (tlen + klen) + strlen(it->outcome) + strlen(code) + strlen(cls);
        if ((p = cx_buf_reserve(b, need)) == NULL)
            return;
        start = p;
        p = i ? PUT(p, ",{\"index\":") : PUT(p, "{\"index\":");
        p = put_uint(p, i);
        if (type) {
            p = PUT(p, ",\"type\":");
            p = put_json_str(p, type, tlen);
        }
        if (it->key) {
            p = PUT(p, ",\"dedupeKey\":");
            p = put_json_str(p, it->key, klen);
        }
        p = PUT(p, ",\"outcome\":\"");
        p = put_lit(p, it->outcome, strlen(it->outcome));
        *p++ = '"';
        if (it->rc) {
            p = PUT(p, ",\"errorCode\":\"");
            p = put_lit(p, code, strlen(code));
            p = PUT(p, "\",\"errorClass\":\"");
            p = put_lit(p, cls, strlen(cls));
            p = it->permanent ? PUT(p, "\",\"permanent\":true") : PUT(p, "\",\"permanent\":false");
        }
        *p++ = '}';
        cx_buf_commit(b, (size_t)(p - start));
    }
    cx_buf_puts(b, "]}");
}

void cx__pending_add(cx_runtime_t *rt, const cx_dedupe_item_t *items, size_t n)
{
    pthread_mutex_lock(&rt->pending_mu);
    for (size_t i = 0; i < n; i++) {
        if (rt->n_pending == rt->cap_pending) {
            size_t cap = rt->cap_pending ? rt->cap_pending * 2 : 64;
            cx_dedupe_item_t *p;
            if (cap > CX__MAX_PENDING || (p = realloc(rt->pending, cap * sizeof *p)) == NULL)
                break; /* bounded: beyond it, redeliveries may run items again (logged) */
            rt->pending = p;
            rt->cap_pending = cap;
        }
        cx_dedupe_item_t it = items[i];
        if ((it.key = strdup(items[i].key)) == NULL)
            break;
        rt->pending[rt->n_pending++] = it;
    }
    pthread_mutex_unlock(&rt->pending_mu);
}

void cx__pending_flush(cx_runtime_t *rt)
{
    if (atomic_load_explicit(&rt->n_pending, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt->pending_mu);
    cx_error_t err;
    cx_error_clear(&err);
    if (rt->n_pending &&
        rt->dedupe->ops->complete(rt->dedupe, rt->pending, rt->n_pending, &err) == 0) {
        for (size_t i = 0; i < rt->n_pending; i++)
            free((char *)rt->pending[i].key);
        rt->n_pending = 0;
    }
    pthread_mutex_unlock(&rt->pending_mu);
}

void cx__pending_free(cx_runtime_t *rt)
{
    for (size_t i = 0; i < rt->n_pending; i++)
        free((char *)rt->pending[i].key);
    free(rt->pending);
    rt->pending = NULL;
    rt->n_pending = rt->cap_pending = 0;
}

/* Inline mode: runs the claimed items' handlers in this thread. Their completions and
 * releases follow in settle(), for every request of the call at once. */
static void run_handlers(cx_runtime_t *rt, const char *cname, const char *cid, item_t *items,
                         size_t n, cx_dedupe_item_t *claims, cx_arena_t *arena, const char ***msgs)
{
    /* Handlers, inline. One clock reading ends an item's handler and starts the next one's;
     * the handler of a capability is looked up again only when the capability changes. */
    double clock_ms = 0;
    const char *last_cap = NULL;
    const cx_handler_t *h = NULL;
    /* Latencies go to the histogram a run at a time (one series lookup, a few atomics). */
    double lat[64];
    size_t nlat = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->claim < 0)
            continue;
        cx_dedupe_item_t *cl = &claims[it->claim];
        if (cl->state == CX_CLAIM_DONE) {
            it->outcome = OUT_DEDUPED;
            it->claim = -1;
            continue;
        }
        if (cl->state != CX_CLAIM_OWNED) { /* another process holds it right now */
            fail(it, CX_EIN_PROGRESS, 0);
            it->claim = -1;
            continue;
        }
        if (last_cap == NULL || it->ev->meta->capability != last_cap || nlat == 64) {
            if (nlat)
                cx__observe_handlers(rt, cname, last_cap, lat, nlat);
            nlat = 0;
            h = cx__handler_for(rt, it->ev->meta->capability);
            last_cap = it->ev->meta->capability;
        }
        double h0 = clock_ms ? clock_ms : mono_ms_f();
        int hrc;
        if (h == NULL) {
            hrc = CX_ENOT_IMPLEMENTED;
        } else {
            cx_item_t view = {it->ev,  cname, it->tenant,
                              it->key, cid,   (int64_t)h0 + rt->cfg.handler_deadline_ms,
                              1};
            cx_error_t herr;
            cx_error_clear(&herr);
            hrc = h->fn(h->ud, &view, &herr);
            /* The failure's text, for a dead letter; allocated only when something fails (the
             * per-item state stays small: the request arena's chunks are sized to it). */
            if (hrc != 0 && herr.message[0] &&
                (*msgs || (*msgs = cx_arena_alloc(arena, n * sizeof **msgs))))
                (*msgs)[i] = cx_arena_strndup(arena, herr.message, strlen(herr.message));
        }
        clock_ms = mono_ms_f();
        it->latency_ms = clock_ms - h0;
        lat[nlat++] = it->latency_ms;
        if (hrc == 0) {
            it->outcome = OUT_PROCESSED;
            if (it->latency_ms > rt->cfg.handler_deadline_ms) {
                cx_log_record_t r;
                if (cx_log_begin(&r, rt->log, CX_LOG_WARN)) {
                    cx_log_set_connector(&r, cname);
                    cx_log_set_correlation_id(&r, cid);
                    cx_log_set_dedupe_key(&r, it->key);
                    cx_log_set_latency_ms(&r, it->latency_ms);
                    cx_log_set_msg(&r, "handler exceeded its deadline; its claim may have lapsed");
                    cx_log_emit(&r);
                }
            }
        } else {
            fail(it, hrc == CX_EHANDLER_PERMANENT || hrc == CX_ENOT_IMPLEMENTED ? hrc : CX_EHANDLER,
                 hrc == CX_EHANDLER_PERMANENT || hrc == CX_ENOT_IMPLEMENTED);
        }
    }
    if (nlat)
        cx__observe_handlers(rt, cname, last_cap, lat, nlat);
}

/* Asks the rate limiter about the claimed items (claim >= 0, OWNED; nowned of them) in one
 * round trip. Returns their results in item order, or NULL when no rule applies or the limiter
 * did not answer (then workers ask before running them). */
static cx_ratelimit_result_t *rate_limit_batch(cx_runtime_t *rt, const item_t *items, size_t n,
                                               const cx_dedupe_item_t *claims, size_t nowned,
                                               cx_arena_t *arena)
{
    (void)claims;
    cx_ratelimit_request_t *req = cx_arena_alloc(arena, nowned * sizeof *req);
    cx_ratelimit_check_t *checks = cx_arena_alloc(arena, 2 * nowned * sizeof *checks);
    char(*keys)[2][CX_RATELIMIT_KEY_MAX + 1] = cx_arena_alloc(arena, nowned * sizeof *keys);
    cx_ratelimit_result_t *out = cx_arena_alloc(arena, nowned * sizeof *out);
    if (!req || !checks || !keys || !out || nowned > CX_RATELIMIT_BATCH_MAX)
        return NULL;
    size_t k = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].claim < 0)
            continue;
        req[k].checks = &checks[2 * k];
        req[k].n = cx__rate_checks(rt, items[i].tenant, items[i].ev->meta->capability,
                                   &checks[2 * k], keys[k]);
        any += req[k].n;
        k++;
    }
    if (any == 0)
        return NULL;
    cx_error_t err;
    cx_error_clear(&err);
    if (rt->ratelimit->ops->acquire(rt->ratelimit, req, k, out, &err) != 0) {
        cx_log_record_t r;
        if (cx_log_begin(&r, rt->log, CX_LOG_WARN)) {
            cx_log_set_error(&r, err.code ? err.code : CX_EUNAVAILABLE);
            cx_log_set_msg(&r, "rate limiter unreachable: items queued, workers will ask");
            cx_log_emit(&r);
        }
        return NULL;
    }
    return out;
}

/* Queued mode: every claimed item goes to the work queue, in one round trip for all the
 * requests of a call. An item another delivery holds (IN_PROGRESS) is durably queued or being
 * handled by that delivery: deduped. Items that could not be made durable fail: their claims
 * are released (the provider's redelivery claims them again) and the answer is 503. */
/* What a request hands to the queue: its items' payloads, and the claims to release. */
typedef struct {
    cx_queue_payload_t *pl;
    size_t npl;
    cx_dedupe_item_t *rel;
    size_t nrel;
} enqueue_t;

/* Queued mode, first half: the payloads of a request's claimed items (rate limits asked in
 * one round trip). The enqueue itself is one call for every request (enqueue_all). */
static void enqueue_prepare(cx_runtime_t *rt, const char *cname, const char *cid, item_t *items,
                            size_t n, cx_dedupe_item_t *claims, size_t nclaims, cx_arena_t *arena,
                            enqueue_t *q)
{
    cx_queue_payload_t *pl = nclaims ? cx_arena_alloc(arena, nclaims * sizeof *pl) : NULL;
    cx_dedupe_item_t *rel = nclaims ? cx_arena_alloc(arena, nclaims * sizeof *rel) : NULL;
    size_t npl = 0, nrel = 0, nowned = 0;
    int64_t first_ms = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->claim < 0)
            continue;
        if (claims[it->claim].state != CX_CLAIM_OWNED) {
            it->outcome = OUT_DEDUPED;
            it->claim = -1;
            continue;
        }
        nowned++;
    }
    /* Rate limits: one round trip admits every item now or reserves its slot; a delayed item
     * goes straight into the schedule, so workers never see it before its time. */
    cx_ratelimit_result_t *adm = NULL;
    if (rt->ratelimit && nowned)
        adm = rate_limit_batch(rt, items, n, claims, nowned, arena);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->claim < 0)
            continue;
        cx_dedupe_item_t *cl = &claims[it->claim];
        const cx_ratelimit_result_t *ad = adm ? &adm[k++] : NULL;
        if (first_ms == 0)
            first_ms = cx__now_wall_ms();
        size_t packed = it->ev->msg ? protobuf_c_message_get_packed_size(it->ev->msg) : 0;
        uint8_t *ev = pl ? cx_arena_alloc(arena, packed ? packed : 1) : NULL;
        size_t cap = packed + 2048 + strlen(it->key) + strlen(cid);
        char *mem = ev ? cx_arena_alloc(arena, cap) : NULL;
        if (mem == NULL) {
            fail(it, CX_ELIMIT, 0);
            if (rel)
                rel[nrel++] = *cl;
            it->claim = -1;
            continue;
        }
        protobuf_c_message_pack(it->ev->msg, ev);
        cx__job_t job = {.connector = cname,
                         .type = it->ev->meta->full_name,
                         .capability = it->ev->meta->capability,
                         .tenant = it->tenant,
                         .account = it->ev->account_id,
                         .key = it->key,
                         .done_ttl_s = cl->done_ttl_s,
                         .correlation_id = cid,
                         .first_ms = first_ms,
                         .event = ev,
                         .event_len = packed};
        memcpy(job.token, cl->token, sizeof job.token);
        uint32_t delay = 0;
        if (ad) {
            /* Counted in the buckets (now or at a reserved slot): workers do not ask again.
             * Over a daily quota nothing was counted: the worker asks when it is due. */
            if (ad->reserved || ad->delay_ms == 0)
                job.flags |= CX__JOB_ADMITTED;
            delay = ad->delay_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ad->delay_ms;
            if (delay)
                cx_counter_inc(rt->m_rate_limited, (const char *[]){it->tenant}, 1);
        }
        cx_buf_t b;
        cx_buf_init_fixed(&b, mem, cap);
        if (cx__job_encode(&job, &b) != 0) {
            fail(it, CX_ELIMIT, 0);
            if (rel)
                rel[nrel++] = *cl;
            it->claim = -1;
            continue;
        }
        pl[npl++] = (cx_queue_payload_t){b.data, b.len, delay};
    }
    *q = (enqueue_t){pl, npl, rel, nrel};
}

/* Queued mode, second half, after the enqueue (down: it failed): items are answered queued,
 * or failed with their claims released. Returns down. */
static int enqueue_finish(cx_runtime_t *rt, const char *cname, const char *cid, item_t *items,
                          size_t n, cx_dedupe_item_t *claims, cx_arena_t *arena, enqueue_t *q,
                          int down)
{
    cx_queue_payload_t *pl = q->pl;
    size_t npl = q->npl, nrel = q->nrel;
    cx_dedupe_item_t *rel = q->rel;
    down = down && npl;
    if (down) {
        cx_log_record_t r;
        if (cx_log_begin(&r, rt->log, CX_LOG_ERROR)) {
            cx_log_set_connector(&r, cname);
            cx_log_set_correlation_id(&r, cid);
            cx_log_set_error(&r, CX_EUNAVAILABLE);
            cx_log_set_msg(&r, "work queue unreachable: items not queued, claims released");
            cx_log_emit(&r);
        }
    }
    /* Delays longer than the claim's TTL: the claim must outlive them, so a provider
     * duplicate meanwhile is still deduped (best effort: a lapsed claim is taken again by the
     * worker, and a duplicate then never runs twice either). */
    cx_dedupe_item_t *longer = !down && npl ? cx_arena_alloc(arena, npl * sizeof *longer) : NULL;
    size_t nlonger = 0;
    uint32_t longest = 0;
    for (size_t i = 0, p = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->claim < 0)
            continue;
        if (down) {
            fail(it, CX_EUNAVAILABLE, 0);
            if (rel)
                rel[nrel++] = claims[it->claim];
        } else {
            it->outcome = OUT_QUEUED;
            uint32_t d = p < npl ? pl[p].delay_ms : 0;
            if (longer && d > rt->cfg.queued_claim_ttl_ms / 2) {
                longer[nlonger++] = claims[it->claim];
                if (d > longest)
                    longest = d;
            }
        }
        p++;
        it->claim = -1;
    }
    if (nlonger) {
        cx_error_t lerr;
        cx_error_clear(&lerr);
        uint64_t ttl = (uint64_t)longest + rt->cfg.queued_claim_ttl_ms;
        rt->dedupe->ops->renew(rt->dedupe, longer, nlonger,
                               ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl, &lerr);
    }
    if (nrel) {
        cx_error_t rerr;
        cx_error_clear(&rerr);
        rt->dedupe->ops->release(rt->dedupe, rel, nrel, &rerr);
    }
    return down;
}

/* Dead-letters the items that failed permanently (invalid, unknown account, a handler's
 * permanent failure). Returns 1 when the dead-letter store could not take them (503: the
 * redelivery tries again). */
static int dead_letter_failed(cx_runtime_t *rt, const char *cname, const char *cid,
                              const cx_request_t *req, item_t *items, size_t n, const char **msgs,
                              cx_arena_t *arena, cx_error_t *err)
{
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        nd += items[i].outcome && items[i].permanent && items[i].outcome == OUT_FAILED;
    if (nd == 0)
        return 0;
    cx__dead_item_t *d = cx_arena_alloc(arena, nd * sizeof *d);
    if (d == NULL)
        return 1;
    int64_t now = cx__now_wall_ms();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (!(it->outcome && it->permanent && it->outcome == OUT_FAILED))
            continue;
        int invalid = it->rc != CX_EHANDLER_PERMANENT && it->rc != CX_ENOT_IMPLEMENTED;
        d[k++] =
            (cx__dead_item_t){.connector = cname,
                              .ev = it->ev,
                              .tenant = it->tenant,
                              .key = it->key,
                              .done_ttl_s = it->ev->meta ? it->ev->meta->dedupe_ttl_seconds : 0,
                              .correlation_id = cid,
                              .reason = invalid ? "invalid" : "permanent",
                              .code = it->rc,
                              .message = msgs && msgs[i] ? msgs[i] : it->ev->error_detail,
                              .attempts = invalid ? 0 : 1,
                              .first_ms = now,
                              .index = i};
    }
    return cx__dead_letter_items(rt, d, nd, req->body, req->body_len, err) != 0;
}

/* ---- One call, many requests ----------------------------------------------------------------
 *
 * cx_runtime_handle_many runs each request through the same steps as cx_runtime_handle, in
 * three stages: prepare (verify, parse, validate, tenant, dedupe key: each request alone),
 * then one claim call to the dedupe store for the items of every request, then handlers (or
 * the queue) for each request, then one completion call (and one release call) for every
 * request, then each request's response. A store round trip then carries the items of
 * every request in the call, which is what lets one thread keep up with many requests when
 * the store is Redis. cx_runtime_handle is the same with one request. */

typedef struct {
    const char *cname; /* NULL: answered in prepare (rejected, or a GET handshake) */
    const char *cid;
    char cidbuf[64];
    double t0;
    cx_arena_t arena;
    item_t *items;
    size_t n;
    cx_dedupe_item_t *claims;
    size_t nclaims;
    int store_down;
    const char **msgs;
} exchange_state_t;

/* Verify, parse, validate, tenant, dedupe key. Leaves x->cname NULL when the request is
 * already answered. */
static void prepare(cx_runtime_t *rt, const cx_exchange_t *ex, exchange_state_t *x)
{
    const cx_request_t *req = ex->req;
    cx_response_t *resp = ex->resp;
    x->t0 = mono_ms_f();
    x->cid = correlation_id(rt, req, x->cidbuf, sizeof x->cidbuf);
    const cx_connector_t *c = cx_runtime_connector(rt, ex->connector_id);
    if (c == NULL) {
        reject(rt, "unknown", x->cid, resp, 404, CX_ENOTFOUND, "no such connector", x->t0);
        return;
    }
    const char *cname = c->manifest->id;
    if (req->body_len > rt->cfg.max_body_bytes) {
        reject(rt, cname, x->cid, resp, 413, CX_ETOO_LARGE, "request body too large", x->t0);
        return;
    }
    cx_arena_init(&x->arena, NULL, rt->cfg.arena_limit);
    cx_ctx_t ctx = {rt, cname, cx_clock_now(&rt->cfg.clock), &x->arena};
    cx_error_t err;
    cx_error_clear(&err);
    int is_get = strcmp(req->method, "GET") == 0;
    if (is_get || strcmp(req->method, "POST") != 0) {
        if (!is_get || c->handshake == NULL) {
            reject(rt, cname, x->cid, resp, 405, CX_EINVAL, "method not allowed", x->t0);
        } else {
            resp->status = 200;
            resp->content_type = "text/plain";
            if (c->handshake(c, &ctx, req, resp, &err) != 0 && resp->status < 400)
                resp->status = 403;
            cx__count_request(rt, cname, resp->status, mono_ms_f() - x->t0);
        }
        cx_arena_release(&x->arena);
        return;
    }
    if (c->manifest->inbound_auth != CX_AUTH_NONE) {
        int rc = c->verify(c, &ctx, req, &err);
        if (rc != 0) {
            int status = rc == CX_EBAD_SIGNATURE ? 401 : 503;
            reject(rt, cname, x->cid, resp, status, rc, err.message[0] ? err.message : "unverified",
                   x->t0);
            cx_arena_release(&x->arena);
            return;
        }
    }
    cx_parse_out_t out = {NULL, 0, 0, &x->arena};
    int rc = c->parse(c, &ctx, req, &out, &err);
    if (rc != 0) {
        int status = rc == CX_ENOSPC ? 413 : 400;
        reject(rt, cname, x->cid, resp, status, rc == CX_ENOSPC ? CX_ELIMIT : CX_EMALFORMED,
               err.message[0] ? err.message : "malformed payload", x->t0);
        cx_arena_release(&x->arena);
        return;
    }

    size_t n = out.n;
    item_t *items = n ? cx_arena_alloc(&x->arena, n * sizeof *items) : NULL;
    cx_dedupe_item_t *claims = n ? cx_arena_alloc(&x->arena, n * sizeof *claims) : NULL;
    if (n && (items == NULL || claims == NULL)) {
        reject(rt, cname, x->cid, resp, 413, CX_ELIMIT, "batch too large for the request arena",
               x->t0);
        cx_arena_release(&x->arena);
        return;
    }
    cx_keyring_t keyring = {rt->pseudonym_key, rt->pseudonym_key_len};
    cx_violation_t vbuf[4];
    /* A batch is mostly one message type: its tenant_id field is looked up once per run. */
    const ProtobufCMessageDescriptor *tdesc = NULL;
    const ProtobufCFieldDescriptor *tfd = NULL;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        it->ev = &out.events[i];
        it->claim = -1;
        if (it->ev->error || it->ev->msg == NULL) {
            fail(it, it->ev->error ? it->ev->error : CX_EMALFORMED, 1);
            continue;
        }
        it->tenant = cx__accounts_lookup(rt, cname, it->ev->account_id);
        if (it->tenant == NULL) {
            fail(it, CX_EUNKNOWN_ACCOUNT, 1);
            continue;
        }
        if (it->ev->msg->descriptor != tdesc) {
            tdesc = it->ev->msg->descriptor;
            tfd = tenant_field(tdesc);
        }
        if (tfd)
            *(const char **)cx__field_ptr(it->ev->msg, tfd) = it->tenant;
        cx_violations_t v = {vbuf, 4, 0};
        if (cx_validate(it->ev->meta, it->ev->msg, &v) != 0) {
            char why[160];
            cx_log_record_t r;
            if (cx_log_begin(&r, rt->log, CX_LOG_WARN)) {
                cx_log_set_connector(&r, cname);
                cx_log_set_correlation_id(&r, x->cid);
                cx_log_set_event_type(&r, it->ev->meta->event_type);
                cx_log_set_error_code(&r, "VALIDATION");
                cx_log_set_error_class(&r, "payload");
                cx_log_set_msg(&r, first_violation(&v, why, sizeof why));
                cx_log_emit(&r);
            }
            fail(it, CX_EVALIDATION, 1);
            continue;
        }
        cx_buf_t kb;
        char kmem[1024];
        cx_buf_init_fixed(&kb, kmem, sizeof kmem);
        int krc = cx_dedupe_key(it->ev->meta, it->ev->msg, &keyring, &kb, &err);
        if (krc != 0) {
            /* Permanent either way: a value the template needs is empty, or the key would be
             * longer than any store takes (a redelivery builds the same key). */
            fail(it, krc == CX_ELIMIT ? CX_ELIMIT : CX_EDEDUPE_KEY, 1);
            continue;
        }
        it->key = cx_arena_strndup(&x->arena, kb.data, kb.len);
        it->keylen = kb.len;
        if (it->key == NULL)
            fail(it, CX_ELIMIT, 0);
    }
    dedupe_in_batch(items, n, &x->arena);

    /* The items still in the running are claimed (with the other requests' items). */
    size_t nclaims = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].outcome)
            continue;
        items[i].claim = (int)nclaims;
        claims[nclaims] = (cx_dedupe_item_t){.key = items[i].key,
                                             .done_ttl_s = items[i].ev->meta->dedupe_ttl_seconds};
        nclaims++;
    }
    x->cname = cname;
    x->items = items;
    x->n = n;
    x->claims = claims;
    x->nclaims = nclaims;
}

/* A dedupe store operation over an array of claims. */
typedef int (*store_op_fn)(cx_runtime_t *rt, cx_dedupe_item_t *items, size_t n, cx_error_t *err);

static int op_claim(cx_runtime_t *rt, cx_dedupe_item_t *items, size_t n, cx_error_t *err)
{
    uint32_t ttl = rt->queued ? rt->cfg.queued_claim_ttl_ms : rt->cfg.processing_ttl_ms;
    return rt->dedupe->ops->claim(rt->dedupe, items, n, ttl, err);
}

static int op_complete(cx_runtime_t *rt, cx_dedupe_item_t *items, size_t n, cx_error_t *err)
{
    return rt->dedupe->ops->complete(rt->dedupe, items, n, err);
}

static int op_release(cx_runtime_t *rt, cx_dedupe_item_t *items, size_t n, cx_error_t *err)
{
    return rt->dedupe->ops->release(rt->dedupe, items, n, err);
}

/* Which claimed items of a request an operation takes: all (claim), or those whose handler
 * processed them (complete) or not (release). Items that lost their claim (claim < 0) are
 * never taken. */
enum { PICK_ALL, PICK_PROCESSED, PICK_UNPROCESSED };

static int picked(const item_t *it, int pick)
{
    if (it->claim < 0)
        return 0;
    if (pick == PICK_ALL)
        return 1;
    return (it->outcome == OUT_PROCESSED) == (pick == PICK_PROCESSED);
}

/* Runs op over the picked claims of every request: one call (one round trip with Redis) for
 * all of them, in chunks of at most CX_DEDUPE_BATCH_MAX, with the results copied back.
 * Returns 0 or the store's first failure. */
static int store_all(cx_runtime_t *rt, exchange_state_t *xs, size_t nx, store_op_fn op, int pick,
                     cx_error_t *err)
{
    size_t total = 0;
    for (size_t r = 0; r < nx; r++)
        if (xs[r].cname)
            total += xs[r].nclaims;
    if (total == 0)
        return 0;
    if (nx == 1 && pick == PICK_ALL) /* one request's claims: its own array, no copies */
        return op(rt, xs[0].claims, xs[0].nclaims, err);
    cx_dedupe_item_t stack[64];
    cx_dedupe_item_t *all = total <= 64 ? stack : malloc(total * sizeof *all);
    if (all == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "out of memory");
    size_t m = 0;
    for (size_t r = 0; r < nx; r++)
        for (size_t i = 0; xs[r].cname && i < xs[r].n; i++)
            if (picked(&xs[r].items[i], pick))
                all[m++] = xs[r].claims[xs[r].items[i].claim];
    int rc = 0;
    for (size_t off = 0; off < m; off += CX_DEDUPE_BATCH_MAX) {
        size_t len = m - off < CX_DEDUPE_BATCH_MAX ? m - off : CX_DEDUPE_BATCH_MAX;
        int one = op(rt, all + off, len, err);
        if (one != 0 && rc == 0)
            rc = one;
    }
    m = 0;
    for (size_t r = 0; r < nx; r++)
        for (size_t i = 0; xs[r].cname && i < xs[r].n; i++)
            if (picked(&xs[r].items[i], pick))
                xs[r].claims[xs[r].items[i].claim] = all[m++];
    if (all != stack)
        free(all);
    return rc;
}

/* The claims of every request, in one call. */
static void claim_all(cx_runtime_t *rt, exchange_state_t *xs, size_t nx)
{
    /* Completions lost during an outage go first, so their redelivery is deduped. */
    cx__pending_flush(rt);
    cx_error_t err;
    cx_error_clear(&err);
    if (store_all(rt, xs, nx, op_claim, PICK_ALL, &err) == 0)
        return;
    for (size_t r = 0; r < nx; r++) {
        exchange_state_t *x = &xs[r];
        if (x->cname == NULL || x->nclaims == 0)
            continue;
        x->store_down = 1;
        for (size_t i = 0; i < x->n; i++)
            if (x->items[i].claim >= 0) {
                fail(&x->items[i], CX_EUNAVAILABLE, 0);
                x->items[i].claim = -1;
            }
    }
}

/* Inline mode, after the handlers: one call completes the processed items of every request,
 * one more releases the others so the provider's redelivery can run them again. */
static void settle_all(cx_runtime_t *rt, exchange_state_t *xs, size_t nx)
{
    cx_error_t err;
    cx_error_clear(&err);
    if (store_all(rt, xs, nx, op_complete, PICK_PROCESSED, &err) != 0) {
        /* The handlers ran but the store lost the completions: keep them to retry before the
         * next claims (the redelivery then finds these items done), and answer 503 so the
         * items whose claims failed are redelivered. */
        for (size_t r = 0; r < nx; r++) {
            exchange_state_t *x = &xs[r];
            int lost = 0;
            for (size_t i = 0; x->cname && i < x->n; i++)
                if (picked(&x->items[i], PICK_PROCESSED)) {
                    cx__pending_add(rt, &x->claims[x->items[i].claim], 1);
                    lost = 1;
                }
            if (!lost)
                continue;
            x->store_down = 1;
            cx_log_record_t r2;
            if (cx_log_begin(&r2, rt->log, CX_LOG_ERROR)) {
                cx_log_set_connector(&r2, x->cname);
                cx_log_set_correlation_id(&r2, x->cid);
                cx_log_set_error(&r2, CX_EUNAVAILABLE);
                cx_log_set_msg(&r2, "dedupe store unreachable when completing processed items");
                cx_log_emit(&r2);
            }
        }
    }
    cx_error_clear(&err);
    (void)store_all(rt, xs, nx, op_release, PICK_UNPROCESSED, &err);
}

/* Counts, logs and writes the response of a prepared request, and frees its arena. */
static void finish(cx_runtime_t *rt, const cx_exchange_t *ex, exchange_state_t *x)
{
    const char *cname = x->cname, *cid = x->cid;
    item_t *items = x->items;
    size_t n = x->n;
    cx_response_t *resp = ex->resp;
    unsigned processed = 0, queued = 0, deduped = 0, failed = 0, transient = 0;
    uint64_t run = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        const char *cap = it->ev->meta ? it->ev->meta->capability : "unknown";
        if (it->outcome == OUT_PROCESSED)
            processed++;
        else if (it->outcome == OUT_DEDUPED)
            deduped++;
        else if (it->outcome == OUT_QUEUED)
            queued++;
        else {
            failed++;
            transient += !it->permanent;
        }
        /* Counted once per run of alike items (a batch is mostly one capability and one
         * outcome): the counters are shared by every thread. */
        const item_t *next = i + 1 < n ? &items[i + 1] : NULL;
        run++;
        if (next == NULL || next->outcome != it->outcome || next->rc != it->rc ||
            next->ev->meta != it->ev->meta) {
            if (it->outcome == OUT_QUEUED)
                cx_counter_inc(rt->m_queued, (const char *[]){cname, cap ? cap : "unknown"}, run);
            else
                cx__count_items(rt, cname, cap, it->outcome, it->rc ? cx__code_name(it->rc) : NULL,
                                run);
            run = 0;
        }
        log_item(rt, cname, cid, i, it);
    }
    int status = (transient || x->store_down) ? 503 : 200;
    resp->status = status;
    resp->content_type = "application/json";
    write_results(resp->body, cid, status == 200, items, n, processed, queued, deduped, failed);
    if (cx_buf_error(resp->body)) { /* a results list too long for the response buffer */
        cx_buf_reset(resp->body);
        write_results(resp->body, cid, status == 200, items, 0, processed, queued, deduped, failed);
    }
    double total = mono_ms_f() - x->t0;
    cx_log_record_t r;
    if (cx_log_begin(&r, rt->log, status == 200 ? CX_LOG_INFO : CX_LOG_WARN)) {
        cx_log_set_connector(&r, cname);
        cx_log_set_correlation_id(&r, cid);
        cx_log_set_outcome(&r, status == 200 ? "ok" : "retry");
        cx_log_set_int(&r, "status", status);
        cx_log_set_latency_ms(&r, total);
        cx_log_set_int(&r, "items", (int64_t)n);
        cx_log_set_int(&r, "processed", processed);
        cx_log_set_int(&r, "queued", queued);
        cx_log_set_int(&r, "deduped", deduped);
        cx_log_set_int(&r, "failed", failed);
        cx_log_set_msg(&r, "request handled");
        cx_log_emit(&r);
    }
    cx__count_request(rt, cname, status, total);
    cx_arena_release(&x->arena);
}

/* Queued mode: the claimed items of every request go to the work queue in one call (more
 * only past CX_QUEUE_BATCH_MAX payloads, cut between requests), then each request is answered
 * for. */
static void enqueue_all(cx_runtime_t *rt, exchange_state_t *xs, size_t nx)
{
    enqueue_t q[CX_HANDLE_MANY_MAX];
    size_t total = 0;
    for (size_t r = 0; r < nx; r++) {
        exchange_state_t *x = &xs[r];
        q[r] = (enqueue_t){0};
        if (x->cname == NULL)
            continue;
        enqueue_prepare(rt, x->cname, x->cid, x->items, x->n, x->claims, x->nclaims, &x->arena,
                        &q[r]);
        total += q[r].npl;
    }
    cx_queue_payload_t *all = total ? malloc(total * sizeof *all) : NULL;
    int down[CX_HANDLE_MANY_MAX] = {0};
    for (size_t r = 0; r < nx;) {
        /* Requests r..e-1 in one enqueue call. */
        size_t e = r, m = 0;
        while (e < nx && (m == 0 || m + q[e].npl <= CX_QUEUE_BATCH_MAX)) {
            if (all)
                memcpy(all + m, q[e].pl, q[e].npl * sizeof *all);
            m += q[e].npl;
            e++;
        }
        int failed = 0;
        if (m) {
            cx_error_t err;
            cx_error_clear(&err);
            failed = all == NULL || m > CX_QUEUE_BATCH_MAX ||
                     rt->queue->ops->enqueue(rt->queue, all, m, &err) != 0;
        }
        for (; r < e; r++)
            down[r] = failed;
    }
    free(all);
    for (size_t r = 0; r < nx; r++) {
        exchange_state_t *x = &xs[r];
        if (x->cname)
            x->store_down |= enqueue_finish(rt, x->cname, x->cid, x->items, x->n, x->claims,
                                            &x->arena, &q[r], down[r]);
    }
}

int cx_runtime_handle_many(cx_runtime_t *rt, const cx_exchange_t *ex, size_t n)
{
    if (rt == NULL || ex == NULL || n == 0 || n > CX_HANDLE_MANY_MAX)
        return CX_EINVAL;
    for (size_t r = 0; r < n; r++)
        if (ex[r].connector_id == NULL || ex[r].req == NULL || ex[r].resp == NULL ||
            ex[r].resp->body == NULL)
            return CX_EINVAL;
    exchange_state_t xs[CX_HANDLE_MANY_MAX];
    for (size_t r = 0; r < n; r++) {
        xs[r] = (exchange_state_t){0};
        prepare(rt, &ex[r], &xs[r]);
    }
    claim_all(rt, xs, n);
    if (rt->queued) {
        enqueue_all(rt, xs, n);
    } else {
        for (size_t r = 0; r < n; r++)
            if (xs[r].cname)
                run_handlers(rt, xs[r].cname, xs[r].cid, xs[r].items, xs[r].n, xs[r].claims,
                             &xs[r].arena, &xs[r].msgs);
        settle_all(rt, xs, n);
    }
    for (size_t r = 0; r < n; r++) {
        exchange_state_t *x = &xs[r];
        if (x->cname == NULL)
            continue;
        cx_error_t err;
        cx_error_clear(&err);
        x->store_down |= dead_letter_failed(rt, x->cname, x->cid, ex[r].req, x->items, x->n,
                                            x->msgs, &x->arena, &err);
        finish(rt, &ex[r], x);
    }
    return 0;
}

int cx_runtime_handle(cx_runtime_t *rt, const char *connector_id, const cx_request_t *req,
                      cx_response_t *resp)
{
    if (rt == NULL || connector_id == NULL || req == NULL || resp == NULL || resp->body == NULL)
        return CX_EINVAL;
    cx_exchange_t ex = {connector_id, req, resp};
    return cx_runtime_handle_many(rt, &ex, 1);
}
