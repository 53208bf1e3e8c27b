/* Looking for leaks: a value in the forms a log line could carry it in, and the personal data
 * a fixture holds.
 *
 * A secret or a phone number must not reach a log line in any form a reader could undo:
 * plain, JSON-escaped (short escapes and \u escapes of every punctuation character),
 * URL-encoded, base64 (standard and URL-safe; a value inside a longer base64 text starts at
 * one of three alignments, so each is encoded and the characters that depend only on the
 * value are kept) or hex.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_inner(const unsigned char *v, size_t len, int align, int urlsafe)
{
    size_t n = (size_t)align + len;
    unsigned char *data = calloc(n + 3, 1);
    char *out = malloc(n / 3 * 4 + 8);
    if (data == NULL || out == NULL) {
        free(data);
        free(out);
        return NULL;
    }
    memcpy(data + align, v, len);
    size_t o = 0;
    for (size_t i = 0; i + 3 <= n; i += 3) { /* whole groups only: a partial one depends on
                                              * what follows the value */
        unsigned w = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        out[o++] = B64[w >> 18 & 63];
        out[o++] = B64[w >> 12 & 63];
        out[o++] = B64[w >> 6 & 63];
        out[o++] = B64[w & 63];
    }
    out[o] = '\0';
    free(data);
    size_t skip = align ? 4 : 0; /* the first group mixes in what precedes the value */
    if (o < skip + 8) {
        free(out);
        return NULL;
    }
    memmove(out, out + skip, o - skip + 1);
    if (urlsafe)
        for (char *p = out; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

void cx_conf__forms(const char *v, size_t len, cx_conf_forms_t *f)
{
    memset(f, 0, sizeof *f);
    const unsigned char *u = (const unsigned char *)v;
    char *p;
    /* plain */
    if ((p = strndup(v, len)) != NULL) {
        f->name[f->n] = "plain";
        f->form[f->n++] = p;
    }
    /* JSON, short escapes */
    if ((p = malloc(len * 6 + 1)) != NULL) {
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = u[i];
            if (c == '"' || c == '\\') {
                p[o++] = '\\';
                p[o++] = (char)c;
            } else if (c == '\n') {
                p[o++] = '\\';
                p[o++] = 'n';
            } else if (c < 0x20) {
                o += (size_t)snprintf(p + o, 7, "\\u%04x", c);
            } else {
                p[o++] = (char)c;
            }
        }
        p[o] = '\0';
        if (strcmp(p, f->form[0]) != 0) {
            f->name[f->n] = "JSON-escaped";
            f->form[f->n++] = p;
        } else {
            free(p);
        }
    }
    /* JSON, \u escapes of every punctuation character */
    if ((p = malloc(len * 6 + 1)) != NULL) {
        size_t o = 0;
        int any = 0;
        for (size_t i = 0; i < len; i++) {
            if (isalnum(u[i]) || u[i] >= 0x80) {
                p[o++] = (char)u[i];
            } else {
                o += (size_t)snprintf(p + o, 7, "\\u%04x", u[i]);
                any = 1;
            }
        }
        p[o] = '\0';
        if (any) {
            f->name[f->n] = "JSON \\u-escaped";
            f->form[f->n++] = p;
        } else {
            free(p);
        }
    }
    /* URL-encoded */
    if ((p = malloc(len * 3 + 1)) != NULL) {
        size_t o = 0;
        int any = 0;
        for (size_t i = 0; i < len; i++) {
            if (unreserved(u[i])) {
                p[o++] = (char)u[i];
            } else {
                o += (size_t)snprintf(p + o, 4, "%%%02X", u[i]);
                any = 1;
            }
        }
        p[o] = '\0';
        if (any) {
            f->name[f->n] = "URL-encoded";
            f->form[f->n++] = p;
        } else {
            free(p);
        }
    }
    /* base64 at three alignments, standard and URL-safe */
    for (int urlsafe = 0; urlsafe < 2; urlsafe++)
        for (int a = 0; a < 3 && f->n < 11; a++) {
            char *b = b64_inner(u, len, a, urlsafe);
            if (b == NULL)
                continue;
            int dup = 0;
            for (size_t k = 0; k < f->n; k++)
                dup |= strcmp(f->form[k], b) == 0;
            if (dup) {
                free(b);
                continue;
            }
            f->name[f->n] = urlsafe ? "base64url" : "base64";
            f->form[f->n++] = b;
        }
    /* hex */
    if (f->n < 12 && len >= 4 && (p = malloc(len * 2 + 1)) != NULL) {
        for (size_t i = 0; i < len; i++) {
            static const char H[] = "0123456789abcdef";
            p[2 * i] = H[u[i] >> 4];
            p[2 * i + 1] = H[u[i] & 15];
        }
        p[2 * len] = '\0';
        f->name[f->n] = "hex";
        f->form[f->n++] = p;
    }
}

void cx_conf__forms_free(cx_conf_forms_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->form[i]);
    memset(f, 0, sizeof *f);
}

static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return NULL;
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return p;
    return NULL;
}

const char *cx_conf__find_forms(const cx_conf_forms_t *f, const char *hay)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->form[i][0] == '\0')
            continue;
        /* Escapes and hex digits may come in either case; base64 and plain text may not. */
        int ci = strcmp(f->name[i], "URL-encoded") == 0 || strcmp(f->name[i], "hex") == 0 ||
                 strcmp(f->name[i], "JSON \\u-escaped") == 0;
        if (ci ? find_ci(hay, f->form[i]) != NULL : strstr(hay, f->form[i]) != NULL)
            return f->name[i];
    }
    return NULL;
}

/* ---- Personal data in fixtures ------------------------------------------------------------ */

static void pii_add(cx_conf_pii_t *p, const char *v, size_t len, const char *kind)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->v[i]) == len && memcmp(p->v[i], v, len) == 0)
            return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        char **nv = realloc(p->v, cap * sizeof *nv);
        if (nv == NULL)
            return;
        p->v = nv;
        const char **nk = realloc(p->kind, cap * sizeof *nk);
        if (nk == NULL)
            return;
        p->kind = nk;
        p->cap = cap;
    }
    char *s = strndup(v, len);
    if (s == NULL)
        return;
    p->v[p->n] = s;
    p->kind[p->n++] = kind;
}

static int email_local(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static int email_domain(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '-';
}

void cx_conf__pii_from_body(cx_conf_pii_t *p, const char *body, size_t len)
{
    const unsigned char *b = (const unsigned char *)body;
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '@') {
            size_t s = i, e = i + 1;
            while (s > 0 && email_local(b[s - 1]))
                s--;
            while (e < len && email_domain(b[e]))
                e++;
            while (e > i + 1 && b[e - 1] == '.')
                e--;
            const char *dot = memchr(body + i + 1, '.', e - i - 1);
            /* "<local@host>" is an RFC 5322 Message-ID, an identifier, not an address. */
            int msg_id = s > 0 && b[s - 1] == '<' && e < len && b[e] == '>';
            if (s < i && dot && dot > body + i + 1 && dot < body + e - 1 && !msg_id)
                pii_add(p, body + s, e - s, "e-mail address");
        } else if (b[i] == '+' && (i == 0 || !isalnum(b[i - 1]))) {
            size_t e = i + 1;
            while (e < len && isdigit(b[e]))
                e++;
            size_t digits = e - i - 1;
            if (digits >= 8 && digits <= 15 && (e == len || !isalnum(b[e]))) {
                pii_add(p, body + i, e - i, "phone number");
                pii_add(p, body + i + 1, digits, "phone number"); /* without the '+' */
            }
        }
    }
}

void cx_conf__pii_free(cx_conf_pii_t *p);

static int looks_like_phone(const char *v)
{
    size_t digits = 0;
    for (const char *q = v; *q; q++) {
        if (isdigit((unsigned char)*q))
            digits++;
        else if (!strchr("+-() .", *q))
            return 0;
    }
    return digits >= 7;
}

static void walk_msg(cx_conf_pii_t *p, cx_conf_pii_t *plain, const cx_msg_meta_t *meta,
                     const ProtobufCMessage *msg, int depth)
{
    if (meta == NULL || msg == NULL || depth > 16)
        return;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const cx_field_meta_t *fm = &meta->fields[i];
        const char *base = (const char *)msg;
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
                continue;
        }
        size_t count = 1;
        const void *field = base + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(const size_t *)(base + fd->quantifier_offset);
            field = *(void *const *)field;
            if (field == NULL)
                continue;
        }
        for (size_t k = 0; k < count; k++) {
            if (fd->type == PROTOBUF_C_TYPE_STRING) {
                const char *v = fd->label == PROTOBUF_C_LABEL_REPEATED
                                    ? ((const char *const *)field)[k]
                                    : *(const char *const *)field;
                if (v == NULL || v[0] == '\0')
                    continue;
                size_t vl = strlen(v);
                if (fm->pii == CX_PII_NONE)
                    pii_add(plain, v, vl, "none");
                else if (fm->pii == CX_PII_PHONE && looks_like_phone(v))
                    pii_add(p, v, vl, "phone number");
                else if (fm->pii == CX_PII_EMAIL && strchr(v, '@') && vl >= 6)
                    pii_add(p, v, vl, "e-mail address");
                else if (fm->pii == CX_PII_NAME && vl >= 6)
                    pii_add(p, v, vl, "name");
            } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE && fm->msg) {
                const ProtobufCMessage *sub = fd->label == PROTOBUF_C_LABEL_REPEATED
                                                  ? ((const ProtobufCMessage *const *)field)[k]
                                                  : *(const ProtobufCMessage *const *)field;
                walk_msg(p, plain, fm->msg, sub, depth + 1);
            }
        }
    }
}

/* Values of PII-classed fields, less those the same events also carry in fields classed
 * none (an account id that is also an actor id - a Page echoing its own message - is a
 * routing key, not personal data). */
void cx_conf__pii_from_events(cx_conf_pii_t *p, const cx_conf_parsed_t *parsed)
{
    cx_conf_pii_t found = {0}, plain = {0};
    for (size_t i = 0; i < parsed->n; i++) {
        if (parsed->ev[i].msg && parsed->ev[i].meta && !parsed->ev[i].error)
            walk_msg(&found, &plain, parsed->ev[i].meta, parsed->ev[i].msg, 0);
        if (parsed->ev[i].account_id)
            pii_add(&plain, parsed->ev[i].account_id, strlen(parsed->ev[i].account_id), "none");
    }
    for (size_t k = 0; k < found.n; k++) {
        int routing = 0;
        for (size_t j = 0; j < plain.n && !routing; j++)
            routing = strcmp(found.v[k], plain.v[j]) == 0;
        if (!routing)
            pii_add(p, found.v[k], strlen(found.v[k]), found.kind[k]);
    }
    cx_conf__pii_free(&found);
    cx_conf__pii_free(&plain);
}

void cx_conf__pii_free(cx_conf_pii_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
    free(p->kind);
    memset(p, 0, sizeof *p);
}
