/* Private: the runtime object shared by the pipeline files. */
#ifndef CX_INBOUND_RUNTIME_INTERNAL_H
#define CX_INBOUND_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/secrets.h"
#include "cx/runtime.h"
#include "cx/queue.h"

#define CX__MAX_CONNECTORS 64
#define CX__MAX_HANDLERS 32
#define CX__DEAD_SEEN_MAX 64

typedef struct cx_handler_s {
    char capability[32];
    cx_handler_fn fn;
    void *ud;
} cx_handler_t;

/* A rate-limit rule, copied (cx_rate_limit_rule_t). */
typedef struct cx__rule_s {
    char *tenant;     /* NULL = every tenant */
    char *capability; /* NULL = all capabilities */
    uint64_t interval_us;
    uint32_t burst;
    uint64_t per_day;
} cx__rule_t;

struct cx__workers_s; /* workers.c */

typedef struct cx_account_s {
    char *connector;
    char *account_id;
    char *tenant_id;
} cx_account_t;

struct cx_runtime_s {
    cx_runtime_config_t cfg;
    char service[64];
    char environment[16];
    char instance_id[24]; /* random per process: prefix of generated correlation ids */
    atomic_uint_fast64_t request_counter;
    cx_secrets_t *secrets;
    cx_dedupe_store_t *dedupe;
    int own_dedupe;
    cx_logger_t *log;
    int own_log;
    cx_metrics_t *metrics;
    int own_metrics;
    cx_metrics_std_t std;
    unsigned char pseudonym_key[64];
    size_t pseudonym_key_len;
    int dev_pseudonym_key; /* the fixed development key is in use (refused outside development) */
    /* Configured before serving, read-only afterwards (no lock on the hot path). */
    const cx_connector_t *connectors[CX__MAX_CONNECTORS];
    size_t n_connectors;
    cx_handler_t handlers[CX__MAX_HANDLERS];
    size_t n_handlers;
    cx_account_t *accounts; /* sorted by (connector, account_id) */
    size_t n_accounts, cap_accounts;
    cx_secret_source_fn secret_source; /* consulted by cx_ctx_secret before the files */
    void *secret_source_ud;
    /* Completions the store lost (it was down after handlers ran): retried before the next
     * claims, so the provider's redelivery finds them done instead of running them again. */
    pthread_mutex_t pending_mu;
    atomic_size_t n_pending;
    cx_dedupe_item_t *pending;
    size_t cap_pending;
    /* Durable processing (workers.c, dead_letters.c). */
    int queued; /* handler mode resolved at create */
    cx_queue_t *queue;
    int own_queue;
    cx_dlq_t *dlq;
    int own_dlq;
    cx_ratelimit_t *ratelimit; /* NULL: no rules */
    int own_ratelimit;
    cx__rule_t *rules;
    size_t n_rules;
    char consumer[CX_QUEUE_CONSUMER_MAX + 1];
    cx_counter_t *m_queued;       /* events_queued_total{connector,capability} */
    cx_counter_t *m_retried;      /* events_retried_total{connector,capability} */
    cx_counter_t *m_rate_limited; /* rate_limited_total{tenant} */
    cx_gauge_t *g_depth, *g_pending, *g_scheduled, *g_oldest;
    cx_gauge_t *g_dead;         /* dead_letters{connector,capability} */
    pthread_mutex_t workers_mu; /* workers */
    struct cx__workers_s *workers;
    pthread_mutex_t gauge_mu;  /* dead_seen */
    cx_dlq_count_t *dead_seen; /* groups the dead_letters gauge has shown (CX__DEAD_SEEN_MAX) */
    size_t n_dead_seen;
};

#define CX__MAX_PENDING 65536

/* Monotonic milliseconds (stores/durable_common.c). */
int64_t cx__mono_now_ms(void);
const char *cx__code_name(int rc);
const char *cx__accounts_lookup(const cx_runtime_t *rt, const char *connector,
                                const char *account_id);
void cx__count_request(cx_runtime_t *rt, const char *connector, int status, double ms);
void cx__count_item(cx_runtime_t *rt, const char *connector, const char *capability,
                    const char *outcome, const char *error_code);
/* The same for n alike items at once. */
void cx__count_items(cx_runtime_t *rt, const char *connector, const char *capability,
                     const char *outcome, const char *error_code, uint64_t n);
void cx__pending_add(cx_runtime_t *rt, const cx_dedupe_item_t *items, size_t n);
void cx__pending_flush(cx_runtime_t *rt);
void cx__pending_free(cx_runtime_t *rt);
void cx__observe_handler(cx_runtime_t *rt, const char *connector, const char *capability,
                         double ms);
/* n handler latencies of one capability at once. */
void cx__observe_handlers(cx_runtime_t *rt, const char *connector, const char *capability,
                          const double *ms, size_t n);

/* Sets the message's tenant_id field (when its type has one). */
void cx__stamp_tenant(ProtobufCMessage *msg, const char *tenant);
/* The handler of a capability ("*" as the fallback), or NULL. */
const cx_handler_t *cx__handler_for(const cx_runtime_t *rt, const char *capability);

/* Durable processing (workers.c). */
/* The rate-limit buckets of an item: the tenant's and the tenant's for this capability, each
 * from the most specific matching rule (keys are written into keys). Returns how many. */
size_t cx__rate_checks(const cx_runtime_t *rt, const char *tenant, const char *capability,
                       cx_ratelimit_check_t *c, char keys[2][CX_RATELIMIT_KEY_MAX + 1]);
int cx__durable_init(cx_runtime_t *rt, cx_error_t *err);
void cx__durable_free(cx_runtime_t *rt);
/* Wall-clock Unix milliseconds. */
int64_t cx__now_wall_ms(void);

/* One item the pipeline dead-letters (dead_letters.c). Borrowed for the call. */
typedef struct cx__dead_item_s {
    const char *id; /* NULL: derived from key, else from body hash + index */
    const char *connector;
    const cx_event_t *ev; /* msg may be NULL */
    const char *tenant;
    const char *key;
    const char *token; /* the claim to release, or NULL */
    uint32_t done_ttl_s;
    const char *correlation_id;
    const char *reason; /* "permanent", "exhausted", "invalid" */
    int code;
    const char *message;
    uint32_t attempts;
    int64_t first_ms;
    size_t index;
} cx__dead_item_t;

/* Writes dead letters for n items (one store call each); body/body_len hash the ids of items
 * without a key. Returns 0 or the first store error (the caller answers 503). */
int cx__dead_letter_items(cx_runtime_t *rt, const cx__dead_item_t *items, size_t n,
                          const char *body, size_t body_len, cx_error_t *err);
/* Stores one encoded dead letter (record already built) and counts it. */
int cx__dead_letter_put(cx_runtime_t *rt, const char *id, const char *connector,
                        const char *capability, int64_t dead_ms, const void *rec, size_t len,
                        cx_error_t *err);

#endif
