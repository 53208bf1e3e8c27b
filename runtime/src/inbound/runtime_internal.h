/* Private: the runtime object shared by the pipeline files. */
#ifndef CX_INBOUND_RUNTIME_INTERNAL_H
#define CX_INBOUND_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/secrets.h"
#include "cx/runtime.h"

#define CX__MAX_CONNECTORS 64
#define CX__MAX_HANDLERS 32

typedef struct cx_handler_s {
    char capability[32];
    cx_handler_fn fn;
    void *ud;
} cx_handler_t;

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
    /* Completions the store lost (it was down after handlers ran): retried before the next
     * claims, so the provider's redelivery finds them done instead of running them again. */
    pthread_mutex_t pending_mu;
    atomic_size_t n_pending;
    cx_dedupe_item_t *pending;
    size_t cap_pending;
};

#define CX__MAX_PENDING 65536

int64_t cx__mono_ms(void);
const char *cx__code_name(int rc);
const char *cx__accounts_lookup(const cx_runtime_t *rt, const char *connector,
                                const char *account_id);
void cx__count_request(cx_runtime_t *rt, const char *connector, int status, double ms);
void cx__count_item(cx_runtime_t *rt, const char *connector, const char *capability,
                    const char *outcome, const char *error_code);
void cx__pending_add(cx_runtime_t *rt, const cx_dedupe_item_t *items, size_t n);
void cx__pending_flush(cx_runtime_t *rt);
void cx__pending_free(cx_runtime_t *rt);
void cx__observe_handler(cx_runtime_t *rt, const char *connector, const char *capability,
                         double ms);

#endif
