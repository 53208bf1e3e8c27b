/* logging.*: what reaches the logs while the connector works.
 *
 * Each logging check runs the same workload with a capture logger at debug level and the
 * process's stdout/stderr redirected: every fixture delivered, delivered again (the dedupe
 * path), with a tampered body (the rejection path) and truncated (the malformed path). Then it
 * reads every line.
 *
 * The value of `dedupe_key` is left out of the body and PII scans: the runtime builds it, and
 * parse.dedupe_keys_no_pii already reports a key that carries personal data, so one defect is
 * reported once.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

typedef struct {
    char **line;  /* the logger's lines */
    char **scan;  /* the same with dedupe_key nulled */
    size_t *from; /* the case whose deliveries wrote each line */
    size_t n, cap;
    char *stdio_text; /* what the process printed outside the logger */
} logs_t;

static void logs_add(logs_t *l, const char *line, size_t from)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **a = realloc(l->line, cap * sizeof *a);
        if (a == NULL)
            return;
        l->line = a;
        char **b = realloc(l->scan, cap * sizeof *b);
        if (b == NULL)
            return;
        l->scan = b;
        size_t *f = realloc(l->from, cap * sizeof *f);
        if (f == NULL)
            return;
        l->from = f;
        l->cap = cap;
    }
    l->from[l->n] = from;
    char *scan = NULL;
    json_t *j = json_loads(line, 0, NULL);
    if (json_is_object(j) && json_object_get(j, "dedupe_key")) {
        json_object_set_new(j, "dedupe_key", json_null());
        scan = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    json_decref(j);
    l->line[l->n] = strdup(line);
    l->scan[l->n] = scan ? scan : strdup(line);
    if (l->line[l->n] && l->scan[l->n])
        l->n++;
}

static void logs_free(logs_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->line[i]);
        free(l->scan[i]);
    }
    free(l->line);
    free(l->scan);
    free(l->from);
    free(l->stdio_text);
    memset(l, 0, sizeof *l);
}

static void drain(cx_conf_env_t *e, logs_t *l, size_t from)
{
    size_t n = cx_log_capture_count(e->cap);
    for (size_t i = 0; i < n; i++) {
        const char *line = cx_log_capture_line(e->cap, i);
        if (line)
            logs_add(l, line, from);
    }
}

static void deliver_quiet(cx_conf_env_t *e, const cx_conf_req_t *q)
{
    cx_conf_resp_t resp;
    if (cx_conf__deliver(e, q, &resp) == 0)
        cx_conf__resp_free(&resp);
}

static int workload(const cx_conf_suite_t *s, logs_t *l, cx_conf_result_t *r)
{
    memset(l, 0, sizeof *l);
    int saved[2];
    char path[4096];
    if (cx_conf__stdio_begin(saved, path, sizeof path) != 0) {
        cx_conf__fail(r, "cannot capture stdout/stderr");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < s->n_cases && rc == 0; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c))
            continue;
        cx_conf__progress("case %s: delivered, replayed, tampered, truncated", c->name);
        cx_conf_env_t e;
        if (cx_conf__env_open(&e, s, c, NULL, r) != 0) {
            rc = -1;
            break;
        }
        deliver_quiet(&e, &c->req);
        deliver_quiet(&e, &c->req);
        cx_conf_req_t q;
        if (c->req.body_len && cx_conf__req_copy(&c->req, &q) == 0) {
            q.body[q.body_len / 2] ^= 0x01; /* signature as captured: rejected */
            deliver_quiet(&e, &q);
            cx_conf__req_free(&q);
        }
        char why[256];
        if (c->req.body_len > 1 && cx_conf__req_copy(&c->req, &q) == 0) {
            cx_conf__req_set_body(&q, c->req.body, c->req.body_len / 2);
            if (cx_conf__resign(s, c, &q, why, sizeof why) == 0)
                deliver_quiet(&e, &q);
            cx_conf__req_free(&q);
        }
        drain(&e, l, i);
        cx_conf__env_close(&e);
    }
    l->stdio_text = cx_conf__stdio_end(saved, path);
    if (rc == 0 && l->n == 0)
        cx_conf__note(r, "no log line was written");
    return rc;
}

/* A short, masked excerpt for the report: the report must not leak what it reports. */
static void excerpt(const char *text, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = text; *p && *p != '\n' && o + 1 < cap && o < 60; p++)
        out[o++] = isdigit((unsigned char)*p) || *p == '@' ? '#' : *p;
    out[o] = '\0';
}

static const char *const REQUIRED[] = {
    "ts",         "level",      "service",     "version",        "connector",  "correlation_id",
    "tenant_id",  "capability", "event_type",  "dedupe_key",     "dedupe_hit", "outcome",
    "latency_ms", "error_code", "error_class", "upstream_status"};

void cx_conf__check_log_fields(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    logs_t l;
    if (workload(s, &l, r) != 0) {
        logs_free(&l);
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        json_error_t je;
        json_t *j = json_loads(l.line[i], 0, &je);
        if (!json_is_object(j)) {
            cx_conf__fail(r, "log line %zu is not a JSON object", i + 1);
        } else {
            for (size_t k = 0; k < sizeof REQUIRED / sizeof REQUIRED[0]; k++)
                if (json_object_get(j, REQUIRED[k]) == NULL) {
                    cx_conf__fail(r, "log line %zu has no \"%s\" key", i + 1, REQUIRED[k]);
                    break;
                }
            static const char *const SET[] = {"ts", "level", "service", "version"};
            for (size_t k = 0; k < 4; k++)
                if (!json_is_string(json_object_get(j, SET[k])))
                    cx_conf__fail(r, "log line %zu: \"%s\" is not set", i + 1, SET[k]);
        }
        json_decref(j);
        if (r->status == CX_CONF_FAIL && r->len > 2000)
            break;
    }
    if (l.stdio_text && l.stdio_text[0]) {
        char ex[64];
        excerpt(l.stdio_text, ex, sizeof ex);
        size_t lines = 0;
        for (const char *p = l.stdio_text; *p; p++)
            lines += *p == '\n';
        cx_conf__fail(r,
                      "the connector wrote %zu bytes (%zu lines) to stdout/stderr outside the "
                      "structured logger, starting \"%s\": log through cx_runtime_logger() "
                      "with typed setters",
                      strlen(l.stdio_text), lines, ex);
    }
    logs_free(&l);
}

/* ---- Secrets ------------------------------------------------------------------------------ */

typedef struct {
    char name[256];
    char *value;
} secret_t;

static void collect_secrets(const char *dir, const char *rel, secret_t **out, size_t *n, int depth)
{
    struct dirent **list;
    int k = scandir(dir, &list, NULL, alphasort);
    if (k < 0)
        return;
    for (int i = 0; i < k; i++) {
        const char *nm = list[i]->d_name;
        char p[8192], rp[512];
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        snprintf(rp, sizeof rp, "%s%s%s", rel, rel[0] ? "/" : "", nm);
        struct stat st;
        if (nm[0] != '.' && stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < 6) {
                collect_secrets(p, rp, out, n, depth + 1);
            } else if (S_ISREG(st.st_mode) && st.st_size < (1 << 16)) {
                FILE *f = fopen(p, "rb");
                char buf[1 << 16];
                size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
                if (f)
                    fclose(f);
                while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                    len--;
                buf[len] = '\0';
                secret_t *a = realloc(*out, (*n + 2) * sizeof *a);
                if (a && len >= 4) {
                    *out = a;
                    cx_conf__fmt(a[*n].name, sizeof a[*n].name, "%s", rp);
                    a[*n].value = strndup(buf, len);
                    if (a[*n].value)
                        (*n)++;
                    /* A Standard Webhooks secret is also logged without its prefix. */
                    if (len > 6 + 8 && strncmp(buf, "whsec_", 6) == 0) {
                        cx_conf__fmt(a[*n].name, sizeof a[*n].name, "%s (without whsec_)", rp);
                        a[*n].value = strndup(buf + 6, len - 6);
                        if (a[*n].value)
                            (*n)++;
                    }
                } else if (a) {
                    *out = a;
                }
            }
        }
        free(list[i]);
    }
    free(list);
}

void cx_conf__check_log_secrets(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    secret_t *sec = NULL;
    size_t nsec = 0;
    const char *seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < s->n_cases; i++) {
        const char *d = s->cases[i].secrets_dir;
        int dup = d[0] == '\0';
        for (size_t k = 0; k < nseen && !dup; k++)
            dup = strcmp(seen[k], d) == 0;
        if (dup)
            continue;
        if (nseen < 64)
            seen[nseen++] = d;
        collect_secrets(d, "", &sec, &nsec, 0);
    }
    if (nsec == 0) {
        if (s->c->manifest->n_secrets == 0)
            cx_conf__skip(r, CX_CONF_SKIP_NA, "the connector declares no secret");
        else
            cx_conf__skip(r, CX_CONF_SKIP_INPUT, "the fixtures hold no secret to look for");
        free(sec);
        return;
    }
    logs_t l;
    if (workload(s, &l, r) == 0) {
        for (size_t k = 0; k < nsec; k++) {
            cx_conf_forms_t f;
            cx_conf__forms(sec[k].value, strlen(sec[k].value), &f);
            for (size_t i = 0; i < l.n; i++) {
                const char *form = cx_conf__find_forms(&f, l.line[i]);
                if (form) {
                    cx_conf__fail(r, "log line %zu holds secret %s (%s form)", i + 1, sec[k].name,
                                  form);
                    break;
                }
            }
            const char *form = l.stdio_text ? cx_conf__find_forms(&f, l.stdio_text) : NULL;
            if (form)
                cx_conf__fail(r, "stdout/stderr hold secret %s (%s form)", sec[k].name, form);
            cx_conf__forms_free(&f);
        }
    }
    logs_free(&l);
    for (size_t k = 0; k < nsec; k++)
        free(sec[k].value);
    free(sec);
}

/* ---- Raw bodies --------------------------------------------------------------------------- */

#define WINDOW 32
/* The part of each body searched for: a connector logging a body logs its start. */
#define BODY_SCAN_MAX (16u << 10)

/* Whether a window of the body is structure rather than one identifier: a message id of 40
 * characters is fine in a log line; a run of JSON (or form) syntax is not. */
static int structural(const char *w, size_t n)
{
    int syntax = 0;
    for (size_t i = 0; i < n; i++)
        syntax += strchr("{}[]\":,&<>= \n\\%", w[i]) != NULL;
    return syntax >= 3;
}

/* Every WINDOW-character window of every encoded form of one body, in a hash table, so each
 * log line is scanned once with a rolling hash (Rabin-Karp) whatever the body's size. */
typedef struct {
    uint64_t h;
    uint32_t form; /* index into forms, + 1 (0 = empty slot) */
    uint32_t off;
} slot_t;

typedef struct {
    cx_conf_forms_t f;
    int ci[12]; /* the form is matched ignoring case (stored lower-cased) */
    slot_t *t;
    size_t cap;
} windows_t;

static const uint64_t BASE = 1099511628211ull;

static uint64_t hash_window(const char *p)
{
    uint64_t h = 0;
    for (size_t i = 0; i < WINDOW; i++)
        h = h * BASE + (unsigned char)p[i];
    return h;
}

static void windows_add(windows_t *w, uint64_t h, uint32_t form, uint32_t off)
{
    for (size_t i = h & (w->cap - 1);; i = (i + 1) & (w->cap - 1))
        if (w->t[i].form == 0) {
            w->t[i] = (slot_t){h, form + 1, off};
            return;
        }
}

static int windows_build(windows_t *w, const char *body, size_t len)
{
    memset(w, 0, sizeof *w);
    cx_conf__forms(body, len, &w->f);
    size_t total = 0;
    for (size_t k = 0; k < w->f.n; k++) {
        const char *nm = w->f.name[k];
        w->ci[k] = strcmp(nm, "URL-encoded") == 0 || strcmp(nm, "hex") == 0 ||
                   strcmp(nm, "JSON \\u-escaped") == 0;
        if (w->ci[k])
            for (char *q = w->f.form[k]; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        size_t fl = strlen(w->f.form[k]);
        total += fl >= WINDOW ? fl - WINDOW + 1 : 0;
    }
    w->cap = 64;
    while (w->cap < total * 2)
        w->cap <<= 1;
    w->t = calloc(w->cap, sizeof *w->t);
    if (w->t == NULL)
        return -1;
    for (size_t k = 0; k < w->f.n; k++) {
        const char *t = w->f.form[k];
        size_t fl = strlen(t);
        int encoded = strncmp(w->f.name[k], "base64", 6) == 0 || strcmp(w->f.name[k], "hex") == 0;
        for (size_t j = 0; j + WINDOW <= fl; j++)
            if (encoded || structural(t + j, WINDOW))
                windows_add(w, hash_window(t + j), (uint32_t)k, (uint32_t)j);
    }
    return 0;
}

static void windows_free(windows_t *w)
{
    free(w->t);
    cx_conf__forms_free(&w->f);
}

/* The first window of the body found in text: its form's name, or NULL. */
static const char *windows_find(const windows_t *w, const char *text, size_t *off)
{
    size_t n = strlen(text);
    if (n < WINDOW)
        return NULL;
    char *lower = malloc(n + 1);
    if (lower == NULL)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)tolower((unsigned char)text[i]);
    uint64_t top = 1;
    for (size_t i = 1; i < WINDOW; i++)
        top *= BASE;
    const char *found = NULL;
    for (int pass = 0; pass < 2 && !found; pass++) {
        const char *t = pass ? lower : text;
        uint64_t h = hash_window(t);
        for (size_t j = 0; !found; j++) {
            for (size_t i = h & (w->cap - 1); w->t[i].form; i = (i + 1) & (w->cap - 1)) {
                const slot_t *sl = &w->t[i];
                if (sl->h != h || w->ci[sl->form - 1] != pass)
                    continue;
                if (memcmp(w->f.form[sl->form - 1] + sl->off, t + j, WINDOW) == 0) {
                    found = w->f.name[sl->form - 1];
                    *off = sl->off;
                    break;
                }
            }
            if (j + WINDOW >= n)
                break;
            h = (h - (unsigned char)t[j] * top) * BASE + (unsigned char)t[j + WINDOW];
        }
    }
    free(lower);
    return found;
}

void cx_conf__check_log_body(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    logs_t l;
    if (workload(s, &l, r) != 0) {
        logs_free(&l);
        return;
    }
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c) || c->req.body_len < WINDOW)
            continue;
        cx_conf__progress("case %s: looking for its body in %zu log lines", c->name, l.n);
        windows_t w;
        size_t len = c->req.body_len < BODY_SCAN_MAX ? c->req.body_len : BODY_SCAN_MAX;
        if (windows_build(&w, c->req.body, len) != 0) {
            windows_free(&w);
            cx_conf__fail(r, "out of memory");
            break;
        }
        size_t off = 0;
        const char *form = NULL;
        /* Each case's own deliveries are where its body could have been logged. */
        for (size_t k = 0; k < l.n && form == NULL; k++) {
            if (l.from[k] != i)
                continue;
            form = windows_find(&w, l.scan[k], &off);
            if (form)
                cx_conf__fail(r,
                              "case %s: log line %zu holds %d bytes of the raw request body "
                              "(%s form, at offset %zu of that form): log identifiers and "
                              "counts, never payloads",
                              c->name, k + 1, WINDOW, form, off);
        }
        if (form == NULL && l.stdio_text && (form = windows_find(&w, l.stdio_text, &off)))
            cx_conf__fail(r,
                          "case %s: stdout/stderr hold %d bytes of the raw request body (%s "
                          "form)",
                          c->name, WINDOW, form);
        windows_free(&w);
    }
    logs_free(&l);
}

/* ---- Personal data ------------------------------------------------------------------------ */

void cx_conf__check_log_pii(const cx_conf_suite_t *s, cx_conf_result_t *r)
{
    if (!cx_conf__need_inbound(s, r, 0))
        return;
    cx_conf_pii_t pii = {0};
    for (size_t i = 0; i < s->n_cases; i++) {
        const cx_conf_case_t *c = &s->cases[i];
        if (!cx_conf__is_webhook(c))
            continue;
        cx_conf__pii_from_body(&pii, c->req.body, c->req.body_len);
        cx_conf_env_t e;
        cx_conf_result_t tmp;
        memset(&tmp, 0, sizeof tmp);
        if (cx_conf__env_open(&e, s, c, NULL, &tmp) == 0) {
            cx_conf_parsed_t p;
            if (cx_conf__parse(s, e.rt, c, &c->req, c->now, &p) == 0) {
                cx_conf__pii_from_events(&pii, &p);
                cx_conf__parsed_free(&p);
            }
            cx_conf__env_close(&e);
        }
    }
    if (pii.n == 0) {
        cx_conf__skip(r, CX_CONF_SKIP_INPUT,
                      "the fixtures hold no phone number or e-mail address to look for: add "
                      "realistic ones so leaks can be caught");
        cx_conf__pii_free(&pii);
        return;
    }
    logs_t l;
    if (workload(s, &l, r) == 0) {
        for (size_t v = 0; v < pii.n; v++) {
            cx_conf_forms_t f;
            cx_conf__forms(pii.v[v], strlen(pii.v[v]), &f);
            for (size_t i = 0; i < l.n; i++) {
                const char *form = cx_conf__find_forms(&f, l.scan[i]);
                if (form) {
                    cx_conf__fail(r,
                                  "log line %zu holds a full %s from the fixtures (%s form): "
                                  "use cx_log_set_pii() with the field's PII class",
                                  i + 1, pii.kind[v], form);
                    break;
                }
            }
            const char *form = l.stdio_text ? cx_conf__find_forms(&f, l.stdio_text) : NULL;
            if (form)
                cx_conf__fail(r, "stdout/stderr hold a full %s from the fixtures (%s form)",
                              pii.kind[v], form);
            cx_conf__forms_free(&f);
        }
    }
    logs_free(&l);
    cx_conf__pii_free(&pii);
}
