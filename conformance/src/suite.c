/* The check table and a suite run: declared skips, expected failures and strict mode.
 *
 * Check ids are part of the suite's interface (reports, expected-failure lists, CI
 * dashboards): they are only ever added, never renamed or reused. docs/conformance.md has one
 * section per id.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "report.h"

typedef struct {
    cx_conf_check_t pub;
    cx_conf_check_fn fn;
} entry_t;

#define E(id, cat, summary, fn)                                                                    \
    {                                                                                              \
        {id, cat, summary}, fn                                                                     \
    }

static const entry_t CHECKS[] = {
    E("manifest.valid", "manifest", "the runtime accepts the connector; SemVer version, names",
      cx_conf__check_manifest_valid),
    E("manifest.capabilities", "manifest",
      "capabilities from the fixed list, valid states, no duplicates, send for outbound ones",
      cx_conf__check_manifest_capabilities),
    E("manifest.secrets", "manifest",
      "secrets declared and described; every secret a fixture uses is declared",
      cx_conf__check_manifest_secrets),
    E("manifest.inbound_auth", "manifest",
      "inbound authentication declared and matching verify and the fixtures",
      cx_conf__check_manifest_inbound_auth),
    E("manifest.active_capabilities_have_fixtures", "manifest",
      "every active capability is exercised by at least one fixture",
      cx_conf__check_manifest_fixtures),
    E("signature.valid_accepted", "signature", "every correctly signed fixture is accepted",
      cx_conf__check_signature_valid),
    E("signature.invalid_rejected", "signature",
      "tampered body, wrong secret and missing header are rejected (401), no handler runs",
      cx_conf__check_signature_invalid),
    E("signature.previous_secret_accepted", "signature",
      "a request signed with the previous secret is accepted during a rotation",
      cx_conf__check_signature_rotation),
    E("parse.fixtures_parse", "parse", "every fixture parses, every item maps",
      cx_conf__check_parse_fixtures),
    E("parse.events_valid", "parse",
      "every event validates, is an event of a declared capability and names its account",
      cx_conf__check_parse_valid),
    E("parse.expect_matches", "parse", "the pipeline's answer matches expect.json",
      cx_conf__check_parse_expect),
    E("parse.dedupe_keys_nonempty", "parse", "every valid event has a non-empty dedupe key",
      cx_conf__check_keys_nonempty),
    E("parse.dedupe_keys_deterministic", "parse",
      "the same request gives the same keys across runs, processes and a later redelivery",
      cx_conf__check_keys_deterministic),
    E("parse.dedupe_keys_distinct", "parse", "different events of one batch have different keys",
      cx_conf__check_keys_distinct),
    E("parse.dedupe_keys_no_pii", "parse",
      "no phone number, e-mail address or name from the fixture in a dedupe key",
      cx_conf__check_keys_no_pii),
    E("batch.partial_failure_redelivery", "batch",
      "a handler failing on one item leaves the others processed exactly once across "
      "redelivery",
      cx_conf__check_batch_redelivery),
    E("batch.bad_item_isolated", "batch",
      "one unusable item fails alone; the rest of the batch is processed",
      cx_conf__check_batch_bad_item),
    E("idempotency.replay_deduped", "idempotency",
      "replaying every fixture yields only deduped items", cx_conf__check_idempotency),
    E("logging.required_fields", "logging",
      "every log line is JSON with the required keys; nothing printed outside the logger",
      cx_conf__check_log_fields),
    E("logging.no_secrets", "logging", "no secret in any log line, in any encoding",
      cx_conf__check_log_secrets),
    E("logging.no_raw_body", "logging", "no raw request body in any log line, in any encoding",
      cx_conf__check_log_body),
    E("logging.no_pii", "logging",
      "no full phone number or e-mail address from the fixtures in any log line",
      cx_conf__check_log_pii),
    E("outbound.success_returns_id", "outbound", "a successful send returns a provider id",
      cx_conf__check_outbound_success),
    E("outbound.transient_retried", "outbound", "429 and 5xx are retried with backoff",
      cx_conf__check_outbound_retry),
    E("outbound.timeout_not_resent", "outbound", "a timeout never causes a second send",
      cx_conf__check_outbound_timeout),
    E("outbound.permanent_not_retried", "outbound", "a permanent 4xx is not retried",
      cx_conf__check_outbound_permanent),
    E("outbound.replay_not_resent", "outbound", "a replayed command makes no second provider call",
      cx_conf__check_outbound_replay),
    E("robustness.mutated_fixtures", "robustness",
      "truncated, bit-flipped and type-swapped fixtures, re-signed: 4xx or per-item failures, "
      "never a crash, a hang or a 5xx",
      cx_conf__check_robustness),
};

#define N_CHECKS (sizeof CHECKS / sizeof CHECKS[0])

const cx_conf_check_t *cx_conf_checks(size_t *n)
{
    static cx_conf_check_t pub[N_CHECKS];
    for (size_t i = 0; i < N_CHECKS; i++)
        pub[i] = CHECKS[i].pub;
    *n = N_CHECKS;
    return pub;
}

/* id matches pattern: exactly, or pattern ends in '*' and id starts with the rest. */
static int matches(const char *pattern, const char *id)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, id, n - 1) == 0;
    return strcmp(pattern, id) == 0;
}

static int known_pattern(const char *pattern)
{
    for (size_t i = 0; i < N_CHECKS; i++)
        if (matches(pattern, CHECKS[i].pub.id))
            return 1;
    return 0;
}

static const char *waiver(const cx_conf_waiver_t *w, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (matches(w[i].id, id))
            return w[i].reason;
    return NULL;
}

static int blank(const char *s)
{
    while (s && isspace((unsigned char)*s))
        s++;
    return s == NULL || *s == '\0';
}

int cx_conf_run(const cx_connector_t *connector, const char *source, const cx_conf_options_t *o,
                cx_conf_report_t **out, char *why, size_t cap)
{
    *out = NULL;
    /* Declarations are checked before anything runs: a typo must not silently waive nothing. */
    for (size_t i = 0; i < o->n_skips; i++) {
        if (!known_pattern(o->skips[i].id)) {
            snprintf(why, cap, "--skip %s: no such check (cx-conformance --list)", o->skips[i].id);
            return -1;
        }
        if (blank(o->skips[i].reason)) {
            snprintf(why, cap, "--skip %s: a skip needs a written reason (ID=REASON)",
                     o->skips[i].id);
            return -1;
        }
    }
    for (size_t i = 0; i < o->n_expected_failures; i++) {
        if (!known_pattern(o->expected_failures[i].id)) {
            snprintf(why, cap, "expected failure %s: no such check (cx-conformance --list)",
                     o->expected_failures[i].id);
            return -1;
        }
        if (blank(o->expected_failures[i].reason)) {
            snprintf(why, cap, "expected failure %s: every entry needs a reason",
                     o->expected_failures[i].id);
            return -1;
        }
    }
    cx_conf_suite_t s;
    if (cx_conf__suite_load(&s, connector, source, o->fixtures, why, cap) != 0) {
        cx_conf__suite_free(&s);
        return -1;
    }
    /* Skips declared in the fixtures' conformance.json. */
    json_t *cskip = s.config ? json_object_get(s.config, "skip") : NULL;
    size_t n_conf = json_object_size(cskip);
    cx_conf_waiver_t *skips = calloc(o->n_skips + n_conf + 1, sizeof *skips);
    if (skips == NULL) {
        snprintf(why, cap, "out of memory");
        cx_conf__suite_free(&s);
        return -1;
    }
    size_t n_skips = 0;
    for (size_t i = 0; i < o->n_skips; i++)
        skips[n_skips++] = o->skips[i];
    const char *k;
    json_t *v;
    json_object_foreach(cskip, k, v)
    {
        if (!known_pattern(k) || !json_is_string(v) || blank(json_string_value(v))) {
            snprintf(why, cap, "conformance.json: skip \"%s\": %s", k,
                     !known_pattern(k) ? "no such check" : "needs a written reason");
            free(skips);
            cx_conf__suite_free(&s);
            return -1;
        }
        skips[n_skips++] = (cx_conf_waiver_t){k, json_string_value(v)};
    }
    cx_conf_report_t *rep = cx_conf__report_new(connector, source, &s, o);
    if (rep == NULL) {
        snprintf(why, cap, "out of memory");
        free(skips);
        cx_conf__suite_free(&s);
        return -1;
    }
    unsigned timeout = o->timeout_s ? o->timeout_s : 60;
    for (size_t i = 0; i < N_CHECKS; i++) {
        const entry_t *e = &CHECKS[i];
        if (o->only && strncmp(e->pub.id, o->only, strlen(o->only)) != 0)
            continue;
        cx_conf_result_t res;
        memset(&res, 0, sizeof res);
        double ms = 0;
        const char *declared = waiver(skips, n_skips, e->pub.id);
        if (declared) {
            res.status = CX_CONF_SKIP;
            res.skip_kind = CX_CONF_SKIP_DECLARED;
            snprintf(res.text, sizeof res.text, "declared: %s", declared);
            res.len = strlen(res.text);
        } else {
            if (o->verbose)
                fprintf(stderr, "cx-conformance: %s ...\n", e->pub.id);
            cx_conf__isolate(&s, e->fn, timeout, o->verbose, e->pub.id, &res, &ms);
        }
        int status = res.status;
        if (status == CX_CONF_SKIP && res.skip_kind == CX_CONF_SKIP_INPUT && o->strict) {
            /* Strict mode: a check that could not run for lack of input is a failure unless
             * someone wrote down why that is acceptable. */
            status = CX_CONF_FAIL;
            char reason[CX_CONF_MSG_MAX];
            cx_conf__fmt(reason, sizeof reason,
                         "strict mode: skipped without a declared reason: %s "
                         "(declare it with --skip %s=REASON or in conformance.json)",
                         res.text, e->pub.id);
            snprintf(res.text, sizeof res.text, "%s", reason);
        }
        if (status == CX_CONF_SKIP && blank(res.text)) /* never a skip without a reason */
            status = CX_CONF_FAIL;
        const char *xf = waiver(o->expected_failures, o->n_expected_failures, e->pub.id);
        if (xf && status == CX_CONF_FAIL)
            status = CX_CONF_XFAIL;
        else if (xf && status == CX_CONF_PASS)
            status = CX_CONF_XPASS;
        cx_conf__report_add(rep, &e->pub, status, res.skip_kind, res.text, ms, xf);
    }
    free(skips);
    cx_conf__suite_free(&s);
    *out = rep;
    return 0;
}

int cx_conf_read_waivers(const char *path, cx_conf_waiver_t **out, size_t *n, char *why, size_t cap)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, cap, "%s: cannot open", path);
        return -1;
    }
    /* One block: the array, then the strings. */
    size_t count = 0, bytes = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        count++;
        bytes += strlen(line) + 2;
    }
    rewind(f);
    char *block = malloc(count * sizeof(cx_conf_waiver_t) + bytes + 1);
    if (block == NULL) {
        fclose(f);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    cx_conf_waiver_t *w = (cx_conf_waiver_t *)(void *)block;
    char *strs = block + count * sizeof *w;
    size_t lineno = 0, k = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        char *hash = strchr(p, '#');
        if (p == hash || *p == '\0')
            continue;
        size_t l = strlen(p);
        while (l && isspace((unsigned char)p[l - 1]))
            p[--l] = '\0';
        char *sep = p;
        while (*sep && !isspace((unsigned char)*sep))
            sep++;
        char *reason = sep;
        if (*sep)
            *sep++ = '\0', reason = sep;
        while (isspace((unsigned char)*reason))
            reason++;
        if (*reason == '\0') {
            snprintf(why, cap, "%s:%zu: %s has no reason: write why it is expected to fail", path,
                     lineno, p);
            free(block);
            fclose(f);
            return -1;
        }
        size_t il = strlen(p), rl = strlen(reason);
        memcpy(strs, p, il + 1);
        w[k].id = strs;
        strs += il + 1;
        memcpy(strs, reason, rl + 1);
        w[k].reason = strs;
        strs += rl + 1;
        k++;
    }
    fclose(f);
    *out = w;
    *n = k;
    return 0;
}
