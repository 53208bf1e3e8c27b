/* robustness.mutated_fixtures: malformed input never crashes, hangs or makes the provider
 * redeliver a poison pill.
 *
 * Every mutation of every fixture (mutate.c) is re-signed, so it gets past verification and
 * reaches parse, and run through the pipeline. A 4xx, or a 200 whose bad items failed alone,
 * is right. A 5xx is wrong: the provider would redeliver the same bytes forever. A crash or a
 * hang ends this check's process, and the report names the mutation that was running.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "internal.h"

void cx_conf__check_robustness(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    size_t ran = 0, total = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c))
            continue;
        if (!cx_conf__can_resign(s, c)) {
            cx_conf__note(r,
                          "case %s: signing scheme not recognised, mutations cannot be "
                          "re-signed (declare it in conformance.json)",
                          c->name);
            continue;
        }
        ran++;
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_mutation_t *m;
        size_t n = cx_conf__mutations(c->req.body, c->req.body_len, c->name, &m);
        for (size_t k = 0; k < n; k++) {
            cx_conf__progress("case %s, mutation %zu/%zu: %s", c->name, k + 1, n, m[k].what);
            cx_conf_req_t q;
            if (cx_conf__req_copy(&c->req, &q) != 0)
                break;
            char why[512];
            if (cx_conf__req_set_body(&q, m[k].body, m[k].len) != 0 ||
                cx_conf__resign(s, c, &q, why, sizeof why) != 0) {
                cx_conf__fail(r, "case %s: %s", c->name, why);
                cx_conf__req_free(&q);
                break;
            }
            cx_conf_resp_t resp;
            if (cx_conf__deliver(&e, &q, &resp) == 0) {
                total++;
                if (resp.status >= 500) {
                    const char *code = json_string_value(json_object_get(resp.body, "errorCode"));
                    cx_conf__fail(r,
                                  "case %s, %s: answered %d %s; a malformed request must get "
                                  "a 4xx or per-item failures (a 5xx makes the provider "
                                  "redeliver a poison pill)",
                                  c->name, m[k].what, resp.status, code ? code : "");
                } else if (resp.status < 200 || (resp.status >= 300 && resp.status < 400)) {
                    cx_conf__fail(r, "case %s, %s: answered %d", c->name, m[k].what, resp.status);
                }
                cx_conf__resp_free(&resp);
            }
            cx_conf__req_free(&q);
            if (r->status == CX_CONF_FAIL && r->len > 3000)
                break;
        }
        cx_conf__mutations_free(m, n);
        cx_conf__env_close(&e);
    }
    if (ran == 0)
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no fixture could be re-signed after mutation: declare the signing scheme "
                      "in conformance.json");
    else if (r->status == CX_CONF_PASS)
        cx_conf__note(r, "%zu mutated requests, none crashed, hung or got a 5xx", total);
}
