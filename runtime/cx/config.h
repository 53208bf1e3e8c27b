/* Private: the configuration of `cx serve` (every key is documented in docs/cx.md).
 *
 * Sources, later ones winning: built-in defaults < the JSON file (--config) < environment
 * variables (CX_ENV, CX_LISTEN, CX_SECRETS_DIR, CX_REDIS, CX_LOG_LEVEL, CX_HANDLER_MODE) <
 * command-line flags.
 * Lists add up instead: accounts and connector libraries from the file, then from flags.
 */
#ifndef CX_CLI_CONFIG_H
#define CX_CLI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cx/log.h"
#include "cx/runtime.h"

#define CX_SERVE_MAX_LIBS 32

typedef struct cx_serve_account_s {
    char *connector;
    char *account_id;
    char *tenant_id;
} cx_serve_account_t;

typedef struct cx_serve_config_s {
    cx_environment_t environment;
    char listen_host[256];
    int listen_port;
    char *secrets_dir; /* NULL = none */
    int have_redis;
    char redis_host[256];
    int redis_port;
    char *redis_password_file; /* NULL = no AUTH */
    int redis_pool_size;       /* 0 = threads + 2 */
    size_t max_body_bytes;
    uint32_t processing_ttl_ms;
    uint32_t handler_deadline_ms;
    cx_log_level_t log_level;
    cx_serve_account_t *accounts;
    size_t n_accounts, cap_accounts;
    char *libs[CX_SERVE_MAX_LIBS];
    size_t n_libs;
    /* The connector ids to host, comma-separated; NULL = every built-in and loaded one. */
    char *connectors;
    /* The outbound routes (serve_outbound.h): the API key file (NULL = <secrets_dir>/runtime/
     * api_keys), the audit file store (NULL = Redis when configured), the "oauth" object. */
    char *api_keys_file;
    char *audit_dir;
    struct json_t *oauth; /* a reference, NULL = no OAuth apps */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0 = no per-IP limit */
    unsigned connection_timeout_s;
    size_t max_header_bytes;
    int expose_unauthenticated;
    unsigned threads; /* 0 = the number of online cores */
    unsigned pipeline_threads; /* webhook pipeline threads; 0 = 2 per online core */
    unsigned drain_timeout_s;
    /* Durable processing (docs/durable-processing.md). handler_mode is INLINE or QUEUED once
     * loaded: unset, it follows the final environment (queued in staging and production,
     * inline in development). The rest apply in queued mode only; 0 = the library's default. */
    cx_handler_mode_t handler_mode;
    unsigned workers;
    unsigned tenant_concurrency;
    uint32_t worker_claim_ttl_ms;
    uint32_t queued_claim_ttl_ms;
    cx_retry_policy_t retry;
    cx_rate_limit_rule_t *rate_limits; /* tenant/capability strings owned (NULL = every one) */
    size_t n_rate_limits;
    /* Test-only (hidden flags): slow the default handler; log every processed key. */
    uint32_t test_handler_delay_ms;
    char *count_file;
} cx_serve_config_t;

/* Fills *cfg from defaults, the file, the environment and the flags (argv[0] is "serve").
 * Returns CX_EXIT_OK, CX_EXIT_USAGE (bad flag), CX_EXIT_CONFIG (bad file or value), or -1 when
 * --help was printed. One line on stderr for every failure. */
int cx_serve_config_load(cx_serve_config_t *cfg, int argc, char **argv);
void cx_serve_config_free(cx_serve_config_t *cfg);

/* Adds (or replaces) an account. Returns 0 or -1 (no memory, empty value). */
int cx_serve_config_add_account(cx_serve_config_t *cfg, const char *connector,
                                const char *account_id, const char *tenant_id);
/* Parses "CONNECTOR:ACCOUNT_ID=TENANT" into add_account. Returns 0 or -1. */
int cx_serve_config_account_flag(cx_serve_config_t *cfg, const char *spec);

#endif
