/* Dead letters (cx/dlq.h): written by the pipeline (invalid items, inline permanent failures)
 * and the workers (permanent failures, exhausted retries); listed, shown, replayed and purged
 * by operators (cx_runtime_dlq_*, `cx dlq`).
 *
 * A dead letter is a job record (job.h) with the dead-letter fields set. Its id is the item's
 * dedupe key, or "invalid:<hash>:<index>" for an item without one (the hash covers connector
 * and body, so the provider redelivering the same bad request replaces the same dead letters
 * instead of adding copies).
 *
 * Replay goes through the dedupe claim like a provider delivery, so whichever comes first runs
 * and the other is deduped; the dead letter is removed only once its item is queued, processed
 * or found done.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cx/dlq.h"
#include "inbound/job.h"
#include "inbound/runtime_internal.h"

/* ---- Writing ----------------------------------------------------------------------------- */

int cx__dead_letter_put(cx_runtime_t *rt, const char *id, const char *connector,
                        const char *capability, int64_t dead_ms, const void *rec, size_t len,
                        cx_error_t *err)
{
    char group[CX_DLQ_GROUP_MAX + 1];
    snprintf(group, sizeof group, "%s|%s", connector ? connector : "unknown",
             capability ? capability : "unknown");
    return rt->dlq->ops->put(rt->dlq, id, group, dead_ms, rec, len, err);
}

static void body_hash(const char *connector, const char *body, size_t len, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, connector, strlen(connector) + 1) == 1 &&
             EVP_DigestUpdate(ctx, body ? body : "", body ? len : 0) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 8;
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", ok ? md[i] : 0);
}

int cx__dead_letter_items(cx_runtime_t *rt, const cx__dead_item_t *items, size_t n,
                          const char *body, size_t body_len, cx_error_t *err)
{
    char hash[17] = "";
    int64_t now = cx__now_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const cx__dead_item_t *it = &items[i];
        char idbuf[64];
        const char *id = it->id ? it->id : it->key;
        if (id == NULL) {
            if (hash[0] == '\0')
                body_hash(it->connector, body, body_len, hash);
            snprintf(idbuf, sizeof idbuf, "invalid:%s:%zu", hash, it->index);
            id = idbuf;
        }
        const cx_msg_meta_t *meta = it->ev ? it->ev->meta : NULL;
        const ProtobufCMessage *msg = it->ev ? it->ev->msg : NULL;
        size_t packed = msg ? protobuf_c_message_get_packed_size(msg) : 0;
        uint8_t *ev = msg ? malloc(packed ? packed : 1) : NULL;
        if (msg && ev == NULL)
            return cx_error_set(err, CX_ENOMEM, NULL, "dead letters: out of memory");
        if (ev)
            protobuf_c_message_pack(msg, ev);
        cx__job_t j = {.connector = it->connector,
                       .type = msg && meta ? meta->full_name : NULL,
                       .capability = meta ? meta->capability : NULL,
                       .tenant = it->tenant,
                       .account = it->ev ? it->ev->account_id : NULL,
                       .key = it->key,
                       .done_ttl_s = it->done_ttl_s,
                       .correlation_id = it->correlation_id,
                       .attempt = it->attempts,
                       .first_ms = it->first_ms ? it->first_ms : now,
                       .last_error = it->code,
                       .event = ev,
                       .event_len = packed,
                       .id = id,
                       .reason = it->reason,
                       .error_code = cx__code_name(it->code),
                       .error_class = cx_err_class(it->code),
                       .message = it->message ? it->message : cx_strerror(it->code),
                       .dead_ms = now};
        cx_buf_t b;
        cx_buf_init(&b, 64u << 20);
        int rc = cx__job_encode(&j, &b);
        if (rc == 0)
            rc = cx__dead_letter_put(rt, id, it->connector, j.capability, now, b.data, b.len, err);
        cx_buf_free(&b);
        free(ev);
        if (rc != 0)
            return rc;
        if (it->token && it->key) {
            cx_dedupe_item_t c = {.key = it->key, .state = CX_CLAIM_OWNED};
            snprintf(c.token, sizeof c.token, "%s", it->token);
            cx_error_t rerr;
            cx_error_clear(&rerr);
            rt->dedupe->ops->release(rt->dedupe, &c, 1, &rerr);
        }
        cx_log_record_t r;
        if (cx_log_begin(&r, rt->log, CX_LOG_WARN)) {
            cx_log_set_connector(&r, it->connector);
            cx_log_set_correlation_id(&r, it->correlation_id);
            cx_log_set_tenant_id(&r, it->tenant);
            if (meta) {
                cx_log_set_capability(&r, meta->capability);
                cx_log_set_event_type(&r, meta->event_type);
            }
            cx_log_set_dedupe_key(&r, it->key);
            cx_log_set_outcome(&r, "dead_letter");
            if (it->attempts)
                cx_log_set_attempt(&r, it->attempts);
            cx_log_set_error(&r, it->code);
            cx_log_set_error_code(&r, cx__code_name(it->code));
            cx_log_set_pii(&r, "dead_letter_id", id, CX_PII_NONE);
            cx_log_set_msg(&r, "item dead-lettered");
            cx_log_emit(&r);
        }
    }
    return 0;
}

/* ---- Reading ------------------------------------------------------------------------------ */

int cx_dead_letter_decode(const void *rec, size_t len, cx_arena_t *arena, cx_dead_letter_t *out,
                          cx_error_t *err)
{
    memset(out, 0, sizeof *out);
    cx__job_t j;
    int rc = rec ? cx__job_decode(rec, len, arena, &j) : CX_EMALFORMED;
    if (rc == 0 && j.reason == NULL)
        rc = CX_EMALFORMED;
    if (rc != 0)
        return cx_error_set(err, rc, NULL,
                            rc == CX_ENOSPC ? "arena too small for the dead letter"
                                            : "not a dead-letter record this release can read");
    out->id = j.id;
    out->connector = j.connector;
    out->capability = j.capability;
    out->event_type = j.type;
    out->tenant_id = j.tenant;
    out->account_id = j.account;
    out->dedupe_key = j.key;
    out->correlation_id = j.correlation_id;
    out->reason = j.reason;
    out->error_code = j.error_code;
    out->error_class = j.error_class;
    out->message = j.message;
    out->attempts = j.attempt;
    out->first_ms = j.first_ms;
    out->dead_ms = j.dead_ms;
    out->event = j.event;
    out->event_len = j.event_len;
    return 0;
}

static void json_str(cx_buf_t *b, const char *s)
{
    if (s == NULL) {
        cx_buf_puts(b, "null");
        return;
    }
    cx_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            cx_buf_putc(b, '\\');
            cx_buf_putc(b, (char)*p);
        } else if (*p < 0x20) {
            cx_buf_printf(b, "\\u%04x", *p);
        } else {
            cx_buf_putc(b, (char)*p);
        }
    }
    cx_buf_putc(b, '"');
}

static void iso_ms(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

int cx_dead_letter_to_json(const cx_dead_letter_t *dl, int with_event, cx_buf_t *b)
{
    char when[32];
    cx_buf_puts(b, "{\"id\":");
    json_str(b, dl->id);
    static const char *const names[] = {"connector", "capability", "eventType",     "tenantId",
                                        "accountId", "dedupeKey",  "correlationId", "reason",
                                        "errorCode", "errorClass", "message"};
    const char *vals[] = {dl->connector,  dl->capability,  dl->event_type,     dl->tenant_id,
                          dl->account_id, dl->dedupe_key,  dl->correlation_id, dl->reason,
                          dl->error_code, dl->error_class, dl->message};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cx_buf_printf(b, ",\"%s\":", names[i]);
        json_str(b, vals[i]);
    }
    cx_buf_printf(b, ",\"attempts\":%u,\"firstMs\":%" PRId64 ",\"deadMs\":%" PRId64,
                  (unsigned)dl->attempts, dl->first_ms, dl->dead_ms);
    iso_ms(dl->dead_ms, when);
    cx_buf_printf(b, ",\"deadAt\":\"%s\",\"eventBytes\":%zu", when, dl->event_len);
    if (with_event) {
        cx_buf_puts(b, ",\"event\":");
        const cx_msg_meta_t *meta = dl->event_type ? cx_schema_find(dl->event_type) : NULL;
        cx_arena_t arena;
        cx_arena_init(&arena, NULL, 16u << 20);
        ProtobufCAllocator alloc = cx_arena_protobuf_allocator(&arena);
        ProtobufCMessage *msg =
            meta && dl->event
                ? protobuf_c_message_unpack(meta->desc, &alloc, dl->event_len, dl->event)
                : NULL;
        size_t mark = b->len;
        if (msg == NULL || cx_to_json(meta, msg, b) != 0) {
            if (!cx_buf_error(b))
                cx_buf_truncate(b, mark);
            cx_buf_puts(b, "null");
        }
        cx_arena_release(&arena);
    }
    cx_buf_putc(b, '}');
    return cx_buf_error(b);
}

/* ---- Operations ----------------------------------------------------------------------------- */

int cx_runtime_dlq_get(cx_runtime_t *rt, const char *id, cx_arena_t *arena, cx_dead_letter_t *out,
                       cx_error_t *err)
{
    if (rt == NULL || id == NULL || arena == NULL || out == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "rt, id, arena and out are required");
    unsigned char *rec = NULL;
    size_t len = 0;
    int rc = rt->dlq->ops->get(rt->dlq, id, &rec, &len, err);
    if (rc == 0)
        rc = cx_dead_letter_decode(rec, len, arena, out, err);
    free(rec);
    return rc;
}

int cx_runtime_dlq_list(cx_runtime_t *rt, size_t offset, size_t limit, cx_arena_t *arena,
                        cx_dead_letter_t *out, size_t *n, size_t *total, cx_error_t *err)
{
    if (rt == NULL || arena == NULL || n == NULL || total == NULL || (limit && out == NULL))
        return cx_error_set(err, CX_EINVAL, NULL, "missing argument");
    *n = 0;
    cx_dlq_ref_t *refs = limit ? malloc(limit * sizeof *refs) : NULL;
    if (limit && refs == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "dead letters: out of memory");
    size_t got = 0;
    int rc = rt->dlq->ops->list(rt->dlq, offset, limit, refs, &got, total, err);
    for (size_t i = 0; rc == 0 && i < got; i++) {
        int grc = cx_runtime_dlq_get(rt, refs[i].id, arena, &out[*n], err);
        if (grc == CX_ENOTFOUND) /* removed meanwhile (a replay) */
            continue;
        if (grc == CX_EMALFORMED) { /* keep it listed, with what the store knows */
            memset(&out[*n], 0, sizeof out[*n]);
            out[*n].id = cx_arena_strndup(arena, refs[i].id, strlen(refs[i].id));
            out[*n].dead_ms = refs[i].dead_ms;
            out[*n].reason = "unreadable";
            (*n)++;
            continue;
        }
        rc = grc;
        if (rc == 0)
            (*n)++;
    }
    free(refs);
    return rc;
}

int cx_runtime_dlq_remove(cx_runtime_t *rt, const char *id, cx_error_t *err)
{
    if (rt == NULL || id == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "rt and id are required");
    int removed = 0;
    int rc = rt->dlq->ops->remove(rt->dlq, id, &removed, err);
    if (rc == 0 && !removed)
        rc = cx_error_set(err, CX_ENOTFOUND, NULL, "no dead letter with this id");
    return rc;
}

int cx_runtime_dlq_purge(cx_runtime_t *rt, int64_t before_ms, size_t *removed, cx_error_t *err)
{
    if (rt == NULL || removed == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "rt and removed are required");
    return rt->dlq->ops->purge(rt->dlq, before_ms, removed, err);
}

static void log_replay(cx_runtime_t *rt, const cx__job_t *j, const char *key, const char *outcome,
                       int code)
{
    cx_log_record_t r;
    if (!cx_log_begin(&r, rt->log, code ? CX_LOG_WARN : CX_LOG_INFO))
        return;
    cx_log_set_connector(&r, j->connector);
    cx_log_set_correlation_id(&r, j->correlation_id);
    cx_log_set_tenant_id(&r, j->tenant);
    cx_log_set_capability(&r, j->capability);
    cx_log_set_dedupe_key(&r, key);
    cx_log_set_outcome(&r, outcome);
    if (code)
        cx_log_set_error(&r, code);
    if (code)
        cx_log_set_error_code(&r, cx__code_name(code));
    cx_log_set_msg(&r, "dead letter replayed");
    cx_log_emit(&r);
}

/* Inline replay (no queue): the handler runs in the calling thread. */
static int replay_inline(cx_runtime_t *rt, cx__job_t *j, const cx_msg_meta_t *meta,
                         ProtobufCMessage *msg, cx_dedupe_item_t *claim, const char *id,
                         const char **outcome, cx_error_t *err)
{
    const cx_handler_t *h = cx__handler_for(rt, meta->capability);
    cx_event_t ev = {meta, msg, j->account, 0, NULL};
    cx_error_t herr;
    cx_error_clear(&herr);
    int hrc = CX_ENOT_IMPLEMENTED;
    if (h) {
        cx_item_t view = {
            &ev,           j->connector,      j->tenant,
            claim->key,    j->correlation_id, cx__mono_now_ms() + rt->cfg.handler_deadline_ms,
            j->attempt + 1};
        hrc = h->fn(h->ud, &view, &herr);
    }
    cx_error_t serr;
    cx_error_clear(&serr);
    if (hrc == 0) {
        rt->dedupe->ops->complete(rt->dedupe, claim, 1, &serr);
        int removed;
        rt->dlq->ops->remove(rt->dlq, id, &removed, &serr);
        *outcome = "processed";
        cx__count_item(rt, j->connector, meta->capability, "processed", NULL);
        return 0;
    }
    int code = hrc == CX_EHANDLER_PERMANENT || hrc == CX_ENOT_IMPLEMENTED ? hrc : CX_EHANDLER;
    rt->dedupe->ops->release(rt->dedupe, claim, 1, &serr);
    cx__dead_item_t d = {.connector = j->connector,
                         .ev = &ev,
                         .tenant = j->tenant,
                         .key = claim->key,
                         .done_ttl_s = claim->done_ttl_s,
                         .correlation_id = j->correlation_id,
                         .reason = code == CX_EHANDLER ? "exhausted" : "permanent",
                         .code = code,
                         .message = herr.message[0] ? herr.message : NULL,
                         .attempts = j->attempt + 1,
                         .first_ms = j->first_ms};
    int rc = cx__dead_letter_items(rt, &d, 1, NULL, 0, err);
    if (rc == 0 && strcmp(id, claim->key) != 0) {
        int removed;
        rt->dlq->ops->remove(rt->dlq, id, &removed, &serr);
    }
    *outcome = "failed";
    return rc;
}

int cx_runtime_dlq_replay(cx_runtime_t *rt, const char *id, const char **outcome, cx_error_t *err)
{
    static const char *none = "";
    if (outcome)
        *outcome = none;
    if (rt == NULL || id == NULL || outcome == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "rt, id and outcome are required");
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, rt->cfg.arena_limit);
    unsigned char *rec = NULL;
    size_t len = 0;
    cx__job_t j;
    int rc = rt->dlq->ops->get(rt->dlq, id, &rec, &len, err);
    if (rc != 0)
        goto done;
    if (cx__job_decode(rec, len, &arena, &j) != 0) {
        rc = cx_error_set(err, CX_EMALFORMED, NULL, "not a dead-letter record this release reads");
        goto done;
    }
    const cx_msg_meta_t *meta = j.type ? cx_schema_find(j.type) : NULL;
    ProtobufCAllocator alloc = cx_arena_protobuf_allocator(&arena);
    ProtobufCMessage *msg =
        meta && j.event ? protobuf_c_message_unpack(meta->desc, &alloc, j.event_len, j.event)
                        : NULL;
    if (msg == NULL) {
        rc = cx_error_set(err, CX_EINVAL, NULL,
                          "nothing to replay: the dead letter holds no readable event");
        goto done;
    }
    const char *key = j.key;
    int repack = 0;
    if (j.tenant == NULL || key == NULL) {
        /* It failed before it had a tenant or key (unknown account, invalid): the pipeline's
         * steps 4-5 again, with today's accounts registry. */
        const char *tenant = cx__accounts_lookup(rt, j.connector, j.account);
        if (tenant == NULL) {
            rc = cx_error_set(err, CX_EUNKNOWN_ACCOUNT, NULL,
                              "account still not in the accounts registry");
            goto done;
        }
        j.tenant = cx_arena_strndup(&arena, tenant, strlen(tenant));
        cx__stamp_tenant(msg, j.tenant);
        if (cx_validate(meta, msg, NULL) != 0) {
            rc = cx_error_set(err, CX_EVALIDATION, NULL, "the event still fails validation");
            goto done;
        }
        if (rt->dev_pseudonym_key && rt->cfg.environment != CX_ENV_DEVELOPMENT) {
            /* A key under the development pseudonym key would never match the gateway's. */
            rc = cx_error_set(err, CX_ECONFIG, "runtime/pseudonym_key",
                              "replaying an item without a dedupe key needs the secret "
                              "runtime/pseudonym_key (--secrets)");
            goto done;
        }
        char kmem[1024];
        cx_buf_t kb;
        cx_buf_init_fixed(&kb, kmem, sizeof kmem);
        cx_keyring_t keyring = {rt->pseudonym_key, rt->pseudonym_key_len};
        if ((rc = cx_dedupe_key(meta, msg, &keyring, &kb, err)) != 0)
            goto done;
        key = cx_arena_strndup(&arena, kb.data, kb.len);
        repack = 1;
    }
    cx_dedupe_item_t claim = {.key = key, .done_ttl_s = meta->dedupe_ttl_seconds};
    uint32_t ttl = rt->queue ? rt->cfg.queued_claim_ttl_ms : rt->cfg.processing_ttl_ms;
    if ((rc = rt->dedupe->ops->claim(rt->dedupe, &claim, 1, ttl, err)) != 0)
        goto done;
    if (claim.state == CX_CLAIM_DONE) {
        /* A provider delivery processed it meanwhile. */
        int removed;
        rt->dlq->ops->remove(rt->dlq, id, &removed, err);
        *outcome = "deduped";
        log_replay(rt, &j, key, *outcome, 0);
        goto done;
    }
    if (claim.state != CX_CLAIM_OWNED) {
        rc = cx_error_set(err, CX_EIN_PROGRESS, NULL,
                          "a delivery of this item is being handled right now; try again later");
        goto done;
    }
    if (rt->queue == NULL) {
        rc = replay_inline(rt, &j, meta, msg, &claim, id, outcome, err);
        log_replay(rt, &j, key, *outcome, rc);
        goto done;
    }
    /* A first attempt again: a fresh claim, attempts and age start over. */
    if (repack) {
        size_t packed = protobuf_c_message_get_packed_size(msg);
        uint8_t *ev = cx_arena_alloc(&arena, packed ? packed : 1);
        if (ev == NULL) {
            rc = cx_error_set(err, CX_ENOSPC, NULL, "arena too small for the event");
            rt->dedupe->ops->release(rt->dedupe, &claim, 1, NULL);
            goto done;
        }
        protobuf_c_message_pack(msg, ev);
        j.event = ev;
        j.event_len = packed;
    }
    cx__job_t q = {.connector = j.connector,
                   .type = meta->full_name,
                   .capability = meta->capability,
                   .tenant = j.tenant,
                   .account = j.account,
                   .key = key,
                   .done_ttl_s = claim.done_ttl_s,
                   .correlation_id = j.correlation_id,
                   .first_ms = cx__now_wall_ms(),
                   .event = j.event,
                   .event_len = j.event_len};
    memcpy(q.token, claim.token, sizeof q.token);
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    rc = cx__job_encode(&q, &b);
    if (rc == 0) {
        cx_queue_payload_t p = {b.data, b.len, 0};
        rc = rt->queue->ops->enqueue(rt->queue, &p, 1, err);
    }
    cx_buf_free(&b);
    if (rc != 0) {
        cx_error_t rerr;
        cx_error_clear(&rerr);
        rt->dedupe->ops->release(rt->dedupe, &claim, 1, &rerr);
        goto done;
    }
    /* Queued: the dead letter goes. A crash before this line leaves it listed; replaying it
     * again then finds the claim held or done, and nothing runs twice. */
    {
        int removed;
        cx_error_t rerr;
        cx_error_clear(&rerr);
        rt->dlq->ops->remove(rt->dlq, id, &removed, &rerr);
    }
    *outcome = "queued";
    log_replay(rt, &j, key, *outcome, 0);
done:
    free(rec);
    cx_arena_release(&arena);
    return rc;
}
