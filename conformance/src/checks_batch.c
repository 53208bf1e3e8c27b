/* batch.* and idempotency.*: one item's failure never costs the others, and nothing runs twice.
 *
 * The runtime clock stays fixed while a check redelivers: whether keys survive a later
 * redelivery is parse.dedupe_keys_deterministic's question, so each defect is reported once.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *error_code(const cx_conf_resp_t *resp)
{
    const char *c = json_string_value(json_object_get(resp->body, "errorCode"));
    return c ? c : "";
}

/* The distinct keys of the valid items of a case. Returns the count (keys borrowed from p). */
static size_t valid_keys(const cx_conf_parsed_t *p, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t k = 0; k < p->n && n < max; k++) {
        if (p->key[k] == NULL || p->valid[k] != 0 || p->ev[k].error)
            continue;
        int dup = 0;
        for (size_t j = 0; j < n; j++)
            dup |= strcmp(out[j], p->key[k]) == 0;
        if (!dup)
            out[n++] = p->key[k];
    }
    return n;
}

void cx_conf__check_batch_redelivery(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    size_t tried = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || cx_conf__expected_status(c) != 200)
            continue;
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_parsed_t p;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) != 0 || p.rc != 0) {
            if (p.rc == 0)
                cx_conf__fail(r, "out of memory");
            cx_conf__parsed_free(&p);
            cx_conf__env_close(&e);
            continue;
        }
        const char **keys = calloc(p.n + 1, sizeof *keys);
        size_t n = keys ? valid_keys(&p, keys, p.n) : 0;
        if (n < 2) {
            free(keys);
            cx_conf__parsed_free(&p);
            cx_conf__env_close(&e);
            continue;
        }
        tried++;
        cx_conf__progress("case %s: a handler fails on one item, then the provider redelivers",
                          c->name);
        /* The handler fails (transiently) on the first item once. */
        snprintf(e.fail_key, sizeof e.fail_key, "%s", keys[0]);
        e.fail_remaining = 1;
        cx_conf_resp_t resp;
        if (cx_conf__deliver(&e, &c->req, &resp) == 0) {
            if (resp.status != 503)
                cx_conf__fail(r,
                              "case %s: with one item failing transiently the answer was %d "
                              "%s, not 503 (the provider must redeliver)",
                              c->name, resp.status, error_code(&resp));
            cx_conf__resp_free(&resp);
        }
        for (size_t k = 1; k < n; k++) {
            const cx_conf_seen_t *sn = cx_conf__seen(&e, keys[k]);
            if (sn == NULL || sn->processed != 1)
                cx_conf__fail(r,
                              "case %s: item with key '%s' was processed %u times in the "
                              "delivery where another item failed (expected once)",
                              c->name, keys[k], sn ? sn->processed : 0);
        }
        /* The redelivery: the same request again. */
        cx_conf_req_t again;
        if (cx_conf__req_copy(&c->req, &again) == 0) {
            cx_conf__req_set_header(&again, "X-Correlation-Id", "conformance-redelivery");
            if (cx_conf__deliver(&e, &again, &resp) == 0) {
                if (resp.status != 200)
                    cx_conf__fail(r, "case %s: the redelivery was answered %d %s, not 200", c->name,
                                  resp.status, error_code(&resp));
                cx_conf__resp_free(&resp);
            }
            cx_conf__req_free(&again);
        }
        for (size_t k = 0; k < n; k++) {
            const cx_conf_seen_t *sn = cx_conf__seen(&e, keys[k]);
            if (sn == NULL || sn->processed != 1)
                cx_conf__fail(r,
                              "case %s: across the delivery and its redelivery, the item with "
                              "key '%s' was processed %u times (expected exactly once)",
                              c->name, keys[k], sn ? sn->processed : 0);
        }
        /* Keys the handler saw that parse did not predict mean the keys moved between
         * deliveries. */
        for (size_t k = 0; k < e.n_seen; k++) {
            int known = 0;
            for (size_t j = 0; j < n; j++)
                known |= strcmp(e.seen[k].key, keys[j]) == 0;
            if (!known)
                cx_conf__fail(r,
                              "case %s: the handler saw key '%s', which a direct parse of the "
                              "same request does not produce",
                              c->name, e.seen[k].key);
            if (r->len > 3000)
                break;
        }
        free(keys);
        cx_conf__parsed_free(&p);
        cx_conf__env_close(&e);
    }
    if (tried == 0)
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no fixture holds a batch of two or more valid items: add one so a "
                      "partial failure can be exercised");
}

void cx_conf__check_batch_bad_item(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    size_t tried = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || cx_conf__expected_status(c) != 200)
            continue;
        char where[600];
        size_t plen = 0;
        char *poisoned =
            cx_conf__poison_item(c->req.body, c->req.body_len, &plen, where, sizeof where);
        if (poisoned == NULL)
            continue;
        if (!cx_conf__can_resign(s, c)) {
            cx_conf__note(r, "case %s: cannot re-sign a changed body (scheme not recognised)",
                          c->name);
            free(poisoned);
            continue;
        }
        tried++;
        cx_conf__progress("case %s: item %s replaced by {}", c->name, where);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0) {
            free(poisoned);
            return;
        }
        cx_conf_parsed_t p;
        size_t n_valid = 0;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) == 0) {
            const char **keys = calloc(p.n + 1, sizeof *keys);
            n_valid = p.rc == 0 && keys ? valid_keys(&p, keys, p.n) : 0;
            free(keys);
            cx_conf__parsed_free(&p);
        }
        cx_conf_req_t q;
        char why[512];
        if (cx_conf__req_copy(&c->req, &q) == 0) {
            cx_conf__req_set_body(&q, poisoned, plen);
            if (cx_conf__resign(s, c, &q, why, sizeof why) != 0) {
                cx_conf__fail(r, "%s", why);
            } else {
                cx_conf_resp_t resp;
                if (cx_conf__deliver(&e, &q, &resp) == 0) {
                    long processed = cx_conf__summary(&resp, "processed");
                    if (resp.status >= 400)
                        cx_conf__fail(r,
                                      "case %s: with one unusable item (%s replaced by {}) the "
                                      "whole request was rejected: %d %s. One bad item must "
                                      "fail alone (cx_parse_emit_error) so the others are "
                                      "processed",
                                      c->name, where, resp.status, error_code(&resp));
                    else if (n_valid >= 2 && processed < 1)
                        cx_conf__fail(r,
                                      "case %s: with one unusable item (%s replaced by {}) no "
                                      "other item was processed",
                                      c->name, where);
                    cx_conf__resp_free(&resp);
                }
            }
            cx_conf__req_free(&q);
        }
        free(poisoned);
        cx_conf__env_close(&e);
    }
    if (tried == 0)
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no fixture body holds a JSON array of two or more objects (a batch) in "
                      "which one item could be made unusable");
}

void cx_conf__check_idempotency(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || cx_conf__expected_status(c) != 200)
            continue;
        cx_conf__progress("case %s: delivered, then replayed", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_resp_t first, second;
        if (cx_conf__deliver(&e, &c->req, &first) != 0) {
            cx_conf__env_close(&e);
            continue;
        }
        size_t calls = e.calls;
        cx_conf_req_t again;
        if (cx_conf__req_copy(&c->req, &again) != 0) {
            cx_conf__resp_free(&first);
            cx_conf__env_close(&e);
            return;
        }
        cx_conf__req_set_header(&again, "X-Correlation-Id", "conformance-replay");
        if (cx_conf__deliver(&e, &again, &second) == 0) {
            long p1 = cx_conf__summary(&first, "processed");
            long p2 = cx_conf__summary(&second, "processed");
            long d2 = cx_conf__summary(&second, "deduped");
            long d1 = cx_conf__summary(&first, "deduped");
            if (e.calls != calls || p2 != 0)
                cx_conf__fail(r,
                              "case %s: the replay ran %zu handler calls (%ld items "
                              "processed again); every item must be deduped",
                              c->name, e.calls - calls, p2);
            else if (p1 > 0 && d2 < p1 + d1)
                cx_conf__fail(r,
                              "case %s: %ld items were processed, but only %ld were deduped "
                              "on replay",
                              c->name, p1, d2);
            if (second.status != 200)
                cx_conf__fail(r, "case %s: the replay was answered %d %s, not 200", c->name,
                              second.status, error_code(&second));
            cx_conf__resp_free(&second);
        }
        cx_conf__resp_free(&first);
        cx_conf__req_free(&again);
        cx_conf__env_close(&e);
    }
}
