/* `cx serve` configuration: defaults < JSON file < environment < flags (config.h). */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "serve_outbound.h"

#define SUB "serve"

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

/* Replaces *slot with a copy of s (NULL clears). Returns 0 or -1. */
static int set_str(char **slot, const char *s)
{
    char *d = NULL;
    if (s && (d = dup_str(s)) == NULL)
        return -1;
    free(*slot);
    *slot = d;
    return 0;
}

/* base_dir + "/" + p unless p is absolute or base_dir is NULL. */
static char *resolve(const char *base_dir, const char *p)
{
    if (base_dir == NULL || p[0] == '/')
        return dup_str(p);
    size_t n = strlen(base_dir) + strlen(p) + 2;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s/%s", base_dir, p);
    return d;
}

int cx_serve_config_add_account(cx_serve_config_t *cfg, const char *connector,
                                const char *account_id, const char *tenant_id)
{
    if (!*connector || !*account_id || !*tenant_id)
        return -1;
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        cx_serve_account_t *a = &cfg->accounts[i];
        if (strcmp(a->connector, connector) == 0 && strcmp(a->account_id, account_id) == 0)
            return set_str(&a->tenant_id, tenant_id);
    }
    if (cfg->n_accounts == cfg->cap_accounts) {
        size_t cap = cfg->cap_accounts ? cfg->cap_accounts * 2 : 8;
        cx_serve_account_t *a = realloc(cfg->accounts, cap * sizeof *a);
        if (a == NULL)
            return -1;
        cfg->accounts = a;
        cfg->cap_accounts = cap;
    }
    cx_serve_account_t a = {dup_str(connector), dup_str(account_id), dup_str(tenant_id)};
    if (!a.connector || !a.account_id || !a.tenant_id) {
        free(a.connector);
        free(a.account_id);
        free(a.tenant_id);
        return -1;
    }
    cfg->accounts[cfg->n_accounts++] = a;
    return 0;
}

int cx_serve_config_account_flag(cx_serve_config_t *cfg, const char *spec)
{
    const char *colon = strchr(spec, ':');
    const char *eq = colon ? strchr(colon + 1, '=') : NULL;
    if (colon == NULL || eq == NULL)
        return -1;
    char conn[128], acc[512];
    size_t nc = (size_t)(colon - spec), na = (size_t)(eq - colon - 1);
    if (nc == 0 || nc >= sizeof conn || na == 0 || na >= sizeof acc || eq[1] == '\0')
        return -1;
    memcpy(conn, spec, nc);
    conn[nc] = '\0';
    memcpy(acc, colon + 1, na);
    acc[na] = '\0';
    return cx_serve_config_add_account(cfg, conn, acc, eq + 1);
}

static int add_lib(cx_serve_config_t *cfg, char *owned)
{
    if (owned == NULL)
        return -1;
    if (cfg->n_libs == CX_SERVE_MAX_LIBS) {
        free(owned);
        return -1;
    }
    cfg->libs[cfg->n_libs++] = owned;
    return 0;
}

void cx_serve_config_free(cx_serve_config_t *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->secrets_dir);
    free(cfg->redis_password_file);
    free(cfg->api_keys_file);
    free(cfg->audit_dir);
    json_decref(cfg->oauth);
    free(cfg->count_file);
    free(cfg->connectors);
    for (size_t i = 0; i < cfg->n_rate_limits; i++) {
        free((char *)cfg->rate_limits[i].tenant);
        free((char *)cfg->rate_limits[i].capability);
    }
    free(cfg->rate_limits);
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        free(cfg->accounts[i].connector);
        free(cfg->accounts[i].account_id);
        free(cfg->accounts[i].tenant_id);
    }
    free(cfg->accounts);
    for (size_t i = 0; i < cfg->n_libs; i++)
        free(cfg->libs[i]);
    memset(cfg, 0, sizeof *cfg);
}

static void defaults(cx_serve_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->environment = CX_ENV_DEVELOPMENT;
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->max_body_bytes = 1u << 20;
    cfg->processing_ttl_ms = 30000;
    cfg->handler_deadline_ms = 10000;
    cfg->log_level = CX_LOG_INFO;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 0;
    cfg->connection_timeout_s = 30;
    cfg->max_header_bytes = 32u << 10;
    cfg->drain_timeout_s = 10;
}

/* ---- The JSON file ------------------------------------------------------------------------ */

typedef struct {
    const char *file;
    const char *base_dir; /* relative paths in the file are relative to its directory */
} file_ctx_t;

static int bad(const file_ctx_t *fc, const char *key, const char *what)
{
    cx_cli_error(SUB, "config %s: \"%s\" %s", fc->file, key, what);
    return CX_EXIT_CONFIG;
}

static int get_uint(const file_ctx_t *fc, const char *key, json_t *v, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max) {
        char what[96];
        snprintf(what, sizeof what, "must be an integer from %llu to %llu", (unsigned long long)min,
                 (unsigned long long)max);
        return bad(fc, key, what);
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_string(const file_ctx_t *fc, const char *key, json_t *v, const char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return bad(fc, key, "must be a non-empty string");
    *out = json_string_value(v);
    return 0;
}

static int apply_env_name(cx_serve_config_t *cfg, const char *name)
{
    return cx_environment_parse(name, &cfg->environment) == 0 ? 0 : -1;
}

static int apply_level(cx_serve_config_t *cfg, const char *name)
{
    cx_log_level_t l;
    if (cx_log_level_parse(name, &l) != 0)
        return -1;
    cfg->log_level = l;
    return 0;
}

static int apply_redis_hostport(cx_serve_config_t *cfg, const char *s)
{
    if (cx_cli_parse_hostport(s, cfg->redis_host, sizeof cfg->redis_host, &cfg->redis_port) != 0 ||
        cfg->redis_port == 0)
        return -1;
    cfg->have_redis = 1;
    return 0;
}

static int file_redis(cx_serve_config_t *cfg, const file_ctx_t *fc, json_t *r)
{
    if (json_is_null(r)) {
        cfg->have_redis = 0;
        return 0;
    }
    if (!json_is_object(r))
        return bad(fc, "redis", "must be an object {host, port, password_file, pool_size}");
    const char *key;
    json_t *v;
    const char *s;
    uint64_t u;
    int rc;
    snprintf(cfg->redis_host, sizeof cfg->redis_host, "127.0.0.1");
    cfg->redis_port = 6379;
    json_object_foreach(r, key, v)
    {
        if (strcmp(key, "host") == 0) {
            if ((rc = get_string(fc, "redis.host", v, &s)) != 0)
                return rc;
            if (strlen(s) >= sizeof cfg->redis_host)
                return bad(fc, "redis.host", "is too long");
            snprintf(cfg->redis_host, sizeof cfg->redis_host, "%s", s);
        } else if (strcmp(key, "port") == 0) {
            if ((rc = get_uint(fc, "redis.port", v, 1, 65535, &u)) != 0)
                return rc;
            cfg->redis_port = (int)u;
        } else if (strcmp(key, "password_file") == 0) {
            if ((rc = get_string(fc, "redis.password_file", v, &s)) != 0)
                return rc;
            free(cfg->redis_password_file);
            if ((cfg->redis_password_file = resolve(fc->base_dir, s)) == NULL)
                return CX_EXIT_INTERNAL;
        } else if (strcmp(key, "pool_size") == 0) {
            if ((rc = get_uint(fc, "redis.pool_size", v, 1, 1024, &u)) != 0)
                return rc;
            cfg->redis_pool_size = (int)u;
        } else {
            char k[160];
            snprintf(k, sizeof k, "redis.%.64s", key);
            return bad(fc, k, "is not a configuration key (see docs/cx.md)");
        }
    }
    cfg->have_redis = 1;
    return 0;
}

static int file_limits(cx_serve_config_t *cfg, const file_ctx_t *fc, json_t *l)
{
    if (!json_is_object(l))
        return bad(fc, "limits", "must be an object");
    const char *key;
    json_t *v;
    uint64_t u;
    int rc;
    json_object_foreach(l, key, v)
    {
        if (strcmp(key, "max_connections") == 0) {
            if ((rc = get_uint(fc, "limits.max_connections", v, 1, 1000000, &u)) != 0)
                return rc;
            cfg->max_connections = (unsigned)u;
        } else if (strcmp(key, "max_connections_per_ip") == 0) {
            if ((rc = get_uint(fc, "limits.max_connections_per_ip", v, 0, 1000000, &u)) != 0)
                return rc;
            cfg->max_connections_per_ip = (unsigned)u;
        } else if (strcmp(key, "connection_timeout_s") == 0) {
            if ((rc = get_uint(fc, "limits.connection_timeout_s", v, 1, 86400, &u)) != 0)
                return rc;
            cfg->connection_timeout_s = (unsigned)u;
        } else if (strcmp(key, "max_header_bytes") == 0) {
            if ((rc = get_uint(fc, "limits.max_header_bytes", v, 4096, 16u << 20, &u)) != 0)
                return rc;
            cfg->max_header_bytes = (size_t)u;
        } else {
            char k[160];
            snprintf(k, sizeof k, "limits.%.64s", key);
            return bad(fc, k, "is not a configuration key (see docs/cx.md)");
        }
    }
    return 0;
}

static int file_accounts(cx_serve_config_t *cfg, const file_ctx_t *fc, json_t *a)
{
    if (!json_is_object(a))
        return bad(fc, "accounts",
                   "must be {\"<connector>\": {\"<account_id>\": \"<tenant_id>\"}}");
    const char *conn, *acc;
    json_t *m, *t;
    json_object_foreach(a, conn, m)
    {
        if (!json_is_object(m))
            return bad(fc, "accounts",
                       "must be {\"<connector>\": {\"<account_id>\": \"<tenant_id>\"}}");
        json_object_foreach(m, acc, t)
        {
            if (!json_is_string(t) || json_string_length(t) == 0 || !*acc || !*conn)
                return bad(fc, "accounts", "maps non-empty account ids to non-empty tenant ids");
            if (cx_serve_config_add_account(cfg, conn, acc, json_string_value(t)) != 0)
                return CX_EXIT_INTERNAL;
        }
    }
    return 0;
}

/* ---- Durable processing: handler_mode, retry, rate_limits ---------------------------------- */

static int apply_handler_mode(cx_serve_config_t *cfg, const char *name)
{
    if (strcmp(name, "inline") == 0)
        cfg->handler_mode = CX_HANDLER_MODE_INLINE;
    else if (strcmp(name, "queued") == 0)
        cfg->handler_mode = CX_HANDLER_MODE_QUEUED;
    else
        return -1;
    return 0;
}

static int file_retry(cx_serve_config_t *cfg, const file_ctx_t *fc, json_t *r)
{
    if (!json_is_object(r))
        return bad(fc, "retry",
                   "must be an object {max_attempts, base_delay_ms, max_delay_ms, max_age_s}");
    const char *key;
    json_t *v;
    uint64_t u;
    int rc;
    json_object_foreach(r, key, v)
    {
        if (strcmp(key, "max_attempts") == 0) {
            if ((rc = get_uint(fc, "retry.max_attempts", v, 1, 1000, &u)) != 0)
                return rc;
            cfg->retry.max_attempts = (uint32_t)u;
        } else if (strcmp(key, "base_delay_ms") == 0) {
            if ((rc = get_uint(fc, "retry.base_delay_ms", v, 1, 604800000, &u)) != 0)
                return rc;
            cfg->retry.base_delay_ms = (uint32_t)u;
        } else if (strcmp(key, "max_delay_ms") == 0) {
            if ((rc = get_uint(fc, "retry.max_delay_ms", v, 1, 604800000, &u)) != 0)
                return rc;
            cfg->retry.max_delay_ms = (uint32_t)u;
        } else if (strcmp(key, "max_age_s") == 0) {
            if ((rc = get_uint(fc, "retry.max_age_s", v, 1, 2592000, &u)) != 0)
                return rc;
            cfg->retry.max_age_s = (uint32_t)u;
        } else {
            char k[160];
            snprintf(k, sizeof k, "retry.%.64s", key);
            return bad(fc, k, "is not a configuration key (see docs/cx.md)");
        }
    }
    /* The library's defaults fill the fields left out (cx_retry_policy_t). */
    uint32_t base = cfg->retry.base_delay_ms ? cfg->retry.base_delay_ms : 1000;
    uint32_t max = cfg->retry.max_delay_ms ? cfg->retry.max_delay_ms : 600000;
    if (base > max)
        return bad(fc, "retry.base_delay_ms", "must not be larger than retry.max_delay_ms");
    return 0;
}

/* [{"tenant": "*", "capability": "*", "per_second": 50, "burst": 50, "per_day": 100000}] */
static int file_rate_limits(cx_serve_config_t *cfg, const file_ctx_t *fc, json_t *a)
{
    static const char SHAPE[] =
        "must be an array of {tenant, capability, per_second, burst, per_day}";
    if (!json_is_array(a))
        return bad(fc, "rate_limits", SHAPE);
    size_t n = json_array_size(a);
    if (n > 256)
        return bad(fc, "rate_limits", "has more than 256 rules");
    cx_rate_limit_rule_t *rules = n ? calloc(n, sizeof *rules) : NULL;
    if (n && rules == NULL)
        return CX_EXIT_INTERNAL;
    /* Owned by cfg from here, so a refusal halfway frees what was parsed. */
    for (size_t i = 0; i < cfg->n_rate_limits; i++) {
        free((char *)cfg->rate_limits[i].tenant);
        free((char *)cfg->rate_limits[i].capability);
    }
    free(cfg->rate_limits);
    cfg->rate_limits = rules;
    cfg->n_rate_limits = 0;
    size_t i;
    json_t *r;
    json_array_foreach(a, i, r)
    {
        char k[160];
        snprintf(k, sizeof k, "rate_limits[%zu]", i);
        if (!json_is_object(r))
            return bad(fc, k, "must be an object {tenant, capability, per_second, burst, per_day}");
        cx_rate_limit_rule_t *d = &rules[cfg->n_rate_limits++];
        const char *key;
        json_t *v;
        const char *s;
        uint64_t u;
        int rc;
        json_object_foreach(r, key, v)
        {
            snprintf(k, sizeof k, "rate_limits[%zu].%.64s", i, key);
            if (strcmp(key, "tenant") == 0 || strcmp(key, "capability") == 0) {
                if ((rc = get_string(fc, k, v, &s)) != 0)
                    return rc;
                const char **slot = key[0] == 't' ? &d->tenant : &d->capability;
                /* "*" = every tenant / all capabilities together, as NULL */
                if (strcmp(s, "*") != 0 && (*slot = dup_str(s)) == NULL)
                    return CX_EXIT_INTERNAL;
            } else if (strcmp(key, "per_second") == 0) {
                double x = json_is_number(v) ? json_number_value(v) : -1;
                if (!(x == 0 || (x >= 1e-6 && x <= 1e6)))
                    return bad(fc, k, "must be a number of items per second from 0 to 1000000");
                d->per_second = x;
            } else if (strcmp(key, "burst") == 0) {
                if ((rc = get_uint(fc, k, v, 0, 1000000, &u)) != 0)
                    return rc;
                d->burst = (uint32_t)u;
            } else if (strcmp(key, "per_day") == 0) {
                if ((rc = get_uint(fc, k, v, 0, 1000000000000ull, &u)) != 0)
                    return rc;
                d->per_day = u;
            } else {
                return bad(fc, k, "is not a configuration key (see docs/cx.md)");
            }
        }
        if (d->per_second == 0 && d->per_day == 0) {
            snprintf(k, sizeof k, "rate_limits[%zu]", i);
            return bad(fc, k, "needs per_second or per_day");
        }
    }
    return 0;
}

static int load_file(cx_serve_config_t *cfg, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line < 0 || jerr.position == 0)
            cx_cli_error(SUB, "config %s: %s", path, jerr.text);
        else
            cx_cli_error(SUB, "config %s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return CX_EXIT_CONFIG;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    file_ctx_t fc = {path, dir};
    int rc = 0;
    if (!json_is_object(root)) {
        cx_cli_error(SUB, "config %s: the top level must be a JSON object", path);
        rc = CX_EXIT_CONFIG;
        goto done;
    }
    const char *key;
    json_t *v;
    const char *s;
    uint64_t u;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "environment") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            if (apply_env_name(cfg, s) != 0) {
                rc = bad(&fc, key, "must be development, staging or production");
                goto done;
            }
        } else if (strcmp(key, "listen") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            if (cx_cli_parse_hostport(s, cfg->listen_host, sizeof cfg->listen_host,
                                      &cfg->listen_port) != 0) {
                rc = bad(&fc, key, "must be HOST:PORT");
                goto done;
            }
        } else if (strcmp(key, "secrets_dir") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            free(cfg->secrets_dir);
            if ((cfg->secrets_dir = resolve(fc.base_dir, s)) == NULL) {
                rc = CX_EXIT_INTERNAL;
                goto done;
            }
        } else if (strcmp(key, "redis") == 0) {
            if ((rc = file_redis(cfg, &fc, v)) != 0)
                goto done;
        } else if (strcmp(key, "max_body_bytes") == 0) {
            if ((rc = get_uint(&fc, key, v, 1, 1u << 30, &u)) != 0)
                goto done;
            cfg->max_body_bytes = (size_t)u;
        } else if (strcmp(key, "processing_ttl_ms") == 0) {
            if ((rc = get_uint(&fc, key, v, 1, 86400000, &u)) != 0)
                goto done;
            cfg->processing_ttl_ms = (uint32_t)u;
        } else if (strcmp(key, "handler_deadline_ms") == 0) {
            if ((rc = get_uint(&fc, key, v, 1, 86400000, &u)) != 0)
                goto done;
            cfg->handler_deadline_ms = (uint32_t)u;
        } else if (strcmp(key, "log_level") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            if (apply_level(cfg, s) != 0) {
                rc = bad(&fc, key, "must be debug, info, warn, error or off");
                goto done;
            }
        } else if (strcmp(key, "accounts") == 0) {
            if ((rc = file_accounts(cfg, &fc, v)) != 0)
                goto done;
        } else if (strcmp(key, "connectors") == 0) {
            /* ["whatsapp", "instagram"]: host only these (kept as "whatsapp,instagram"). */
            size_t i;
            json_t *p;
            char list[1024] = "";
            if (!json_is_array(v)) {
                rc = bad(&fc, key, "must be an array of connector ids");
                goto done;
            }
            json_array_foreach(v, i, p)
            {
                if ((rc = get_string(&fc, key, p, &s)) != 0)
                    goto done;
                if (strlen(list) + strlen(s) + 2 > sizeof list) {
                    rc = bad(&fc, key, "is too long");
                    goto done;
                }
                if (list[0])
                    strcat(list, ",");
                strcat(list, s);
            }
            if (set_str(&cfg->connectors, list) != 0) {
                rc = bad(&fc, key, "cannot be stored");
                goto done;
            }
        } else if (strcmp(key, "connectors_lib") == 0) {
            size_t i;
            json_t *p;
            if (!json_is_array(v)) {
                rc = bad(&fc, key, "must be an array of paths");
                goto done;
            }
            json_array_foreach(v, i, p)
            {
                if ((rc = get_string(&fc, key, p, &s)) != 0)
                    goto done;
                if (add_lib(cfg, resolve(fc.base_dir, s)) != 0) {
                    rc = bad(&fc, key, "has too many entries");
                    goto done;
                }
            }
        } else if (strcmp(key, "api_keys_file") == 0 || strcmp(key, "audit_dir") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            char **slot = key[0] == 'a' && key[1] == 'p' ? &cfg->api_keys_file : &cfg->audit_dir;
            free(*slot);
            if ((*slot = resolve(fc.base_dir, s)) == NULL) {
                rc = CX_EXIT_INTERNAL;
                goto done;
            }
        } else if (strcmp(key, "oauth") == 0) {
            char why[512];
            if (cx_serve_oauth_check(v, why, sizeof why) != 0) {
                cx_cli_error(SUB, "config %s: %s", path, why);
                rc = CX_EXIT_CONFIG;
                goto done;
            }
            json_decref(cfg->oauth);
            cfg->oauth = json_incref(v);
        } else if (strcmp(key, "limits") == 0) {
            if ((rc = file_limits(cfg, &fc, v)) != 0)
                goto done;
        } else if (strcmp(key, "expose_unauthenticated_connectors") == 0) {
            if (!json_is_boolean(v)) {
                rc = bad(&fc, key, "must be true or false");
                goto done;
            }
            cfg->expose_unauthenticated = json_is_true(v);
        } else if (strcmp(key, "threads") == 0) {
            if ((rc = get_uint(&fc, key, v, 0, 1024, &u)) != 0)
                goto done;
            cfg->threads = (unsigned)u;
        } else if (strcmp(key, "pipeline_threads") == 0) {
            if ((rc = get_uint(&fc, key, v, 0, 1024, &u)) != 0)
                goto done;
            cfg->pipeline_threads = (unsigned)u;
        } else if (strcmp(key, "drain_timeout_s") == 0) {
            if ((rc = get_uint(&fc, key, v, 0, 3600, &u)) != 0)
                goto done;
            cfg->drain_timeout_s = (unsigned)u;
        } else if (strcmp(key, "handler_mode") == 0) {
            if ((rc = get_string(&fc, key, v, &s)) != 0)
                goto done;
            if (apply_handler_mode(cfg, s) != 0) {
                rc = bad(&fc, key, "must be inline or queued");
                goto done;
            }
        } else if (strcmp(key, "workers") == 0) {
            if ((rc = get_uint(&fc, key, v, 1, 1024, &u)) != 0)
                goto done;
            cfg->workers = (unsigned)u;
        } else if (strcmp(key, "tenant_concurrency") == 0) {
            if ((rc = get_uint(&fc, key, v, 1, 1024, &u)) != 0)
                goto done;
            cfg->tenant_concurrency = (unsigned)u;
        } else if (strcmp(key, "worker_claim_ttl_ms") == 0) {
            if ((rc = get_uint(&fc, key, v, 100, 86400000, &u)) != 0)
                goto done;
            cfg->worker_claim_ttl_ms = (uint32_t)u;
        } else if (strcmp(key, "queued_claim_ttl_ms") == 0) {
            if ((rc = get_uint(&fc, key, v, 1000, 604800000, &u)) != 0)
                goto done;
            cfg->queued_claim_ttl_ms = (uint32_t)u;
        } else if (strcmp(key, "retry") == 0) {
            if ((rc = file_retry(cfg, &fc, v)) != 0)
                goto done;
        } else if (strcmp(key, "rate_limits") == 0) {
            if ((rc = file_rate_limits(cfg, &fc, v)) != 0)
                goto done;
        } else {
            char k[96];
            snprintf(k, sizeof k, "%.64s", key);
            rc = bad(&fc, k, "is not a configuration key (see docs/cx.md)");
            goto done;
        }
    }
done:
    json_decref(root);
    return rc;
}

/* ---- Environment and flags ---------------------------------------------------------------- */

static int load_env(cx_serve_config_t *cfg)
{
    const char *v;
    if ((v = getenv("CX_ENV")) && *v && apply_env_name(cfg, v) != 0) {
        cx_cli_error(SUB, "CX_ENV must be development, staging or production");
        return CX_EXIT_CONFIG;
    }
    if ((v = getenv("CX_LISTEN")) && *v &&
        cx_cli_parse_hostport(v, cfg->listen_host, sizeof cfg->listen_host, &cfg->listen_port)) {
        cx_cli_error(SUB, "CX_LISTEN must be HOST:PORT");
        return CX_EXIT_CONFIG;
    }
    if ((v = getenv("CX_SECRETS_DIR")) && *v && set_str(&cfg->secrets_dir, v) != 0)
        return CX_EXIT_INTERNAL;
    if ((v = getenv("CX_REDIS")) && *v && apply_redis_hostport(cfg, v) != 0) {
        cx_cli_error(SUB, "CX_REDIS must be HOST:PORT");
        return CX_EXIT_CONFIG;
    }
    if ((v = getenv("CX_CONNECTORS")) && *v && set_str(&cfg->connectors, v) != 0)
        return CX_EXIT_CONFIG;
    if ((v = getenv("CX_LOG_LEVEL")) && *v && apply_level(cfg, v) != 0) {
        cx_cli_error(SUB, "CX_LOG_LEVEL must be debug, info, warn, error or off");
        return CX_EXIT_CONFIG;
    }
    if ((v = getenv("CX_HANDLER_MODE")) && *v && apply_handler_mode(cfg, v) != 0) {
        cx_cli_error(SUB, "CX_HANDLER_MODE must be inline or queued");
        return CX_EXIT_CONFIG;
    }
    return 0;
}

int cx_serve_config_load(cx_serve_config_t *cfg, int argc, char **argv)
{
    defaults(cfg);
    const char *file = NULL;
    const char *v;
    /* First pass: --help and --config, which the other sources layer over. */
    for (int i = 1; i < argc; i++) {
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help(SUB);
            return -1;
        }
        int m = cx_cli_opt(SUB, argc, argv, &i, "--config", &v);
        if (m < 0)
            return CX_EXIT_USAGE;
        if (m > 0)
            file = v;
    }
    int rc;
    if (file && (rc = load_file(cfg, file)) != 0)
        return rc;
    if ((rc = load_env(cfg)) != 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        int m;
        uint64_t u;
        if ((m = cx_cli_opt(SUB, argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--listen", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (cx_cli_parse_hostport(v, cfg->listen_host, sizeof cfg->listen_host,
                                      &cfg->listen_port) != 0) {
                cx_cli_error(SUB, "--listen must be HOST:PORT, e.g. 127.0.0.1:8080");
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--secrets", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (set_str(&cfg->secrets_dir, v) != 0)
                return CX_EXIT_INTERNAL;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--env", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (apply_env_name(cfg, v) != 0) {
                cx_cli_error(SUB, "--env must be development, staging or production");
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--redis", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (apply_redis_hostport(cfg, v) != 0) {
                cx_cli_error(SUB, "--redis must be HOST:PORT, e.g. 127.0.0.1:6379");
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--connectors", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (set_str(&cfg->connectors, v) != 0)
                return CX_EXIT_CONFIG;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--connector-lib", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (add_lib(cfg, dup_str(v)) != 0) {
                cx_cli_error(SUB, "too many --connector-lib (at most %d)", CX_SERVE_MAX_LIBS);
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--account", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (cx_serve_config_account_flag(cfg, v) != 0) {
                cx_cli_error(SUB, "--account must be CONNECTOR:ACCOUNT_ID=TENANT, got '%s'", v);
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--log-level", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (apply_level(cfg, v) != 0) {
                cx_cli_error(SUB, "--log-level must be debug, info, warn, error or off");
                return CX_EXIT_USAGE;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--test-handler-delay-ms", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (cx_cli_parse_u64(v, 0, 3600000, &u) != 0) {
                cx_cli_error(SUB, "--test-handler-delay-ms must be a number of milliseconds");
                return CX_EXIT_USAGE;
            }
            cfg->test_handler_delay_ms = (uint32_t)u;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--count-file", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (set_str(&cfg->count_file, v) != 0)
                return CX_EXIT_INTERNAL;
        } else {
            return cx_cli_bad_arg(SUB, argv[i]);
        }
    }
    if (cfg->handler_deadline_ms >= cfg->processing_ttl_ms) {
        cx_cli_error(SUB, "handler_deadline_ms (%u) must be shorter than processing_ttl_ms (%u)",
                     cfg->handler_deadline_ms, cfg->processing_ttl_ms);
        return CX_EXIT_CONFIG;
    }
    /* The environment is final now: the handler mode nobody chose follows it. */
    if (cfg->handler_mode == CX_HANDLER_MODE_AUTO)
        cfg->handler_mode = cfg->environment == CX_ENV_DEVELOPMENT ? CX_HANDLER_MODE_INLINE
                                                                   : CX_HANDLER_MODE_QUEUED;
    uint32_t claim_ttl = cfg->worker_claim_ttl_ms ? cfg->worker_claim_ttl_ms : 30000;
    if (cfg->handler_mode == CX_HANDLER_MODE_QUEUED && cfg->handler_deadline_ms >= claim_ttl) {
        cx_cli_error(SUB, "handler_deadline_ms (%u) must be shorter than worker_claim_ttl_ms (%u)",
                     cfg->handler_deadline_ms, claim_ttl);
        return CX_EXIT_CONFIG;
    }
    return 0;
}
