/* Outbound commands: exactly-once sends through an intent store, with rate limits and a
 * circuit breaker in front of the provider.
 *
 * A command (a generated message of kind COMMAND, e.g. cx.messaging.v1.SendMessageCommand)
 * goes through these steps in cx_outbound_send():
 *
 *   1. validate it (cx_validate on its generated meta): an invalid command never claims;
 *   2. build its intent key, the command's dedupe key
 *      ("<channel>:outbound:<tenant>:<client_message_id>" for SendMessageCommand);
 *   3. claim the key in the intent store, persisting `sending` (with a lease) before anything
 *      is sent; optionally WAIT until Redis replicas have it, so a failover cannot forget it.
 *      A key already there is a replay: the stored result is returned and the provider is not
 *      called. A key another caller is sending right now is waited for (polling, bounded),
 *      and its result returned;
 *   4. the circuit breaker of (connector, account) and the token buckets (per provider, per
 *      account, per account and recipient pair) must let it through; if not, the claim is
 *      released and the caller is told when to retry (CX_ECIRCUIT_OPEN, CX_ERATE_LIMITED);
 *   5. the connector's send function calls the provider (usually through cx_http_send),
 *      passing the intent key where the provider echoes it back (WhatsApp
 *      biz_opaque_callback_data, Messenger metadata, SendGrid custom_args, SES tags);
 *   6. the outcome is stored: `done` with the provider message id and the result, or `failed`
 *      with the provider's error (permanent: a replay gets the same failure), or `in_doubt`
 *      (CX_EIN_DOUBT: the request may have reached the provider and no answer came back; it is
 *      never resent automatically). A transient failure where the provider did not act
 *      (5xx, 429, 401, nothing sent) releases the claim, so the caller may retry the same
 *      command later;
 *   7. the audit hook is called with the outcome, a log line is written and the metrics are
 *      counted (outbound_failures_total for local refusals, outbound_in_doubt_total).
 *
 * An in-doubt intent is resolved by cx_outbound_reconcile() when the provider's status echo
 * arrives carrying the intent key. A `sending` intent whose lease ran out (its process died
 * after, or while, calling the provider) becomes `in_doubt` at the next claim: after a crash
 * nothing is resent blindly.
 *
 * Stores follow the dedupe store's pattern (cx/dedupe_store.h): a struct of function pointers,
 * an embedded implementation (one process) and a Redis one (shared). Values carry a format
 * version. docs/outbound.md has the state machine and the failure cases.
 *
 *     cx_outbound_command_t cmd = {.meta = &cx_messaging_send_message_command_meta,
 *         .msg = &m.base, .connector = "whatsapp", .account_id = "1065", .send = wa_send};
 *     rc = cx_outbound_send(ob, &cmd, &arena, &res, &err);  // res.intent.provider_message_id
 */
#ifndef CX_OUTBOUND_H
#define CX_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cx/arena.h"
#include "cx/dedupe_store.h"
#include "cx/error.h"
#include "cx/log.h"
#include "cx/metrics.h"
#include "cx/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================== */
/* Intent store                                                                             */
/* ======================================================================================== */

/* Longest provider message id, provider error code and stored result (bytes, NUL excluded). */
#define CX_INTENT_ID_MAX 256
#define CX_INTENT_CODE_MAX 64
#define CX_INTENT_RESULT_MAX 8192
/* How long a finished intent is kept when neither the command nor the config says: 7 days. */
#define CX_INTENT_DEFAULT_TTL_S (7u * 24u * 3600u)

typedef enum {
    CX_INTENT_NONE = 0,    /* no intent under the key (or released) */
    CX_INTENT_SENDING = 1, /* claimed; the provider call is (or may be) under way */
    CX_INTENT_DONE = 2,    /* the provider accepted it; provider_message_id is set */
    CX_INTENT_FAILED = 3,  /* the provider rejected it permanently; code and provider_code */
    CX_INTENT_IN_DOUBT = 4 /* it may have reached the provider; waiting for reconciliation */
} cx_intent_state_t;

/* One stored intent. Caller-owned (about 9 KiB: keep one per call, not arrays on a stack).
 * Stored values (format v1, Redis and embedded alike):
 *   v1|<state>|<token>|<updated unix ms>|<lease until unix ms>|<code>|<http status>|
 *     <len>:<provider message id>|<len>:<provider code>|<result bytes>
 * A value this release cannot parse (a later format) reads as IN_DOUBT: not resent, and not
 * claimed to be done either. */
typedef struct cx_intent_s {
    cx_intent_state_t state;          /* read-only */
    int mine;                         /* read-only: claim: this call created the `sending` record;
                                       * finish: this call's outcome was stored */
    int lapsed;                       /* read-only: claim: this call found a `sending` intent whose
                                       * lease had run out and turned it into IN_DOUBT */
    char token[CX_DEDUPE_TOKEN_SIZE]; /* the claim's token (32 hex digits); opaque, not logged */
    int64_t updated_ms;     /* read-only: Unix ms of the last change (the store's clock) */
    int64_t lease_until_ms; /* read-only: SENDING: after this the claim counts as abandoned */
    int code;               /* DONE 0; FAILED the CX_E* code; IN_DOUBT CX_EIN_DOUBT */
    int http_status;        /* the provider's last HTTP status, 0 when none */
    char provider_message_id[CX_INTENT_ID_MAX + 1];
    char provider_code[CX_INTENT_CODE_MAX + 1]; /* the provider's own error code ("131047") */
    size_t result_len;
    char result[CX_INTENT_RESULT_MAX + 1]; /* the stored result (JSON of the result message),
                                            * NUL-terminated */
} cx_intent_t;

typedef struct cx_intent_store_s cx_intent_store_t;

typedef struct cx_intent_store_ops_s {
    /* Claims key: when absent, stores SENDING with a new token, a lease of lease_ms and a key
     * TTL of ttl_s, and returns it with out->mine = 1. When present, returns the stored intent
     * (mine = 0); a SENDING intent whose lease has run out is turned into IN_DOUBT first (its
     * owner died or overran: the request may have gone out). Returns 0, CX_EINVAL (bad key or
     * zero lease/TTL), CX_EUNAVAILABLE (store down, or fewer replicas acknowledged the claim
     * than asked: then the claim is withdrawn), CX_ENOMEM, CX_ENOSPC, CX_ECRYPTO. */
    int (*claim)(cx_intent_store_t *s, const char *key, uint32_t lease_ms, uint32_t ttl_s,
                 cx_intent_t *out, cx_error_t *err);
    /* Reads key into out (state NONE when absent). Returns 0, CX_EINVAL, CX_EUNAVAILABLE. */
    int (*get)(cx_intent_store_t *s, const char *key, cx_intent_t *out, cx_error_t *err);
    /* Stores the outcome rec (state DONE, FAILED or IN_DOUBT, rec->token the claim's) with a
     * key TTL of ttl_s, if the key still holds this claim (SENDING or IN_DOUBT with this
     * token) or is absent. Otherwise (reconciled meanwhile, or another claim) nothing changes.
     * out gets the stored intent, out->mine = 1 when it is rec. Returns 0, CX_EINVAL,
     * CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*finish)(cx_intent_store_t *s, const char *key, const cx_intent_t *rec, uint32_t ttl_s,
                  cx_intent_t *out, cx_error_t *err);
    /* Removes key if it is SENDING under token (the provider did not act on it). Returns 0
     * (also when the key is gone or held by something else), CX_EINVAL, CX_EUNAVAILABLE. */
    int (*release)(cx_intent_store_t *s, const char *key, const char *token, cx_error_t *err);
    /* The provider's echo: an IN_DOUBT or SENDING intent becomes state (DONE or FAILED) with
     * provider_message_id (may be NULL for FAILED); a DONE or FAILED one is left as it is.
     * out gets the stored intent (mine = 1 when this call changed it). Returns 0,
     * CX_ENOTFOUND (no intent under key), CX_EINVAL, CX_EUNAVAILABLE, CX_ENOMEM. */
    int (*reconcile)(cx_intent_store_t *s, const char *key, cx_intent_state_t state,
                     const char *provider_message_id, cx_intent_t *out, cx_error_t *err);
    /* 0 when the store is reachable, else CX_EUNAVAILABLE. */
    int (*ping)(cx_intent_store_t *s, cx_error_t *err);
    /* Frees the store. No call may be running on it. */
    void (*destroy)(cx_intent_store_t *s);
} cx_intent_store_ops_t;

struct cx_intent_store_s {
    const cx_intent_store_ops_t *ops; /* read-only */
    char prefix[96];                  /* read-only: "cx:<environment>:intent:" */
};

/* The embedded intent store (one process: development and tests). environment as for
 * cx_dedupe_store_embedded; max_keys bounds live keys (0 = 2^20; claim then fails with
 * CX_ENOSPC). *out is the caller's (cx_intent_store_destroy). Returns 0, CX_EINVAL,
 * CX_ENOMEM. Thread-safe.
 *
 *     cx_intent_store_t *is;
 *     if (cx_intent_store_embedded("development", 0, &is, &err) != 0) ...;
 */
CX_API int cx_intent_store_embedded(const char *environment, size_t max_keys,
                                    cx_intent_store_t **out, cx_error_t *err);

/* Options of the Redis intent store beyond the connection. */
typedef struct cx_intent_redis_options_s {
    int wait_replicas;        /* after a claim, WAIT until this many replicas have it (0 = no
                               * WAIT); fewer acknowledgements withdraw the claim and the
                               * send fails with CX_EUNAVAILABLE before calling the provider */
    uint32_t wait_timeout_ms; /* WAIT's timeout; 0 = 200. Keep it below command_timeout_ms. */
} cx_intent_redis_options_t;

/* The Redis intent store (hiredis): every process sharing the Redis sees the same intents.
 * Each operation is one Lua script (one round trip; two with WAIT, pipelined on the same
 * connection: one write). The lease is judged by Redis's clock (TIME), not the callers'.
 * opts may be NULL. Returns 0, CX_EINVAL, CX_ENOMEM, or CX_ENOT_IMPLEMENTED without Redis
 * support. Thread-safe; not fork-safe.
 *
 *     cx_redis_options_t ro = {.host = "127.0.0.1", .port = 6379};
 *     rc = cx_intent_store_redis("production", &ro, NULL, &is, &err);
 */
CX_API int cx_intent_store_redis(const char *environment, const cx_redis_options_t *redis,
                                 const cx_intent_redis_options_t *opts, cx_intent_store_t **out,
                                 cx_error_t *err);

/* Frees s (may be NULL); no call may be running on it.
 *
 *     cx_outbound_free(ob); cx_intent_store_destroy(is);   // the sender first
 */
static inline void cx_intent_store_destroy(cx_intent_store_t *s)
{
    if (s)
        s->ops->destroy(s);
}

/* "none", "sending", "done", "failed", "in_doubt" ("unknown" otherwise); static strings.
 * Thread-safe.
 *
 *     printf("%s\n", cx_intent_state_name(res.state));   // "in_doubt"
 */
CX_API const char *cx_intent_state_name(cx_intent_state_t state);

/* ======================================================================================== */
/* Outbound rate limits                                                                     */
/* ======================================================================================== */

/* Token buckets in front of a provider. Unlike the workers' limiter (cx/ratelimit.h, GCRA
 * with reservations: a queued item always runs at its reserved slot), a synchronous send is
 * either let through now (after waiting at most rate_wait_max_ms) or refused with a retry
 * time, so a refusal must not consume or reserve anything: take() is all-or-nothing. */

/* One token bucket to take from: key (without prefix; at most 256 bytes), refilled at
 * rate_per_s tokens per second up to burst, cost tokens taken. */
typedef struct cx_outbound_bucket_s {
    const char *key;
    double rate_per_s; /* > 0 */
    double burst;      /* >= cost */
    double cost;       /* > 0; usually 1 */
} cx_outbound_bucket_t;

typedef struct cx_outbound_limiter_s cx_outbound_limiter_t;

typedef struct cx_outbound_limiter_ops_s {
    /* Takes cost tokens from every bucket, atomically: from all of them, or (when any lacks
     * tokens) from none. Returns 0 (taken; *retry_after_ms = 0), CX_ERATE_LIMITED (nothing
     * taken; *retry_after_ms = when the emptiest bucket has enough again), CX_EINVAL,
     * CX_EUNAVAILABLE, CX_ENOMEM, CX_ENOSPC. n is at most 8. */
    int (*take)(cx_outbound_limiter_t *rl, const cx_outbound_bucket_t *buckets, size_t n,
                uint32_t *retry_after_ms, cx_error_t *err);
    int (*ping)(cx_outbound_limiter_t *rl, cx_error_t *err);
    void (*destroy)(cx_outbound_limiter_t *rl);
} cx_outbound_limiter_ops_t;

struct cx_outbound_limiter_s {
    const cx_outbound_limiter_ops_t *ops; /* read-only */
    char prefix[96];                      /* read-only: "cx:<environment>:outlimit:" */
};

/* The embedded limiter (in-process token buckets; the monotonic clock). Thread-safe.
 *
 *     cx_outbound_limiter_t *rl; cx_outbound_limiter_embedded("development", &rl, &err);
 */
CX_API int cx_outbound_limiter_embedded(const char *environment, cx_outbound_limiter_t **out,
                                        cx_error_t *err);
/* The Redis limiter: one Lua script takes from every bucket (Redis's clock; buckets expire
 * when full). Shared by every process. Returns as cx_intent_store_redis. Thread-safe.
 *
 *     rc = cx_outbound_limiter_redis("production", &ro, &rl, &err);
 */
CX_API int cx_outbound_limiter_redis(const char *environment, const cx_redis_options_t *redis,
                                     cx_outbound_limiter_t **out, cx_error_t *err);

/* Frees rl (may be NULL); no call may be running on it.
 *
 *     cx_outbound_free(ob); cx_outbound_limiter_destroy(rl);
 */
static inline void cx_outbound_limiter_destroy(cx_outbound_limiter_t *rl)
{
    if (rl)
        rl->ops->destroy(rl);
}

/* ======================================================================================== */
/* Outbound commands                                                                        */
/* ======================================================================================== */

typedef struct cx_outbound_s cx_outbound_t;
typedef struct cx_outbound_command_s cx_outbound_command_t;

/* What the connector's send function reports besides its return code. */
typedef struct cx_outbound_reply_s {
    char provider_message_id[CX_INTENT_ID_MAX + 1]; /* set on success (or taken from
                                                     * result's provider_message_id field) */
    ProtobufCMessage *result; /* optional: the result message (in the arena), stored as JSON
                               * with cmd->result_meta and returned on replays */
    int http_status;          /* the provider's last HTTP status */
    char provider_code[CX_INTENT_CODE_MAX + 1]; /* the provider's error code when rejected */
    uint32_t retry_after_ms; /* transient failures: when the provider wants us back */
} cx_outbound_reply_t;

/* The connector's send: performs cmd on the provider, putting intent_key where the provider
 * echoes it back. reply is zeroed by the caller; arena is for the result message (may be
 * NULL). Must return:
 *   0                   the provider accepted it (reply->provider_message_id set);
 *   CX_EIN_DOUBT        it may have reached the provider and no definite answer came back
 *                       (cx_http_send's CX_EIN_DOUBT, or any failure after the provider
 *                       may have accepted it, e.g. a 2xx whose body cannot be parsed);
 *   CX_EPROVIDER_REJECTED or a payload-class code (CX_EVALIDATION, CX_EHANDLER_PERMANENT,
 *                       ...): a permanent rejection: stored as FAILED, replays get it again;
 *   any other code      the provider did not act on it (CX_EPROVIDER, CX_ERATE_LIMITED,
 *                       CX_EPROVIDER_AUTH, CX_ECONFIG, CX_ENOMEM before sending, ...): the
 *                       claim is released and the same command may be sent again later.
 * Called from the thread of cx_outbound_send. */
typedef int (*cx_outbound_send_fn)(void *ud, const cx_outbound_command_t *cmd,
                                   const char *intent_key, cx_arena_t *arena,
                                   cx_outbound_reply_t *reply, cx_error_t *err);

/* One command to send. Everything is borrowed for the call. */
struct cx_outbound_command_s {
    const cx_msg_meta_t *meta;        /* the command's meta (kind COMMAND, with a dedupe key) */
    const ProtobufCMessage *msg;      /* the canonical command */
    const char *connector;            /* "whatsapp": labels, limits and the breaker */
    const char *account_id;           /* provider account: per-account limit and breaker */
    const char *tenant_id;            /* logs and audit */
    const char *correlation_id;       /* logs and audit */
    const char *actor;                /* audit: who asked (NULL = unknown) */
    const char *target;               /* audit: what it was sent to, without PII (NULL) */
    const char *rate_pair;            /* the recipient, for the per-pair limit (hashed, never
                                       * stored or logged in clear); NULL = no pair limit */
    const cx_keyring_t *keyring;      /* for key templates with PII segments; NULL = none */
    const cx_msg_meta_t *result_meta; /* to store reply->result and decode it on replay */
    const char *intent_key;           /* NULL = the command's dedupe key (the normal case) */
    cx_outbound_send_fn send;         /* required */
    void *send_ud;
};

/* The outcome of cx_outbound_send. Caller-owned (about 10 KiB). */
typedef struct cx_outbound_result_s {
    int code;                /* read-only: what cx_outbound_send returned */
    cx_intent_state_t state; /* read-only: the intent now (NONE: released or never claimed) */
    int replayed;            /* read-only: the stored result, the provider was not called */
    char intent_key[CX_DEDUPE_KEY_MAX + 1]; /* read-only */
    uint32_t retry_after_ms;  /* read-only: transient refusals: try again after this */
    ProtobufCMessage *result; /* read-only: the result message (in the arena) when
                               * result_meta and an arena were given and one is stored */
    cx_intent_t intent;       /* read-only: the stored intent (provider_message_id, ...) */
} cx_outbound_result_t;

/* One audit record's worth of facts about an outbound action. Strings are borrowed for the
 * call. outcome is one of: "sent", "replayed", "failed", "in_doubt", "retry_later",
 * "rate_limited", "circuit_open", "invalid", "reconciled", "error". */
typedef struct cx_outbound_audit_s {
    const char *action; /* "outbound.send" or "outbound.reconcile" */
    const char *connector;
    const char *capability;
    const char *tenant_id;
    const char *account_id;
    const char *correlation_id;
    const char *actor;
    const char *target;
    const char *intent_key; /* the dedupe key */
    const char *outcome;
    int code;                        /* 0 or the CX_E* code (cx_err_name for the record) */
    const char *provider_message_id; /* "" when none */
    int http_status;
    int64_t started_ms; /* Unix ms */
    int64_t finished_ms;
} cx_outbound_audit_t;

/* The audit hook (the audit module plugs in here). Called once per send or reconcile, after
 * the outcome is stored, from the calling thread; must be thread-safe. A non-zero return is
 * logged (error) and does not change the outcome: the send has happened. */
typedef int (*cx_outbound_audit_fn)(void *ud, const cx_outbound_audit_t *rec);

/* A token bucket's parameters; per_second 0 = no limit. burst 0 = max(1, per_second). */
typedef struct cx_outbound_rate_s {
    double per_second;
    double burst;
} cx_outbound_rate_t;

/* The limits of one connector (connector NULL: the default for connectors not listed). */
typedef struct cx_outbound_limits_s {
    const char *connector;
    cx_outbound_rate_t provider; /* every send of the connector */
    cx_outbound_rate_t account;  /* per account_id (WhatsApp: per business number) */
    cx_outbound_rate_t pair;     /* per (account_id, rate_pair) (WhatsApp: per number pair) */
} cx_outbound_limits_t;

typedef enum {
    CX_BREAKER_CLOSED = 0,   /* requests flow */
    CX_BREAKER_OPEN = 1,     /* refused (CX_ECIRCUIT_OPEN) until the open period ends */
    CX_BREAKER_HALF_OPEN = 2 /* one probe request is under way; others are refused */
} cx_breaker_state_t;

/* Configuration. Zero-initialise, then set what you need. Pointers are borrowed and must
 * outlive the cx_outbound_t (limits is copied, its connector strings too). */
typedef struct cx_outbound_config_s {
    cx_intent_store_t *intents;     /* required */
    cx_outbound_limiter_t *limiter; /* NULL = no rate limits */
    const cx_outbound_limits_t *limits;
    size_t n_limits;              /* at most 64 */
    uint32_t rate_wait_max_ms;    /* wait for tokens up to this long; 0 = do not wait */
    uint32_t breaker_threshold;   /* consecutive 429/401/403 outcomes that open; 0 = 5 */
    uint32_t breaker_open_ms;     /* first open period; 0 = 30000 (doubles per failed probe) */
    uint32_t breaker_open_max_ms; /* 0 = 300000 */
    uint32_t lease_ms;            /* `sending` lease: longer than any send can take (HTTP
                                   * deadline included); 0 = 120000 */
    uint32_t wait_ms;             /* how long a concurrent caller waits for the sender's
                                   * result before CX_EIN_PROGRESS; 0 = 15000 */
    uint32_t intent_ttl_s;        /* 0 = the command's dedupe_ttl_seconds, else 7 days */
    cx_outbound_audit_fn audit;   /* NULL = none */
    void *audit_ud;
    cx_logger_t *logger;   /* NULL = no logs */
    cx_metrics_t *metrics; /* NULL = no metrics */
} cx_outbound_config_t;

/* Creates the outbound sender (one per process is enough: it serves every connector).
 * Returns 0, CX_EINVAL (no intent store, bad limits), CX_ENOMEM. *out is the caller's.
 *
 *     cx_outbound_config_t oc = {.intents = is, .logger = lg, .metrics = reg};
 *     cx_outbound_t *ob; if (cx_outbound_new(&oc, &ob, &err) != 0) ...;
 */
CX_API int cx_outbound_new(const cx_outbound_config_t *cfg, cx_outbound_t **out, cx_error_t *err);
/* Frees ob (may be NULL). No call may be running. The stores are not freed.
 *
 *     cx_outbound_free(ob); cx_intent_store_destroy(is);
 */
CX_API void cx_outbound_free(cx_outbound_t *ob);

/* Sends cmd exactly once per intent key (see the header comment). res is filled in every
 * case (res->code is the return value). arena (may be NULL) receives the connector's result
 * message and, on replays, the decoded stored result. Returns:
 *   0                   sent now, or a replay of a sent command (res->replayed);
 *   CX_EIN_DOUBT        the request may have reached the provider; not resent; reconcile;
 *   CX_EPROVIDER_REJECTED (or the connector's permanent code)  rejected; replays get it too;
 *   CX_EPROVIDER, CX_ERATE_LIMITED, CX_EPROVIDER_AUTH, CX_ECIRCUIT_OPEN  not sent now, try
 *                       again later (res->retry_after_ms when known); nothing is stored;
 *   CX_EIN_PROGRESS     another caller is still sending it after wait_ms;
 *   CX_EVALIDATION, CX_EDEDUPE_KEY, CX_EINVAL  the command is invalid (nothing claimed);
 *   CX_EUNAVAILABLE     the intent store cannot be reached: nothing was sent;
 *   CX_ENOMEM, CX_ENOSPC.
 * Thread-safe.
 *
 *     cx_outbound_result_t res;
 *     if (cx_outbound_send(ob, &cmd, &arena, &res, &err) == 0) use(res.intent.provider_message_id);
 */
CX_API int cx_outbound_send(cx_outbound_t *ob, const cx_outbound_command_t *cmd, cx_arena_t *arena,
                            cx_outbound_result_t *res, cx_error_t *err);

/* Reconciles an intent from the provider's status echo: status CX_INTENT_DONE (the provider
 * has the message: sent, delivered, read) or CX_INTENT_FAILED (it reports a failure).
 * An IN_DOUBT (or still SENDING) intent takes the status and provider_message_id; a DONE or
 * FAILED one is kept. Audited as "reconciled". Returns 0, CX_ENOTFOUND (unknown key: expired,
 * or not ours), CX_EINVAL, CX_EUNAVAILABLE. Thread-safe.
 *
 *     // a WhatsApp status webhook carrying biz_opaque_callback_data = the intent key
 *     cx_outbound_reconcile(ob, echo_key, "wamid.HBg...", CX_INTENT_DONE, &err);
 */
CX_API int cx_outbound_reconcile(cx_outbound_t *ob, const char *intent_key,
                                 const char *provider_message_id, cx_intent_state_t status,
                                 cx_error_t *err);

/* Reads the stored intent under intent_key (state NONE when absent). Returns 0, CX_EINVAL,
 * CX_EUNAVAILABLE. Thread-safe.
 *
 *     cx_intent_t it; if (cx_outbound_lookup(ob, key, &it, &err) == 0 && it.state == ...)
 */
CX_API int cx_outbound_lookup(cx_outbound_t *ob, const char *intent_key, cx_intent_t *out,
                              cx_error_t *err);

/* The breaker state of (connector, account) (CLOSED when never seen). Thread-safe.
 *
 *     if (cx_outbound_breaker_state(ob, "whatsapp", "1065") == CX_BREAKER_OPEN) ...
 */
CX_API cx_breaker_state_t cx_outbound_breaker_state(cx_outbound_t *ob, const char *connector,
                                                    const char *account_id);

#ifdef __cplusplus
}
#endif

#endif /* CX_OUTBOUND_H */
