/* Reports: the human one, JUnit XML (CI dashboards) and JSON (tools). All three say the same:
 * one entry per check with its id, status, text and duration. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

typedef struct {
    const cx_conf_check_t *check;
    int status;
    int skip_kind;
    char *text;
    char *expected;
    double ms;
} item_t;

struct cx_conf_report_s {
    char connector[128];
    char version[64];
    char source[4096];
    char fixtures[4096];
    size_t n_cases;
    int strict;
    item_t *items;
    size_t n, cap;
};

cx_conf_report_t *cx_conf__report_new(const cx_connector_t *c, const char *source,
                                      const cx_conf_suite_t *s, const cx_conf_options_t *o)
{
    cx_conf_report_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    snprintf(r->connector, sizeof r->connector, "%s", c->manifest->id);
    snprintf(r->version, sizeof r->version, "%s", c->manifest->version ? c->manifest->version : "");
    snprintf(r->source, sizeof r->source, "%s", source ? source : "");
    snprintf(r->fixtures, sizeof r->fixtures, "%s", s->fixtures);
    r->n_cases = s->n_cases;
    r->strict = o->strict;
    return r;
}

void cx_conf__report_add(cx_conf_report_t *rep, const cx_conf_check_t *check, int status,
                         int skip_kind, const char *text, double ms, const char *expected)
{
    if (rep->n == rep->cap) {
        size_t cap = rep->cap ? rep->cap * 2 : 32;
        item_t *p = realloc(rep->items, cap * sizeof *p);
        if (p == NULL)
            return;
        rep->items = p;
        rep->cap = cap;
    }
    item_t *it = &rep->items[rep->n++];
    it->check = check;
    it->status = status;
    it->skip_kind = skip_kind;
    it->text = strdup(text ? text : "");
    it->expected = expected ? strdup(expected) : NULL;
    it->ms = ms;
}

void cx_conf_report_free(cx_conf_report_t *rep)
{
    if (rep == NULL)
        return;
    for (size_t i = 0; i < rep->n; i++) {
        free(rep->items[i].text);
        free(rep->items[i].expected);
    }
    free(rep->items);
    free(rep);
}

int cx_conf_report_ok(const cx_conf_report_t *rep)
{
    for (size_t i = 0; i < rep->n; i++)
        if (rep->items[i].status == CX_CONF_FAIL || rep->items[i].status == CX_CONF_XPASS)
            return 0;
    return 1;
}

static const char *status_word(int st)
{
    switch (st) {
    case CX_CONF_PASS:
        return "pass";
    case CX_CONF_FAIL:
        return "fail";
    case CX_CONF_SKIP:
        return "skip";
    case CX_CONF_XFAIL:
        return "xfail";
    default:
        return "xpass";
    }
}

static const char *skip_word(int kind)
{
    switch (kind) {
    case CX_CONF_SKIP_NA:
        return "not_applicable";
    case CX_CONF_SKIP_INPUT:
        return "no_input";
    case CX_CONF_SKIP_DECLARED:
        return "declared";
    default:
        return "";
    }
}

static void counts(const cx_conf_report_t *rep, size_t c[5])
{
    memset(c, 0, 5 * sizeof *c);
    for (size_t i = 0; i < rep->n; i++)
        c[rep->items[i].status]++;
}

void cx_conf_report_human(const cx_conf_report_t *rep, FILE *f)
{
    fprintf(f, "cx-conformance: connector %s %s (%s), fixtures %s (%zu case%s)%s\n", rep->connector,
            rep->version, rep->source, rep->fixtures, rep->n_cases, rep->n_cases == 1 ? "" : "s",
            rep->strict ? ", strict" : "");
    for (size_t i = 0; i < rep->n; i++) {
        const item_t *it = &rep->items[i];
        static const char *const WORD[] = {"PASS ", "FAIL ", "SKIP ", "XFAIL", "XPASS"};
        fprintf(f, "  %s %-44s %7.0f ms\n", WORD[it->status], it->check->id, it->ms);
        if (it->status == CX_CONF_XPASS)
            fprintf(f,
                    "        listed as an expected failure (%s) but passed: remove it from "
                    "the list\n",
                    it->expected ? it->expected : "");
        if (it->status == CX_CONF_XFAIL)
            fprintf(f, "        expected failure: %s\n", it->expected ? it->expected : "");
        if (it->status != CX_CONF_PASS && it->text[0]) {
            const char *p = it->text;
            while (*p) {
                const char *e = strchr(p, '\n');
                int len = e ? (int)(e - p) : (int)strlen(p);
                fprintf(f, "        %.*s\n", len, p);
                p += len + (e != NULL);
            }
        }
    }
    size_t c[5];
    counts(rep, c);
    fprintf(f, "%zu checks: %zu passed, %zu failed, %zu skipped", rep->n, c[CX_CONF_PASS],
            c[CX_CONF_FAIL] + c[CX_CONF_XPASS], c[CX_CONF_SKIP]);
    if (c[CX_CONF_XFAIL])
        fprintf(f, ", %zu expected failures", c[CX_CONF_XFAIL]);
    fprintf(f, "\n%s\n", cx_conf_report_ok(rep) ? "conformance: OK" : "conformance: FAILED");
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        switch (ch) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\n':
            fputs("&#10;", f);
            break;
        default:
            if (ch < 0x20 && ch != '\t')
                fputc(' ', f);
            else
                fputc(ch, f);
        }
    }
}

int cx_conf_report_junit(const cx_conf_report_t *rep, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    size_t c[5];
    counts(rep, c);
    double total = 0;
    for (size_t i = 0; i < rep->n; i++)
        total += rep->items[i].ms;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    fprintf(f, "  <testsuite name=\"cx-conformance.");
    xml_text(f, rep->connector);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" time=\"%.3f\">\n",
            rep->n, c[CX_CONF_FAIL] + c[CX_CONF_XPASS], c[CX_CONF_SKIP] + c[CX_CONF_XFAIL],
            total / 1000.0);
    fprintf(f, "    <properties>\n      <property name=\"connector.version\" value=\"");
    xml_text(f, rep->version);
    fprintf(f, "\"/>\n      <property name=\"source\" value=\"");
    xml_text(f, rep->source);
    fprintf(f, "\"/>\n      <property name=\"fixtures\" value=\"");
    xml_text(f, rep->fixtures);
    fprintf(f, "\"/>\n      <property name=\"strict\" value=\"%s\"/>\n    </properties>\n",
            rep->strict ? "true" : "false");
    for (size_t i = 0; i < rep->n; i++) {
        const item_t *it = &rep->items[i];
        fprintf(f, "    <testcase classname=\"conformance.%s\" name=\"%s\" time=\"%.3f\"",
                it->check->category, it->check->id, it->ms / 1000.0);
        if (it->status == CX_CONF_PASS) {
            fprintf(f, "/>\n");
            continue;
        }
        fprintf(f, ">\n");
        if (it->status == CX_CONF_FAIL || it->status == CX_CONF_XPASS) {
            const char *msg =
                it->status == CX_CONF_XPASS ? "listed as an expected failure but passed" : it->text;
            fprintf(f, "      <failure message=\"");
            char first[300];
            snprintf(first, sizeof first, "%s", msg);
            char *nl = strchr(first, '\n');
            if (nl)
                *nl = '\0';
            xml_text(f, first);
            fprintf(f, "\" type=\"%s\">", it->status == CX_CONF_XPASS ? "xpass" : "fail");
            xml_text(f, it->text);
            fprintf(f, "</failure>\n");
        } else {
            fprintf(f, "      <skipped message=\"");
            if (it->status == CX_CONF_XFAIL) {
                fputs("expected failure: ", f);
                xml_text(f, it->expected ? it->expected : "");
            } else {
                xml_text(f, it->text);
            }
            fprintf(f, "\"/>\n");
        }
        fprintf(f, "    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* A JSON string of s with every byte that is not valid UTF-8 replaced by '?' (a message may
 * quote a key or a header that is not text). */
static json_t *text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (c == NULL)
        return json_string("");
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = u[i] < 0x80             ? 1
                     : (u[i] & 0xE0) == 0xC0 ? 2
                     : (u[i] & 0xF0) == 0xE0 ? 3
                     : (u[i] & 0xF8) == 0xF0 ? 4
                                             : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) {
            char tmp[5] = {0};
            memcpy(tmp, s + i, len);
            json_t *probe = json_string(tmp); /* overlong forms and surrogates */
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok) {
            memcpy(c + i, s + i, len);
            i += len;
        } else {
            c[i++] = '?';
        }
    }
    c[n] = '\0';
    j = json_string(c);
    free(c);
    return j ? j : json_string("");
}

int cx_conf_report_json(const cx_conf_report_t *rep, const char *path)
{
    json_t *root = json_object();
    json_t *conn = json_object();
    json_object_set_new(conn, "id", text(rep->connector));
    json_object_set_new(conn, "version", text(rep->version));
    json_object_set_new(conn, "source", text(rep->source));
    json_object_set_new(root, "connector", conn);
    json_object_set_new(root, "fixtures", text(rep->fixtures));
    json_object_set_new(root, "cases", json_integer((json_int_t)rep->n_cases));
    json_object_set_new(root, "strict", json_boolean(rep->strict));
    size_t c[5];
    counts(rep, c);
    json_t *sum = json_object();
    json_object_set_new(sum, "total", json_integer((json_int_t)rep->n));
    json_object_set_new(sum, "passed", json_integer((json_int_t)c[CX_CONF_PASS]));
    json_object_set_new(sum, "failed",
                        json_integer((json_int_t)(c[CX_CONF_FAIL] + c[CX_CONF_XPASS])));
    json_object_set_new(sum, "skipped", json_integer((json_int_t)c[CX_CONF_SKIP]));
    json_object_set_new(sum, "expected_failures", json_integer((json_int_t)c[CX_CONF_XFAIL]));
    json_object_set_new(root, "summary", sum);
    json_object_set_new(root, "ok", json_boolean(cx_conf_report_ok(rep)));
    json_t *checks = json_array();
    for (size_t i = 0; i < rep->n; i++) {
        const item_t *it = &rep->items[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(it->check->id));
        json_object_set_new(o, "category", json_string(it->check->category));
        json_object_set_new(o, "status", json_string(status_word(it->status)));
        if (it->status == CX_CONF_SKIP)
            json_object_set_new(o, "skip_kind", json_string(skip_word(it->skip_kind)));
        json_object_set_new(o, "message", text(it->text));
        if (it->expected)
            json_object_set_new(o, "expected_failure", text(it->expected));
        json_object_set_new(o, "duration_ms", json_real(it->ms));
        json_array_append_new(checks, o);
    }
    json_object_set_new(root, "checks", checks);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : -1;
    json_decref(root);
    return rc;
}
