/* The runtime object: configuration, hosted connectors, accounts, handlers, boot checks. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "inbound/runtime_internal.h"

/* Used only in development when no pseudonym key is configured: keys stay stable across
 * restarts, and staging/production refuse to boot without a real one. */
static const char DEV_PSEUDONYM_KEY[] = "cx-development-pseudonym-key-not-secret";

int cx_environment_parse(const char *name, cx_environment_t *out)
{
    static const char *const names[] = {"development", "staging", "production"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (cx_environment_t)i;
            return 0;
        }
    return CX_EINVAL;
}

const char *cx_environment_name(cx_environment_t env)
{
    switch (env) {
    case CX_ENV_STAGING:
        return "staging";
    case CX_ENV_PRODUCTION:
        return "production";
    default:
        return "development";
    }
}

int cx_runtime_create(const cx_runtime_config_t *cfg, cx_runtime_t **out, cx_error_t *err)
{
    if (cfg == NULL || out == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "config and out are required");
    cx_runtime_t *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    rt->cfg = *cfg;
    pthread_mutex_init(&rt->pending_mu, NULL);
    pthread_mutex_init(&rt->workers_mu, NULL);
    pthread_mutex_init(&rt->gauge_mu, NULL);
    snprintf(rt->service, sizeof rt->service, "%s", cfg->service ? cfg->service : "cx");
    snprintf(rt->environment, sizeof rt->environment, "%s", cx_environment_name(cfg->environment));
    rt->cfg.service = rt->service;
    if (rt->cfg.max_body_bytes == 0)
        rt->cfg.max_body_bytes = 1u << 20;
    if (rt->cfg.processing_ttl_ms == 0)
        rt->cfg.processing_ttl_ms = 30000;
    if (rt->cfg.handler_deadline_ms == 0)
        rt->cfg.handler_deadline_ms = 10000;
    if (rt->cfg.handler_deadline_ms >= rt->cfg.processing_ttl_ms) {
        free(rt);
        return cx_error_set(err, CX_ECONFIG, "handler_deadline_ms",
                            "the handler deadline must be shorter than the processing claim TTL");
    }
    if (rt->cfg.arena_limit == 0)
        rt->cfg.arena_limit = 8u << 20;
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    snprintf(rt->instance_id, sizeof rt->instance_id, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    int rc = cx__secrets_open(cfg->secrets_dir, &rt->secrets);
    if (rc != 0)
        goto fail;
    if (cfg->logger) {
        rt->log = cfg->logger;
    } else {
        cx_logger_config_t lc = {.service = rt->service, .level = CX_LOG_INFO};
        if ((rc = cx_logger_new(&lc, &rt->log)) != 0)
            goto fail;
        rt->own_log = 1;
    }
    if (cfg->metrics) {
        rt->metrics = cfg->metrics;
    } else {
        if ((rc = cx_metrics_new(NULL, &rt->metrics)) != 0)
            goto fail;
        rt->own_metrics = 1;
    }
    if ((rc = cx_metrics_register_standard(rt->metrics, &rt->std)) != 0)
        goto fail;
    if (cfg->dedupe) {
        rt->dedupe = cfg->dedupe;
    } else {
        if ((rc = cx_dedupe_store_embedded(rt->environment, &rt->dedupe, err)) != 0)
            goto fail;
        rt->own_dedupe = 1;
    }
    if (cfg->pseudonym_key && cfg->pseudonym_key_len) {
        rt->pseudonym_key_len = cfg->pseudonym_key_len > sizeof rt->pseudonym_key
                                    ? sizeof rt->pseudonym_key
                                    : cfg->pseudonym_key_len;
        memcpy(rt->pseudonym_key, cfg->pseudonym_key, rt->pseudonym_key_len);
    } else {
        cx_secret_value_t v;
        if (cx__secrets_get(rt->secrets, "runtime", NULL, "pseudonym_key", &v) == 0) {
            rt->pseudonym_key_len =
                v.current_len > sizeof rt->pseudonym_key ? sizeof rt->pseudonym_key : v.current_len;
            memcpy(rt->pseudonym_key, v.current, rt->pseudonym_key_len);
        } else {
            rt->pseudonym_key_len = sizeof DEV_PSEUDONYM_KEY - 1;
            memcpy(rt->pseudonym_key, DEV_PSEUDONYM_KEY, rt->pseudonym_key_len);
            rt->dev_pseudonym_key = 1;
        }
    }
    rt->cfg.pseudonym_key = NULL;
    if ((rc = cx__durable_init(rt, err)) != 0)
        goto fail;
    *out = rt;
    return 0;
fail:
    cx_runtime_destroy(rt);
    return cx_error_set(err, rc, NULL, "cannot create the runtime");
}

void cx_runtime_destroy(cx_runtime_t *rt)
{
    if (rt == NULL)
        return;
    cx__durable_free(rt); /* stops the workers first: they use everything below */
    if (rt->own_dedupe)
        cx_dedupe_store_destroy(rt->dedupe);
    if (rt->own_metrics)
        cx_metrics_free(rt->metrics);
    if (rt->log)
        cx_logger_flush(rt->log);
    if (rt->own_log)
        cx_logger_free(rt->log);
    cx__secrets_close(rt->secrets);
    for (size_t i = 0; i < rt->n_accounts; i++) {
        free(rt->accounts[i].connector);
        free(rt->accounts[i].account_id);
        free(rt->accounts[i].tenant_id);
    }
    free(rt->accounts);
    cx__pending_free(rt);
    pthread_mutex_destroy(&rt->pending_mu);
    pthread_mutex_destroy(&rt->workers_mu);
    pthread_mutex_destroy(&rt->gauge_mu);
    memset(rt->pseudonym_key, 0, sizeof rt->pseudonym_key);
    free(rt);
}

int cx_runtime_add_connector(cx_runtime_t *rt, const cx_connector_t *c, cx_error_t *err)
{
    int rc = cx_connector_check(c, err);
    if (rc != 0)
        return rc;
    if (cx_runtime_connector(rt, c->manifest->id))
        return cx_error_set(err, CX_ECONFIG, NULL, "connector %s is already hosted",
                            c->manifest->id);
    if (rt->n_connectors == CX__MAX_CONNECTORS)
        return cx_error_set(err, CX_ENOSPC, NULL, "too many connectors");
    rt->connectors[rt->n_connectors++] = c;
    return 0;
}

const cx_connector_t *cx_runtime_connector(const cx_runtime_t *rt, const char *id)
{
    for (size_t i = 0; i < rt->n_connectors; i++)
        if (strcmp(rt->connectors[i]->manifest->id, id) == 0)
            return rt->connectors[i];
    return NULL;
}

static int account_cmp(const char *c1, const char *a1, const char *c2, const char *a2)
{
    int r = strcmp(c1, c2);
    return r ? r : strcmp(a1, a2);
}

int cx_runtime_add_account(cx_runtime_t *rt, const char *connector, const char *account_id,
                           const char *tenant_id, cx_error_t *err)
{
    if (!connector || !account_id || !tenant_id || !*account_id || !*tenant_id)
        return cx_error_set(err, CX_EINVAL, NULL, "connector, account id and tenant are required");
    size_t lo = 0, hi = rt->n_accounts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = account_cmp(rt->accounts[mid].connector, rt->accounts[mid].account_id, connector,
                            account_id);
        if (r == 0) {
            char *t = strdup(tenant_id);
            if (t == NULL)
                return cx_error_set(err, CX_ENOMEM, NULL, NULL);
            free(rt->accounts[mid].tenant_id);
            rt->accounts[mid].tenant_id = t;
            return 0;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (rt->n_accounts == rt->cap_accounts) {
        size_t cap = rt->cap_accounts ? rt->cap_accounts * 2 : 16;
        cx_account_t *a = realloc(rt->accounts, cap * sizeof *a);
        if (a == NULL)
            return cx_error_set(err, CX_ENOMEM, NULL, NULL);
        rt->accounts = a;
        rt->cap_accounts = cap;
    }
    cx_account_t acc = {strdup(connector), strdup(account_id), strdup(tenant_id)};
    if (!acc.connector || !acc.account_id || !acc.tenant_id) {
        free(acc.connector);
        free(acc.account_id);
        free(acc.tenant_id);
        return cx_error_set(err, CX_ENOMEM, NULL, NULL);
    }
    memmove(&rt->accounts[lo + 1], &rt->accounts[lo], (rt->n_accounts - lo) * sizeof acc);
    rt->accounts[lo] = acc;
    rt->n_accounts++;
    return 0;
}

const char *cx__accounts_lookup(const cx_runtime_t *rt, const char *connector,
                                const char *account_id)
{
    if (account_id == NULL)
        return NULL;
    size_t lo = 0, hi = rt->n_accounts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = account_cmp(rt->accounts[mid].connector, rt->accounts[mid].account_id, connector,
                            account_id);
        if (r == 0)
            return rt->accounts[mid].tenant_id;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int cx_runtime_on(cx_runtime_t *rt, const char *capability, cx_handler_fn fn, void *ud,
                  cx_error_t *err)
{
    if (capability == NULL || fn == NULL ||
        (strcmp(capability, "*") != 0 && !cx_capability_is_known(capability)))
        return cx_error_set(err, CX_EINVAL, NULL, "unknown capability '%s'",
                            capability ? capability : "(null)");
    for (size_t i = 0; i < rt->n_handlers; i++)
        if (strcmp(rt->handlers[i].capability, capability) == 0) {
            rt->handlers[i].fn = fn;
            rt->handlers[i].ud = ud;
            return 0;
        }
    if (rt->n_handlers == CX__MAX_HANDLERS)
        return cx_error_set(err, CX_ENOSPC, NULL, "too many handlers");
    cx_handler_t *h = &rt->handlers[rt->n_handlers++];
    snprintf(h->capability, sizeof h->capability, "%s", capability);
    h->fn = fn;
    h->ud = ud;
    return 0;
}

int cx_ctx_secret(const cx_ctx_t *ctx, const char *account, const char *name,
                  cx_secret_value_t *out)
{
    cx_runtime_t *rt = ctx->rt;
    if (rt->secret_source) {
        memset(out, 0, sizeof *out);
        int rc = rt->secret_source(rt->secret_source_ud, ctx, account, name, out);
        if (rc != CX_ENOTFOUND) {
            if (rc != 0)
                memset(out, 0, sizeof *out);
            return rc;
        }
    }
    return cx__secrets_get(rt->secrets, ctx->connector, account, name, out);
}

void cx_runtime_set_secret_source(cx_runtime_t *rt, cx_secret_source_fn fn, void *ud)
{
    rt->secret_source = fn;
    rt->secret_source_ud = ud;
}

const char *cx_runtime_account_tenant(const cx_runtime_t *rt, const char *connector,
                                      const char *account_id)
{
    if (rt == NULL || connector == NULL)
        return NULL;
    return cx__accounts_lookup(rt, connector, account_id);
}

static void boot_line(cx_runtime_t *rt, int level, int rc, const char *msg)
{
    cx_log_record_t r;
    if (cx_log_begin(&r, rt->log, level)) {
        if (rc) {
            cx_log_set_error_code(&r, cx__code_name(rc));
            cx_log_set_error_class(&r, cx_err_class(rc));
        }
        cx_log_set_outcome(&r, rc ? "refused" : "ok");
        cx_log_set_msg(&r, msg);
        cx_log_emit(&r);
    }
}

int cx_runtime_boot(cx_runtime_t *rt, cx_error_t *err)
{
    char msg[512];
    int strict = rt->cfg.environment != CX_ENV_DEVELOPMENT;
    if (strict) {
        if (rt->own_dedupe) {
            snprintf(msg, sizeof msg,
                     "refusing to start: %s needs a shared dedupe store (Redis); configure redis",
                     rt->environment);
            boot_line(rt, CX_LOG_ERROR, CX_ECONFIG, msg);
            return cx_error_set(err, CX_ECONFIG, "redis", "%s", msg);
        }
        cx_secret_value_t v;
        if (rt->dev_pseudonym_key) {
            snprintf(msg, sizeof msg,
                     "refusing to start: missing secret runtime/pseudonym_key in the secrets "
                     "directory (%s)",
                     rt->environment);
            boot_line(rt, CX_LOG_ERROR, CX_ECONFIG, msg);
            return cx_error_set(err, CX_ECONFIG, "runtime/pseudonym_key", "%s", msg);
        }
        for (size_t i = 0; i < rt->n_connectors; i++) {
            const cx_manifest_t *m = rt->connectors[i]->manifest;
            for (size_t s = 0; s < m->n_secrets; s++) {
                if (!m->secrets[s].required || m->secrets[s].per_account)
                    continue;
                if (cx__secrets_get(rt->secrets, m->id, NULL, m->secrets[s].name, &v) != 0 ||
                    v.current_len == 0) {
                    snprintf(msg, sizeof msg,
                             "refusing to start: missing secret %s/%s in the secrets directory "
                             "(%s)",
                             m->id, m->secrets[s].name, rt->environment);
                    boot_line(rt, CX_LOG_ERROR, CX_ECONFIG, msg);
                    return cx_error_set(err, CX_ECONFIG, m->secrets[s].name, "%s", msg);
                }
            }
        }
        if (rt->queued && rt->own_queue) {
            snprintf(msg, sizeof msg,
                     "refusing to start: %s in queued mode needs a shared work queue (Redis); "
                     "configure redis",
                     rt->environment);
            boot_line(rt, CX_LOG_ERROR, CX_ECONFIG, msg);
            return cx_error_set(err, CX_ECONFIG, "redis", "%s", msg);
        }
        cx_error_t perr;
        cx_error_clear(&perr);
        if (rt->dedupe->ops->ping(rt->dedupe, &perr) != 0 ||
            (rt->queued && rt->queue->ops->ping(rt->queue, &perr) != 0)) {
            snprintf(msg, sizeof msg, "refusing to start: Redis unreachable (%s)", perr.message);
            boot_line(rt, CX_LOG_ERROR, CX_EUNAVAILABLE, msg);
            return cx_error_set(err, CX_EUNAVAILABLE, "redis", "%s", msg);
        }
        for (size_t i = 0; i < rt->n_connectors; i++) {
            const cx_connector_t *c = rt->connectors[i];
            if (c->check_credentials == NULL)
                continue;
            cx_arena_t arena;
            cx_arena_init(&arena, NULL, 1u << 20);
            cx_ctx_t ctx = {rt, c->manifest->id, cx_clock_now(&rt->cfg.clock), &arena};
            cx_error_t cerr;
            cx_error_clear(&cerr);
            int rc = c->check_credentials(c, &ctx, &cerr);
            cx_arena_release(&arena);
            if (rc != 0) {
                snprintf(msg, sizeof msg, "refusing to start: %s credentials check failed (%s)",
                         c->manifest->id, cerr.message);
                boot_line(rt, CX_LOG_ERROR, rc, msg);
                return cx_error_set(err, rc, c->manifest->id, "%s", msg);
            }
        }
    }
    snprintf(msg, sizeof msg, "boot validated: %s, %zu connectors", rt->environment,
             rt->n_connectors);
    boot_line(rt, CX_LOG_INFO, 0, msg);
    return 0;
}

int cx_runtime_reload_secrets(cx_runtime_t *rt, cx_error_t *err)
{
    (void)err;
    cx__secrets_reload(rt->secrets);
    boot_line(rt, CX_LOG_INFO, 0, "secrets reloaded");
    return 0;
}

int cx_runtime_ready(cx_runtime_t *rt)
{
    cx_error_t err;
    cx_error_clear(&err);
    return rt->dedupe->ops->ping(rt->dedupe, &err) == 0 &&
           (!rt->queued || rt->queue->ops->ping(rt->queue, &err) == 0);
}

cx_metrics_t *cx_runtime_metrics(cx_runtime_t *rt)
{
    return rt->metrics;
}

cx_logger_t *cx_runtime_logger(cx_runtime_t *rt)
{
    return rt->log;
}
