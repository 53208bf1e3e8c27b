/* Outbound commands (cx/outbound.h): validate -> claim the intent -> breaker and rate limits
 * -> the connector's send -> store the outcome -> log, metrics, audit.
 *
 * The one rule: once an intent is claimed, the provider is called at most once for it, by
 * its owner, and only while the owner holds the claim. Everything else follows:
 *
 *   - a replay (the key is DONE or FAILED) returns the stored outcome;
 *   - a concurrent caller (the key is SENDING under a live lease) polls until the owner's
 *     outcome is stored, then returns it; after wait_ms it gives up with CX_EIN_PROGRESS;
 *   - an owner that dies leaves SENDING behind; its lease runs out and the next claim turns
 *     it into IN_DOUBT: reported, never resent (the request may have left before the crash);
 *   - an owner whose call failed without the provider acting on it (nothing sent, 5xx, 429,
 *     401, refused locally) releases the claim, so the same command can be sent again later;
 *   - an owner whose call may have reached the provider without a definite answer stores
 *     IN_DOUBT; the provider's status echo (cx_outbound_reconcile) resolves it.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cx/buf.h"
#include "cx/outbound.h"
#include "outbound/outbound_internal.h"
#include "stores/intent_internal.h"

#define DEFAULT_LEASE_MS 120000u
#define DEFAULT_WAIT_MS 15000u
#define DEFAULT_BREAKER_THRESHOLD 5u
#define DEFAULT_BREAKER_OPEN_MS 30000u
#define DEFAULT_BREAKER_OPEN_MAX_MS 300000u
#define MAX_LIMITS 64

typedef struct limits_s {
    char *connector; /* NULL: the default */
    cx_outbound_rate_t provider, account, pair;
} limits_t;

struct cx_outbound_s {
    cx_intent_store_t *intents;
    cx_outbound_limiter_t *limiter;
    limits_t limits[MAX_LIMITS];
    size_t n_limits;
    uint32_t rate_wait_max_ms, lease_ms, wait_ms, intent_ttl_s;
    cx__breaker_t *breaker;
    cx_outbound_audit_fn audit;
    void *audit_ud;
    cx_logger_t *logger;
    cx_metrics_std_t std;
    cx_counter_t *in_doubt_total; /* outbound_in_doubt_total{connector,capability} */
};

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- Lifecycle ---------------------------------------------------------------------------- */

static bool limit_ok(const cx_outbound_rate_t *l)
{
    return l->per_second >= 0 && l->per_second < 1e9 && l->burst >= 0 && l->burst < 1e12;
}

int cx_outbound_new(const cx_outbound_config_t *cfg, cx_outbound_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (cfg == NULL || cfg->intents == NULL)
        return cx_error_set(err, CX_EINVAL, "intents", "outbound needs an intent store");
    if (cfg->n_limits > MAX_LIMITS || (cfg->n_limits > 0 && cfg->limits == NULL))
        return cx_error_set(err, CX_EINVAL, "limits", "at most %d limit entries", MAX_LIMITS);
    for (size_t i = 0; i < cfg->n_limits; i++) {
        const cx_outbound_limits_t *l = &cfg->limits[i];
        if (!limit_ok(&l->provider) || !limit_ok(&l->account) || !limit_ok(&l->pair)) {
            char path[32];
            snprintf(path, sizeof path, "limits[%zu]", i);
            return cx_error_set(err, CX_EINVAL, path, "rate limits must be >= 0 and finite");
        }
    }
    cx_outbound_t *ob = calloc(1, sizeof *ob);
    if (ob == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "outbound: out of memory");
    ob->intents = cfg->intents;
    ob->limiter = cfg->limiter;
    ob->rate_wait_max_ms = cfg->rate_wait_max_ms;
    ob->lease_ms = cfg->lease_ms ? cfg->lease_ms : DEFAULT_LEASE_MS;
    ob->wait_ms = cfg->wait_ms ? cfg->wait_ms : DEFAULT_WAIT_MS;
    ob->intent_ttl_s = cfg->intent_ttl_s;
    ob->audit = cfg->audit;
    ob->audit_ud = cfg->audit_ud;
    ob->logger = cfg->logger;
    for (size_t i = 0; i < cfg->n_limits; i++) {
        const cx_outbound_limits_t *l = &cfg->limits[i];
        limits_t *d = &ob->limits[ob->n_limits++];
        d->provider = l->provider;
        d->account = l->account;
        d->pair = l->pair;
        if (l->connector && (d->connector = strdup(l->connector)) == NULL)
            goto nomem;
    }
    uint32_t open_ms = cfg->breaker_open_ms ? cfg->breaker_open_ms : DEFAULT_BREAKER_OPEN_MS;
    uint32_t open_max =
        cfg->breaker_open_max_ms ? cfg->breaker_open_max_ms : DEFAULT_BREAKER_OPEN_MAX_MS;
    if (cx__breaker_new(cfg->breaker_threshold ? cfg->breaker_threshold : DEFAULT_BREAKER_THRESHOLD,
                        open_ms, open_max, ob->lease_ms, &ob->breaker) != 0)
        goto nomem;
    if (cfg->metrics) {
        if (cx_metrics_register_standard(cfg->metrics, &ob->std) != 0)
            goto nomem;
        ob->in_doubt_total = cx_metrics_counter(
            cfg->metrics, "outbound_in_doubt_total",
            "Outbound commands that may have reached the provider without a definite answer.",
            (const char *[]){"connector", "capability", NULL});
        if (ob->in_doubt_total == NULL)
            goto nomem;
    }
    *out = ob;
    return 0;
nomem:
    cx_outbound_free(ob);
    return cx_error_set(err, CX_ENOMEM, NULL, "outbound: out of memory");
}

void cx_outbound_free(cx_outbound_t *ob)
{
    if (ob == NULL)
        return;
    for (size_t i = 0; i < ob->n_limits; i++)
        free(ob->limits[i].connector);
    cx__breaker_free(ob->breaker);
    free(ob);
}

/* ---- Reporting ---------------------------------------------------------------------------- */

typedef struct report_s {
    const cx_outbound_command_t *cmd;
    const char *capability;
    const char *key;
    int64_t started_ms;
    double t0;
} report_t;

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void report(cx_outbound_t *ob, const report_t *rp, const char *outcome,
                   const cx_outbound_result_t *res)
{
    const cx_outbound_command_t *cmd = rp->cmd;
    double ms = mono_ms_f() - rp->t0;
    int code = res->code;
    cx_log_level_t lvl = code == 0                         ? CX_LOG_INFO
                         : code == CX_EIN_DOUBT            ? CX_LOG_ERROR
                         : strcmp(outcome, "invalid") == 0 ? CX_LOG_INFO
                                                           : CX_LOG_WARN;
    cx_log_record_t r;
    if (cx_log_begin(&r, ob->logger, lvl)) {
        cx_log_set_connector(&r, cmd->connector);
        cx_log_set_capability(&r, rp->capability);
        cx_log_set_tenant_id(&r, cmd->tenant_id);
        cx_log_set_correlation_id(&r, cmd->correlation_id);
        cx_log_set_event_type(&r, cmd->meta ? cmd->meta->event_type : NULL);
        cx_log_set_dedupe_key(&r, rp->key && rp->key[0] ? rp->key : NULL);
        if (rp->key && rp->key[0])
            cx_log_set_dedupe_hit(&r, res->replayed);
        cx_log_set_outcome(&r, outcome);
        cx_log_set_latency_ms(&r, ms);
        if (code != 0)
            cx_log_set_error(&r, code);
        if (res->intent.http_status > 0)
            cx_log_set_upstream_status(&r, res->intent.http_status);
        cx_log_set_pii(&r, "intent_state", cx_intent_state_name(res->state), CX_PII_NONE);
        /* No provider message id: WhatsApp's wamid is base64 of, among others, the
         * recipient's number. The intent key finds it in the store. */
        if (res->intent.provider_code[0])
            cx_log_set_pii(&r, "provider_code", res->intent.provider_code, CX_PII_NONE);
        cx_log_set_msg(&r, code == CX_EIN_DOUBT
                               ? "outbound command in doubt: not resent; waiting for the echo"
                               : "outbound command");
        cx_log_emit(&r);
    }
    if (ob->audit) {
        cx_outbound_audit_t a = {
            .action = "outbound.send",
            .connector = nz(cmd->connector),
            .capability = nz(rp->capability),
            .tenant_id = nz(cmd->tenant_id),
            .account_id = nz(cmd->account_id),
            .correlation_id = nz(cmd->correlation_id),
            .actor = nz(cmd->actor),
            .target = nz(cmd->target),
            .intent_key = nz(rp->key),
            .outcome = outcome,
            .code = code,
            .provider_message_id = res->intent.provider_message_id,
            .http_status = res->intent.http_status,
            .started_ms = rp->started_ms,
            .finished_ms = cx__intent_wall_ms(),
        };
        int arc = ob->audit(ob->audit_ud, &a);
        if (arc != 0 && cx_log_begin(&r, ob->logger, CX_LOG_ERROR)) {
            cx_log_set_connector(&r, cmd->connector);
            cx_log_set_correlation_id(&r, cmd->correlation_id);
            cx_log_set_dedupe_key(&r, rp->key);
            cx_log_set_error(&r, arc);
            cx_log_set_msg(&r, "outbound audit record not written");
            cx_log_emit(&r);
        }
    }
}

/* Local refusals never reach the HTTP client, which counts provider failures itself. */
static void count_failure(cx_outbound_t *ob, const report_t *rp, int code)
{
    cx_counter_inc(ob->std.outbound_failures_total,
                   (const char *[]){rp->cmd->connector, rp->capability, cx_err_name(code)}, 1);
}

/* ---- Helpers ------------------------------------------------------------------------------ */

static const limits_t *limits_for(const cx_outbound_t *ob, const char *connector)
{
    const limits_t *def = NULL;
    for (size_t i = 0; i < ob->n_limits; i++) {
        if (ob->limits[i].connector == NULL)
            def = &ob->limits[i];
        else if (strcmp(ob->limits[i].connector, connector) == 0)
            return &ob->limits[i];
    }
    return def;
}

/* The recipient never appears in a key in clear: 16 hex digits of its SHA-256. */
static void pair_hash(const char *s, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL) != 1 || n < 8) {
        memcpy(out, "0000000000000000", 17);
        return;
    }
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[16] = '\0';
}

static void bucket_of(cx_outbound_bucket_t *b, const char *key, const cx_outbound_rate_t *l)
{
    b->key = key;
    b->rate_per_s = l->per_second;
    b->burst = l->burst > 0 ? l->burst : (l->per_second > 1 ? l->per_second : 1);
    b->cost = 1;
}

/* Takes from the buckets that apply, waiting up to rate_wait_max_ms. 0, CX_ERATE_LIMITED
 * (*retry_after_ms set) or the limiter's error. */
static int take_tokens(cx_outbound_t *ob, const cx_outbound_command_t *cmd,
                       uint32_t *retry_after_ms, cx_error_t *err)
{
    *retry_after_ms = 0;
    if (ob->limiter == NULL)
        return 0;
    const limits_t *l = limits_for(ob, cmd->connector);
    if (l == NULL)
        return 0;
    const char *acct = nz(cmd->account_id);
    char kp[96], ka[384], kr[416], ph[17];
    cx_outbound_bucket_t b[3];
    size_t n = 0;
    if (l->provider.per_second > 0) {
        snprintf(kp, sizeof kp, "p:%s", cmd->connector);
        bucket_of(&b[n++], kp, &l->provider);
    }
    if (l->account.per_second > 0) {
        snprintf(ka, sizeof ka, "a:%s:%.300s", cmd->connector, acct);
        bucket_of(&b[n++], ka, &l->account);
    }
    if (l->pair.per_second > 0 && cmd->rate_pair && cmd->rate_pair[0]) {
        pair_hash(cmd->rate_pair, ph);
        snprintf(kr, sizeof kr, "r:%s:%.300s:%s", cmd->connector, acct, ph);
        bucket_of(&b[n++], kr, &l->pair);
    }
    if (n == 0)
        return 0;
    double until = mono_ms_f() + ob->rate_wait_max_ms;
    for (;;) {
        uint32_t wait = 0;
        int rc = ob->limiter->ops->take(ob->limiter, b, n, &wait, err);
        if (rc != CX_ERATE_LIMITED)
            return rc;
        if (mono_ms_f() + wait > until) {
            *retry_after_ms = wait;
            return CX_ERATE_LIMITED;
        }
        sleep_ms(wait);
    }
}

/* The provider message id a result message carries in a string field of that name. */
static void pmid_from_result(const ProtobufCMessage *m, char *out, size_t cap)
{
    if (m == NULL || m->descriptor == NULL)
        return;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "provider_message_id");
    if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return;
    const char *v = *(const char *const *)(const void *)((const char *)m + f->offset);
    if (v)
        snprintf(out, cap, "%s", v);
}

static void decode_result(const cx_outbound_command_t *cmd, cx_arena_t *arena,
                          cx_outbound_result_t *res)
{
    if (cmd->result_meta == NULL || arena == NULL || res->intent.result_len == 0)
        return;
    cx_error_t ignored;
    cx_error_clear(&ignored);
    ProtobufCMessage *m = NULL;
    cx_json_options_t o = {.lenient = 1};
    if (cx_from_json(cmd->result_meta, res->intent.result, res->intent.result_len, arena, &o, &m,
                     &ignored) == 0)
        res->result = m;
}

/* A permanent rejection: the provider's (a 4xx other than 401/403/408/429) or the payload's. */
static bool is_permanent(int code)
{
    return code == CX_EPROVIDER_REJECTED || strcmp(cx_err_class(code), "payload") == 0;
}

static cx__br_outcome_t breaker_outcome(int code)
{
    if (code == 0 || is_permanent(code))
        return CX__BR_SUCCESS;
    if (code == CX_ERATE_LIMITED || code == CX_EPROVIDER_AUTH)
        return CX__BR_TRIP;
    return CX__BR_NEUTRAL;
}

static int finish_early(cx_outbound_t *ob, const report_t *rp, cx_outbound_result_t *res, int code,
                        const char *outcome, bool count)
{
    res->code = code;
    if (count)
        count_failure(ob, rp, code);
    report(ob, rp, outcome, res);
    return code;
}

/* ---- Send --------------------------------------------------------------------------------- */

int cx_outbound_send(cx_outbound_t *ob, const cx_outbound_command_t *cmd, cx_arena_t *arena,
                     cx_outbound_result_t *res, cx_error_t *err)
{
    if (res == NULL)
        return cx_error_set(err, CX_EINVAL, "res", "res is NULL");
    res->code = 0;
    res->state = CX_INTENT_NONE;
    res->replayed = 0;
    res->intent_key[0] = '\0';
    res->retry_after_ms = 0;
    res->result = NULL;
    cx__intent_none(&res->intent);
    if (ob == NULL || cmd == NULL || cmd->meta == NULL || cmd->msg == NULL || cmd->send == NULL ||
        cmd->connector == NULL || cmd->connector[0] == '\0')
        return res->code = cx_error_set(err, CX_EINVAL, "cmd",
                                        "outbound: meta, msg, connector and send are required");
    if (cmd->meta->kind != CX_KIND_COMMAND || cmd->msg->descriptor != cmd->meta->desc)
        return res->code = cx_error_set(err, CX_EINVAL, "cmd.meta",
                                        "outbound: msg is not a command of this meta");
    report_t rp = {.cmd = cmd,
                   .capability = nz(cmd->meta->capability),
                   .key = res->intent_key,
                   .started_ms = cx__intent_wall_ms(),
                   .t0 = mono_ms_f()};

    /* 1. Validate: an invalid command never claims anything. */
    cx_violation_t viol[4];
    cx_violations_t v = {viol, 4, 0};
    int rc = cx_validate(cmd->meta, cmd->msg, &v);
    if (rc != 0) {
        cx_error_set(err, rc, v.count ? viol[0].path : NULL, "command invalid: %s (%s)",
                     v.count ? viol[0].message : "", v.count ? viol[0].rule : "");
        return finish_early(ob, &rp, res, rc, "invalid", false);
    }

    /* 2. The intent key. */
    if (cmd->intent_key) {
        size_t len;
        rc = cx__intent_check_key(cmd->intent_key, &len, err);
        if (rc != 0)
            return finish_early(ob, &rp, res, rc, "invalid", false);
        memcpy(res->intent_key, cmd->intent_key, len + 1);
    } else {
        cx_buf_t kb;
        cx_buf_init_fixed(&kb, res->intent_key, sizeof res->intent_key);
        rc = cx_dedupe_key(cmd->meta, cmd->msg, cmd->keyring, &kb, err);
        if (rc == CX_ENOSPC)
            rc = cx_error_set(err, CX_EINVAL, "intent_key", "intent key longer than %d",
                              CX_DEDUPE_KEY_MAX);
        if (rc != 0) {
            res->intent_key[0] = '\0';
            return finish_early(ob, &rp, res, rc, "invalid", false);
        }
    }
    const char *key = res->intent_key;
    uint32_t ttl = ob->intent_ttl_s                ? ob->intent_ttl_s
                   : cmd->meta->dedupe_ttl_seconds ? cmd->meta->dedupe_ttl_seconds
                                                   : CX_INTENT_DEFAULT_TTL_S;

    /* 3. Claim, or wait for the caller that holds it. */
    double wait_until = mono_ms_f() + ob->wait_ms;
    uint32_t poll = 1;
    for (;;) {
        rc = ob->intents->ops->claim(ob->intents, key, ob->lease_ms, ttl, &res->intent, err);
        if (rc != 0)
            return finish_early(ob, &rp, res, rc, "error", true);
        res->state = res->intent.state;
        if (res->intent.mine)
            break;
        if (res->intent.state != CX_INTENT_SENDING) {
            /* A replay: the stored outcome, without calling the provider. */
            res->replayed = 1;
            res->code = res->intent.state == CX_INTENT_DONE ? 0 : res->intent.code;
            if (res->intent.state == CX_INTENT_IN_DOUBT)
                res->code = CX_EIN_DOUBT;
            if (res->code == 0 || res->intent.state == CX_INTENT_FAILED)
                decode_result(cmd, arena, res);
            if (res->intent.lapsed) {
                /* We just found a sender that died or overran: this is news, count it. */
                cx_counter_inc(ob->in_doubt_total, (const char *[]){cmd->connector, rp.capability},
                               1);
                cx_error_set(err, CX_EIN_DOUBT, NULL,
                             "intent lease expired while sending: in doubt, not resent");
                report(ob, &rp, "in_doubt", res);
                return res->code;
            }
            if (res->code != 0)
                cx_error_set(err, res->code, NULL, "replay of an intent that is %s",
                             cx_intent_state_name(res->intent.state));
            report(ob, &rp, "replayed", res);
            return res->code;
        }
        if (mono_ms_f() >= wait_until) {
            cx_error_set(err, CX_EIN_PROGRESS, NULL, "another caller is still sending it");
            return finish_early(ob, &rp, res, CX_EIN_PROGRESS, "retry_later", false);
        }
        sleep_ms(poll);
        poll = poll * 2 > 25 ? 25 : poll * 2;
    }
    char token[CX_DEDUPE_TOKEN_SIZE];
    memcpy(token, res->intent.token, sizeof token);

    /* 4. The breaker and the rate limits; a refusal releases the claim. */
    int probe = 0;
    uint32_t retry = 0;
    const char *acct = nz(cmd->account_id);
    rc = cx__breaker_allow(ob->breaker, cmd->connector, acct, cx__mono_ms(), &probe, &retry);
    const char *refusal = "circuit_open";
    if (rc == CX_ECIRCUIT_OPEN) {
        cx_error_set(err, rc, NULL, "circuit open for this connector and account");
    } else {
        rc = take_tokens(ob, cmd, &retry, err);
        refusal = rc == CX_ERATE_LIMITED ? "rate_limited" : "error";
        if (rc == CX_ERATE_LIMITED)
            cx_error_set(err, rc, NULL, "local rate limit: retry after %u ms", retry);
        if (rc != 0 && probe)
            cx__breaker_record(ob->breaker, cmd->connector, acct, CX__BR_NEUTRAL, 1, 0,
                               cx__mono_ms());
    }
    if (rc != 0) {
        cx_error_t ignored;
        cx_error_clear(&ignored);
        ob->intents->ops->release(ob->intents, key, token, &ignored);
        cx__intent_none(&res->intent);
        res->state = CX_INTENT_NONE;
        res->retry_after_ms = retry;
        return finish_early(ob, &rp, res, rc, refusal, true);
    }

    /* 5. The provider call. */
    cx_outbound_reply_t reply;
    memset(&reply, 0, sizeof reply);
    cx_error_t serr;
    cx_error_clear(&serr);
    int src = cmd->send(cmd->send_ud, cmd, key, arena, &reply, &serr);
    reply.provider_message_id[CX_INTENT_ID_MAX] = '\0';
    reply.provider_code[CX_INTENT_CODE_MAX] = '\0';
    if (src == 0 && reply.provider_message_id[0] == '\0')
        pmid_from_result(reply.result, reply.provider_message_id, sizeof reply.provider_message_id);
    cx__breaker_record(ob->breaker, cmd->connector, acct, breaker_outcome(src), probe,
                       reply.retry_after_ms, cx__mono_ms());
    if (src != 0 && err && err->code == 0)
        *err = serr;

    /* 6. Store the outcome. */
    cx_intent_t *rec = malloc(sizeof *rec);
    if (rec == NULL) {
        /* Cannot build the record: leave `sending`; its lease makes it in doubt later. */
        res->code = cx_error_set(err, src == 0 ? CX_ENOMEM : src, NULL,
                                 "outbound: out of memory storing the outcome");
        report(ob, &rp, "error", res);
        return res->code;
    }
    cx__intent_none(rec);
    memcpy(rec->token, token, sizeof token);
    rec->http_status = reply.http_status;
    memcpy(rec->provider_message_id, reply.provider_message_id, sizeof rec->provider_message_id);
    memcpy(rec->provider_code, reply.provider_code, sizeof rec->provider_code);
    const char *outcome;
    if (src == 0) {
        rec->state = CX_INTENT_DONE;
        outcome = "sent";
    } else if (src == CX_EIN_DOUBT) {
        rec->state = CX_INTENT_IN_DOUBT;
        rec->code = CX_EIN_DOUBT;
        outcome = "in_doubt";
    } else if (is_permanent(src)) {
        rec->state = CX_INTENT_FAILED;
        rec->code = src;
        outcome = "failed";
    } else {
        rec->state = CX_INTENT_NONE;
        rec->code = src;
        outcome = "retry_later";
    }
    if (reply.result && cmd->result_meta && rec->state != CX_INTENT_NONE) {
        cx_buf_t rb;
        cx_buf_init_fixed(&rb, rec->result, sizeof rec->result);
        if (cx_to_json(cmd->result_meta, reply.result, &rb) == 0 && rb.len <= CX_INTENT_RESULT_MAX)
            rec->result_len = rb.len;
        else
            rec->result_len = 0; /* too large to keep: replays get the id, not the result */
        rec->result[rec->result_len] = '\0';
    }
    res->result = reply.result;
    res->retry_after_ms = reply.retry_after_ms;

    if (rec->state == CX_INTENT_NONE) {
        /* The provider did not act on it: give the key back so the command can be retried. */
        cx_error_t ignored;
        cx_error_clear(&ignored);
        ob->intents->ops->release(ob->intents, key, token, &ignored);
        res->intent = *rec;
        res->intent.token[0] = '\0';
        res->state = CX_INTENT_NONE;
        res->code = src;
        free(rec);
        report(ob, &rp, outcome, res);
        return src;
    }
    cx_error_t ferr;
    cx_error_clear(&ferr);
    rc = ob->intents->ops->finish(ob->intents, key, rec, ttl, &res->intent, &ferr);
    if (rc != 0) {
        /* The provider has acted; we could not record it. The claim stays `sending` and
         * becomes in doubt when its lease runs out: a retry is never sent blindly. */
        res->intent = *rec;
        res->state = rec->state;
        res->code = src;
        free(rec);
        cx_log_record_t r;
        if (cx_log_begin(&r, ob->logger, CX_LOG_ERROR)) {
            cx_log_set_connector(&r, cmd->connector);
            cx_log_set_correlation_id(&r, cmd->correlation_id);
            cx_log_set_dedupe_key(&r, key);
            cx_log_set_error(&r, rc);
            cx_log_set_msg(&r, "outbound outcome not stored; the intent will turn in doubt");
            cx_log_emit(&r);
        }
        if (src == CX_EIN_DOUBT)
            cx_counter_inc(ob->in_doubt_total, (const char *[]){cmd->connector, rp.capability}, 1);
        report(ob, &rp, outcome, res);
        return src;
    }
    free(rec);
    res->state = res->intent.state;
    if (!res->intent.mine) {
        /* Reconciled meanwhile (the echo came first): what is stored wins. */
        res->code = res->intent.state == CX_INTENT_DONE       ? 0
                    : res->intent.state == CX_INTENT_IN_DOUBT ? CX_EIN_DOUBT
                                                              : res->intent.code;
        outcome = res->code == 0 ? "sent" : outcome;
    } else {
        res->code = src;
    }
    if (res->code == CX_EIN_DOUBT)
        cx_counter_inc(ob->in_doubt_total, (const char *[]){cmd->connector, rp.capability}, 1);
    report(ob, &rp, outcome, res);
    return res->code;
}

/* ---- Reconcile and lookup ----------------------------------------------------------------- */

int cx_outbound_reconcile(cx_outbound_t *ob, const char *intent_key,
                          const char *provider_message_id, cx_intent_state_t status,
                          cx_error_t *err)
{
    if (ob == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "outbound is NULL");
    int64_t started = cx__intent_wall_ms();
    double t0 = mono_ms_f();
    cx_intent_t *it = malloc(sizeof *it);
    if (it == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "outbound: out of memory");
    int rc =
        ob->intents->ops->reconcile(ob->intents, intent_key, status, provider_message_id, it, err);
    if (rc == 0 && it->mine) {
        cx_log_record_t r;
        if (cx_log_begin(&r, ob->logger, CX_LOG_INFO)) {
            cx_log_set_dedupe_key(&r, intent_key);
            cx_log_set_outcome(&r, "reconciled");
            cx_log_set_latency_ms(&r, mono_ms_f() - t0);
            cx_log_set_pii(&r, "intent_state", cx_intent_state_name(it->state), CX_PII_NONE);
            cx_log_set_msg(&r, "outbound intent reconciled from the provider's echo");
            cx_log_emit(&r);
        }
        if (ob->audit) {
            cx_outbound_audit_t a = {
                .action = "outbound.reconcile",
                .connector = "",
                .capability = "",
                .tenant_id = "",
                .account_id = "",
                .correlation_id = "",
                .actor = "provider",
                .target = "",
                .intent_key = intent_key,
                .outcome = "reconciled",
                .code = it->code,
                .provider_message_id = it->provider_message_id,
                .http_status = 0,
                .started_ms = started,
                .finished_ms = cx__intent_wall_ms(),
            };
            ob->audit(ob->audit_ud, &a);
        }
    }
    free(it);
    return rc;
}

int cx_outbound_lookup(cx_outbound_t *ob, const char *intent_key, cx_intent_t *out, cx_error_t *err)
{
    if (ob == NULL || out == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "outbound or out is NULL");
    return ob->intents->ops->get(ob->intents, intent_key, out, err);
}

cx_breaker_state_t cx_outbound_breaker_state(cx_outbound_t *ob, const char *connector,
                                             const char *account_id)
{
    if (ob == NULL || connector == NULL)
        return CX_BREAKER_CLOSED;
    return cx__breaker_state(ob->breaker, connector, nz(account_id), cx__mono_ms());
}
