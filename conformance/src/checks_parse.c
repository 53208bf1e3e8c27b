/* parse.*: what the connector makes of its fixtures, event by event, and the dedupe keys the
 * runtime derives from those events (docs/conformance.md). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* expect.json "failed": {"<index>": "<ERROR_CODE>"}: the code expected for item i, or NULL. */
static const char *expected_failure(const cx_conf_case_t *c, size_t i)
{
    json_t *f = c->expect ? json_object_get(c->expect, "failed") : NULL;
    char k[32];
    snprintf(k, sizeof k, "%zu", i);
    return json_string_value(json_object_get(f, k));
}

/* Calls fn(case, parsed) for every request case that should parse, with an env for secrets. */
typedef void (*per_case_fn)(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_parsed_t *p,
                            cx_conf_result_t *r, void *ud);

static void each_parsed(const cx_conf_suite_t *s, cx_conf_result_t *r, per_case_fn fn, void *ud)
{
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c))
            continue;
        int st = cx_conf__expected_status(c);
        if (st == 401 || st == 400 || st == 413)
            continue;
        cx_conf__progress("case %s: parse", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_parsed_t p;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) != 0) {
            cx_conf__fail(r, "out of memory");
            cx_conf__env_close(&e);
            return;
        }
        if (p.rc == 0)
            fn(s, c, &p, r, ud);
        cx_conf__parsed_free(&p);
        cx_conf__env_close(&e);
    }
}

void cx_conf__check_parse_fixtures(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || cx_conf__expected_status(c) == 401)
            continue;
        cx_conf__progress("case %s: parse", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_parsed_t p;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) != 0) {
            cx_conf__fail(r, "out of memory");
            cx_conf__env_close(&e);
            return;
        }
        int st = cx_conf__expected_status(c);
        if (st == 400 || st == 413) {
            if (p.rc == 0)
                cx_conf__fail(r,
                              "case %s: expect.json says the request is malformed (%d) but "
                              "parse accepted it",
                              c->name, st);
        } else if (p.rc != 0) {
            cx_conf__fail(r, "case %s: parse rejected the whole request: %s (%s)", c->name,
                          cx_err_name(p.rc), p.err);
        } else {
            json_t *total =
                c->expect ? json_object_get(json_object_get(c->expect, "summary"), "total") : NULL;
            if (p.n == 0 && !(json_is_integer(total) && json_integer_value(total) == 0))
                cx_conf__fail(r,
                              "case %s: parse produced no event (a fixture must exercise "
                              "something; a request with nothing to map is a handshake or "
                              "belongs in expect.json with summary.total 0)",
                              c->name);
            for (size_t k = 0; k < p.n; k++) {
                const cx_event_t *ev = &p.ev[k];
                if (!ev->error && ev->msg)
                    continue;
                if (expected_failure(c, k) == NULL)
                    cx_conf__fail(r,
                                  "case %s: item %zu could not be mapped (%s: %s) and "
                                  "expect.json does not list it under \"failed\"",
                                  c->name, k, cx_err_name(ev->error ? ev->error : CX_EMALFORMED),
                                  ev->error_detail ? ev->error_detail : "no detail");
            }
        }
        cx_conf__parsed_free(&p);
        cx_conf__env_close(&e);
    }
}

static void valid_case(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_parsed_t *p,
                       cx_conf_result_t *r, void *ud)
{
    (void)ud;
    for (size_t k = 0; k < p->n; k++) {
        const cx_event_t *ev = &p->ev[k];
        if (ev->error || ev->msg == NULL)
            continue;
        if (ev->meta == NULL) {
            cx_conf__fail(r, "case %s: item %zu has no schema meta", c->name, k);
            continue;
        }
        if (ev->meta->event_type == NULL || ev->meta->capability == NULL) {
            cx_conf__fail(r,
                          "case %s: item %zu is a %s, which is not an event type with a "
                          "capability",
                          c->name, k, ev->meta->full_name);
            continue;
        }
        int st = cx_conf__capability_state(s->c, ev->meta->capability);
        if (st == 0)
            cx_conf__fail(r,
                          "case %s: item %zu is a %s of capability %s, which the manifest "
                          "does not declare",
                          c->name, k, ev->meta->event_type, ev->meta->capability);
        else if (st == CX_CAP_PLANNED)
            cx_conf__fail(r,
                          "case %s: item %zu is a %s of capability %s, which the manifest "
                          "declares planned (the runtime refuses its traffic)",
                          c->name, k, ev->meta->event_type, ev->meta->capability);
        if (ev->account_id == NULL || ev->account_id[0] == '\0')
            cx_conf__fail(r,
                          "case %s: item %zu names no provider account: the tenant cannot be "
                          "resolved",
                          c->name, k);
        if (p->valid[k] != 0) {
            const char *want = expected_failure(c, k);
            if (want == NULL || strcmp(want, "VALIDATION") != 0)
                cx_conf__fail(r, "case %s: item %zu (%s) fails its schema: %s", c->name, k,
                              ev->meta->event_type, p->violation + k * 160);
        }
    }
}

void cx_conf__check_parse_valid(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    each_parsed(s, r, valid_case, NULL);
}

/* Whether every member of want is in got with the same value, objects compared the same way
 * recursively (expect.json pins the fields that matter, not every default). */
static int subset(const json_t *want, const json_t *got)
{
    if (json_is_object(want) && json_is_object(got)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)want, k, v)
        {
            if (!subset(v, json_object_get(got, k)))
                return 0;
        }
        return 1;
    }
    if (json_is_array(want) && json_is_array(got)) {
        if (json_array_size(want) != json_array_size(got))
            return 0;
        for (size_t i = 0; i < json_array_size(want); i++)
            if (!subset(json_array_get(want, i), json_array_get(got, i)))
                return 0;
        return 1;
    }
    return got != NULL && json_equal(want, got);
}

void cx_conf__check_parse_expect(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    size_t with = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || c->expect == NULL)
            continue;
        with++;
        cx_conf__progress("case %s: against expect.json", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0)
            return;
        cx_conf_parsed_t p;
        memset(&p, 0, sizeof p);
        cx_conf_resp_t resp;
        if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) != 0 ||
            cx_conf__deliver(&e, &c->req, &resp) != 0) {
            cx_conf__fail(r, "case %s: cannot run the pipeline", c->name);
            cx_conf__parsed_free(&p);
            cx_conf__env_close(&e);
            return;
        }
        int want_status = cx_conf__expected_status(c);
        if (resp.status != want_status)
            cx_conf__fail(r, "case %s: status %d, expect.json says %d", c->name, resp.status,
                          want_status);
        json_t *summary = json_object_get(c->expect, "summary");
        const char *k;
        json_t *v;
        json_object_foreach(summary, k, v)
        {
            long got = cx_conf__summary(&resp, k);
            if (!json_is_integer(v) || got != (long)json_integer_value(v))
                cx_conf__fail(r,
                              "case %s: summary.%s is %ld, expect.json says %" JSON_INTEGER_FORMAT,
                              c->name, k, got, json_integer_value(v));
        }
        json_t *results = json_object_get(resp.body, "results");
        json_t *failed = json_object_get(c->expect, "failed");
        if (failed) {
            json_t *got = json_object();
            size_t idx;
            json_t *res;
            json_array_foreach(results, idx, res)
            {
                const char *oc = json_string_value(json_object_get(res, "outcome"));
                if (oc && strcmp(oc, "failed") == 0) {
                    char key[32];
                    snprintf(key, sizeof key, "%" JSON_INTEGER_FORMAT,
                             json_integer_value(json_object_get(res, "index")));
                    json_object_set(got, key, json_object_get(res, "errorCode"));
                }
            }
            if (!json_equal(got, failed)) {
                char *gs = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
                char *ws = json_dumps(failed, JSON_COMPACT | JSON_SORT_KEYS);
                cx_conf__fail(r, "case %s: failed items %s, expect.json says %s", c->name,
                              gs ? gs : "?", ws ? ws : "?");
                free(gs);
                free(ws);
            }
            json_decref(got);
        }
        json_t *events = json_object_get(c->expect, "events");
        if (events) {
            /* Every item that did not fail (processed, or deduped inside the batch), in order. */
            size_t at = 0, n_exp = json_array_size(events);
            for (size_t idx = 0; idx < json_array_size(results) && idx < p.n; idx++) {
                json_t *res = json_array_get(results, idx);
                const char *oc = json_string_value(json_object_get(res, "outcome"));
                if (oc == NULL || strcmp(oc, "failed") == 0)
                    continue; /* failed items are listed under "failed" */
                if (at >= n_exp) {
                    at++;
                    continue;
                }
                json_t *want = json_array_get(events, at++);
                const char *fk;
                json_t *fv;
                json_object_foreach(want, fk, fv)
                {
                    json_t *doc = NULL, *got = NULL, *own = NULL;
                    const cx_event_t *ev = &p.ev[idx];
                    if (strcmp(fk, "type") == 0)
                        got = own = json_string(ev->meta ? ev->meta->event_type : "");
                    else if (strcmp(fk, "dedupeKey") == 0)
                        got = json_object_get(res, "dedupeKey");
                    else if (strcmp(fk, "capability") == 0)
                        got = own = json_string(
                            ev->meta && ev->meta->capability ? ev->meta->capability : "");
                    else if (strcmp(fk, "tenantId") == 0)
                        got = own = json_string(p.tenant[idx]);
                    else {
                        /* "fields": {...} pins several canonical fields at once; any other
                         * key is one top-level canonical field. */
                        doc = p.json[idx] ? json_loads(p.json[idx], 0, NULL) : NULL;
                        got = strcmp(fk, "fields") == 0 ? doc : json_object_get(doc, fk);
                    }
                    if (got == NULL || !subset(fv, got)) {
                        char *gs = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
                        char *ws = json_dumps(fv, JSON_ENCODE_ANY | JSON_COMPACT);
                        cx_conf__fail(r,
                                      "case %s: event %zu (item %zu): %s is %s, expect.json "
                                      "says %s",
                                      c->name, at - 1, idx, fk, gs ? gs : "absent", ws ? ws : "?");
                        free(gs);
                        free(ws);
                    }
                    json_decref(own);
                    json_decref(doc);
                }
            }
            if (at != n_exp)
                cx_conf__fail(r, "case %s: %zu items were not failed, expect.json lists %zu events",
                              c->name, at, n_exp);
        }
        cx_conf__resp_free(&resp);
        cx_conf__parsed_free(&p);
        cx_conf__env_close(&e);
    }
    if (with == 0)
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "no fixture has an expect.json to compare with: add one per case "
                      "(docs/conformance.md, \"Fixtures\")");
}

static void nonempty_case(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_parsed_t *p,
                          cx_conf_result_t *r, void *ud)
{
    (void)s;
    (void)ud;
    for (size_t k = 0; k < p->n; k++) {
        if (p->ev[k].error || p->ev[k].msg == NULL || p->valid[k] != 0)
            continue; /* failed items fail alone before any key is built */
        if (p->key_rc[k] != 0)
            cx_conf__fail(r, "case %s: item %zu (%s): no dedupe key: %s (%s)", c->name, k,
                          p->ev[k].meta->event_type, cx_err_name(p->key_rc[k]),
                          p->key_err + k * 192);
        else if (p->key[k] == NULL || p->key[k][0] == '\0')
            cx_conf__fail(r, "case %s: item %zu: the dedupe key is empty", c->name, k);
    }
}

void cx_conf__check_keys_nonempty(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    each_parsed(s, r, nonempty_case, NULL);
}

/* ---- Determinism -------------------------------------------------------------------------- */

/* The keys of every case, one line per item ("-" when none), cases separated by "=". */
static char *keys_text(const cx_conf_suite_t *s, int64_t shift)
{
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c))
            continue;
        cx_conf_env_t e;
        cx_conf_result_t tmp;
        memset(&tmp, 0, sizeof tmp);
        cx_conf_parsed_t p;
        if (cx_conf__env_open(&e, s, c, NULL, &tmp) != 0 ||
            cx_conf__parse(s, e.rt, c, &c->req, c->now + shift, &p) != 0) {
            cx_buf_puts(&b, "=error\n");
            continue;
        }
        cx_buf_printf(&b, "=%d %zu\n", p.rc, p.n);
        for (size_t k = 0; k < p.n; k++) {
            const char *key = p.key[k] ? p.key[k] : "-";
            for (const char *q = key; *q; q++)
                cx_buf_putc(&b, *q == '\n' ? ' ' : *q);
            cx_buf_putc(&b, '\n');
        }
        cx_conf__parsed_free(&p);
        cx_conf__env_close(&e);
    }
    char *out = b.data ? strndup(b.data, b.len) : strdup("");
    cx_buf_free(&b);
    return out;
}

/* keys_text() in a fresh child process (forked before this process parsed anything). */
static char *keys_in_child(const cx_conf_suite_t *s, int64_t shift)
{
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        char *t = keys_text(s, shift);
        size_t n = t ? strlen(t) : 0, o = 0;
        while (o < n) {
            ssize_t w = write(fds[1], t + o, n - o);
            if (w <= 0)
                break;
            o += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    cx_buf_t b;
    cx_buf_init(&b, 64u << 20);
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        cx_buf_append(&b, buf, (size_t)n);
    }
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    char *out = NULL;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        out = b.data ? strndup(b.data, b.len) : strdup("");
    cx_buf_free(&b);
    return out;
}

/* Names the first line where two key listings differ. */
static void compare(const cx_conf_suite_t *s, const char *a, const char *b, const char *how,
                    cx_conf_result_t *r)
{
    if (a == NULL || b == NULL) {
        cx_conf__fail(r, "%s: a parse process crashed or failed", how);
        return;
    }
    if (strcmp(a, b) == 0)
        return;
    size_t case_i = 0, item = 0;
    const char *pa = a, *pb = b;
    const cx_conf_case_t *c = NULL;
    for (;;) {
        const char *ea = strchr(pa, '\n'), *eb = strchr(pb, '\n');
        if (ea == NULL || eb == NULL)
            break;
        if (*pa == '=') {
            while (case_i < s->n_cases && !cx_conf__is_webhook(&s->cases[case_i]))
                case_i++;
            c = case_i < s->n_cases ? &s->cases[case_i++] : NULL;
            item = 0;
        } else {
            item++;
        }
        if ((size_t)(ea - pa) != (size_t)(eb - pb) || memcmp(pa, pb, (size_t)(ea - pa)) != 0) {
            if (*pa == '=' || *pb == '=')
                cx_conf__fail(r, "case %s: %s: parse produced a different number of events",
                              c ? c->name : "?", how);
            else
                cx_conf__fail(r,
                              "case %s item %zu: %s: the dedupe key changed from '%.*s' to "
                              "'%.*s'",
                              c ? c->name : "?", item - 1, how, (int)(ea - pa), pa, (int)(eb - pb),
                              pb);
            return;
        }
        pa = ea + 1;
        pb = eb + 1;
    }
    cx_conf__fail(r, "%s: the dedupe keys differ", how);
}

/* A redelivery comes later than the original: keys must not depend on the arrival time. */
#define REDELIVERY_SHIFT_S (3 * 86400 + 7)

void cx_conf__check_keys_deterministic(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    cx_conf__progress("parsing in a first process");
    char *a = keys_in_child(s, 0);
    /* Let the wall clock move on, so a key built from time() differs too. */
    struct timespec ts = {1, 100000000};
    nanosleep(&ts, NULL);
    cx_conf__progress("parsing in a second process, as a redelivery three days later");
    char *b = keys_in_child(s, REDELIVERY_SHIFT_S);
    cx_conf__progress("parsing twice in this process");
    char *c1 = keys_text(s, 0);
    char *c2 = keys_text(s, 0);
    compare(s, c1, c2, "two runs in one process", r);
    if (r->status == CX_CONF_PASS)
        compare(s, a, c1, "two processes", r);
    if (r->status == CX_CONF_PASS)
        compare(s, a, b, "a redelivery three days later (runtime clock moved)", r);
    free(a);
    free(b);
    free(c1);
    free(c2);
}

static void distinct_case(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_parsed_t *p,
                          cx_conf_result_t *r, void *ud)
{
    (void)s;
    (void)ud;
    json_t *d =
        c->expect ? json_object_get(json_object_get(c->expect, "summary"), "deduped") : NULL;
    long allowed = json_is_integer(d) ? (long)json_integer_value(d) : 0, clashes = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->key[i] == NULL || p->valid[i] != 0)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (p->key[j] == NULL || p->valid[j] != 0 || strcmp(p->key[i], p->key[j]) != 0)
                continue;
            if (p->json[i] && p->json[j] && strcmp(p->json[i], p->json[j]) == 0)
                break; /* the same event twice: a duplicate, rightly deduped */
            if (++clashes > allowed)
                cx_conf__fail(r,
                              "case %s: items %zu and %zu are different events with the same "
                              "dedupe key '%s': the second would be dropped as a duplicate",
                              c->name, j, i, p->key[i]);
            break;
        }
    }
}

void cx_conf__check_keys_distinct(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    each_parsed(s, r, distinct_case, NULL);
}

static void no_pii_case(const cx_conf_suite_t *s, const cx_conf_case_t *c, cx_conf_parsed_t *p,
                        cx_conf_result_t *r, void *ud)
{
    (void)s;
    (void)ud;
    cx_conf_pii_t pii = {0};
    cx_conf__pii_from_body(&pii, c->req.body, c->req.body_len);
    cx_conf__pii_from_events(&pii, p);
    for (size_t v = 0; v < pii.n; v++) {
        cx_conf_forms_t f;
        cx_conf__forms(pii.v[v], strlen(pii.v[v]), &f);
        for (size_t k = 0; k < p->n; k++) {
            if (p->key[k] == NULL)
                continue;
            const char *form = cx_conf__find_forms(&f, p->key[k]);
            if (form) {
                cx_conf__fail(r,
                              "case %s: item %zu: the dedupe key holds %s %s from the fixture "
                              "(%s form): reference the value through a field whose PII "
                              "class is not none, so the runtime pseudonymises it",
                              c->name, k, pii.kind[v][0] == 'e' ? "an" : "a", pii.kind[v], form);
                break;
            }
        }
        cx_conf__forms_free(&f);
    }
    cx_conf__pii_free(&pii);
}

void cx_conf__check_keys_no_pii(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    each_parsed(s, r, no_pii_case, NULL);
}
