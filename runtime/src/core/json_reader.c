/* The arena JSON reader for connectors (cx/json_reader.h).
 *
 * Recursive descent, depth-limited. Children of the containers being read are collected on one
 * scratch stack (a small buffer on the C stack, grown on the heap for large arrays) and copied
 * into the arena, exactly sized, when their container closes; strings are measured and
 * validated in a first scan, then copied (or unescaped) once into the arena.
 */
#include "cx/json_reader.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_INLINE 128
#define MAX_NUMBER_TEXT 512

typedef struct parser_s {
    const unsigned char *p, *end;
    cx_arena_t *a;
    int depth;
    int code;        /* first error */
    const char *why; /* static text */
    cx_mj_member_t *stack;
    size_t top, cap;
    cx_mj_member_t inline_stack[SCRATCH_INLINE];
} parser_t;

static int fail(parser_t *ps, int code, const char *why)
{
    if (ps->code == 0) {
        ps->code = code;
        ps->why = why;
    }
    return -1;
}

static void skip_ws(parser_t *ps)
{
    const unsigned char *p = ps->p;
    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static int push(parser_t *ps, cx_mj_member_t **slot)
{
    if (ps->top == ps->cap) {
        size_t ncap = ps->cap * 2;
        cx_mj_member_t *n;
        if (ps->stack == ps->inline_stack) {
            n = malloc(ncap * sizeof *n);
            if (n)
                memcpy(n, ps->stack, ps->top * sizeof *n);
        } else {
            n = realloc(ps->stack, ncap * sizeof *n);
        }
        if (n == NULL)
            return fail(ps, CX_ENOSPC, "out of memory");
        ps->stack = n;
        ps->cap = ncap;
    }
    *slot = &ps->stack[ps->top++];
    return 0;
}

static int hexval(unsigned c)
{
    if (c - '0' < 10)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6)
        return (int)(c - 'a' + 10);
    return -1;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Length of a valid UTF-8 sequence starting at p (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* ps->p is just past the opening quote. */
static int parse_string(parser_t *ps, const char **out, uint32_t *out_len)
{
    const unsigned char *start = ps->p, *p = start, *end = ps->end;
    int escapes = 0;
    /* First scan: find the closing quote, validate UTF-8 and escapes. */
    for (;;) {
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
            p++;
        if (p == end)
            return fail(ps, CX_EJSON, "unterminated string");
        unsigned c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(ps, CX_EJSON, "control character in a string");
        if (c == '\\') {
            escapes = 1;
            if (end - p < 2)
                return fail(ps, CX_EJSON, "unterminated string");
            unsigned e = p[1];
            if (e == 'u') {
                unsigned v;
                if (end - p < 6 || hex4(p + 2, &v) != 0)
                    return fail(ps, CX_EJSON, "bad \\u escape");
                if (v == 0)
                    return fail(ps, CX_EJSON, "\\u0000 in a string");
                if (v >= 0xD800 && v <= 0xDBFF) {
                    unsigned lo;
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) != 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return fail(ps, CX_EJSON, "lone surrogate in a \\u escape");
                    p += 12;
                } else if (v >= 0xDC00 && v <= 0xDFFF) {
                    return fail(ps, CX_EJSON, "lone surrogate in a \\u escape");
                } else {
                    p += 6;
                }
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return fail(ps, CX_EJSON, "bad escape");
            }
            continue;
        }
        size_t n = utf8_seq(p, end);
        if (n == 0)
            return fail(ps, CX_EJSON, "invalid UTF-8 in a string");
        p += n;
    }
    size_t raw = (size_t)(p - start);
    if (raw >= UINT32_MAX)
        return fail(ps, CX_ELIMIT, "string too long");
    char *dst = cx_arena_alloc(ps->a, raw + 1);
    if (dst == NULL)
        return fail(ps, CX_ENOSPC, "request arena exhausted");
    size_t len;
    if (!escapes) {
        memcpy(dst, start, raw);
        len = raw;
    } else {
        char *o = dst;
        for (const unsigned char *q = start; q < p;) {
            if (*q != '\\') {
                *o++ = (char)*q++;
                continue;
            }
            unsigned e = q[1];
            switch (e) {
            case 'b':
                *o++ = '\b';
                q += 2;
                break;
            case 'f':
                *o++ = '\f';
                q += 2;
                break;
            case 'n':
                *o++ = '\n';
                q += 2;
                break;
            case 'r':
                *o++ = '\r';
                q += 2;
                break;
            case 't':
                *o++ = '\t';
                q += 2;
                break;
            case 'u': {
                unsigned v = 0, lo = 0;
                hex4(q + 2, &v);
                if (v >= 0xD800 && v <= 0xDBFF) {
                    hex4(q + 8, &lo);
                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                    q += 12;
                } else {
                    q += 6;
                }
                o = put_utf8(o, v);
                break;
            }
            default:
                *o++ = (char)e;
                q += 2;
                break;
            }
        }
        *o = '\0';
        len = (size_t)(o - dst);
    }
    ps->p = p + 1;
    *out = dst;
    *out_len = (uint32_t)len;
    return 0;
}

static int parse_number(parser_t *ps, cx_mj_t *v)
{
    const unsigned char *s = ps->p, *p = s, *end = ps->end;
    if (p < end && *p == '-')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return fail(ps, CX_EJSON, "bad number");
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    int integer = 1;
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p == end || *p < '0' || *p > '9')
            return fail(ps, CX_EJSON, "bad number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return fail(ps, CX_EJSON, "bad number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t)(p - s);
    v->type = CX_MJ_NUMBER;
    const unsigned char *d = s + (*s == '-');
    size_t digits = (size_t)(p - d);
    if (integer && digits <= 18) {
        int64_t i = 0;
        for (const unsigned char *q = d; q < p; q++)
            i = i * 10 + (*q - '0');
        if (*s == '-')
            i = -i;
        v->is_int = 1;
        v->u.num.i = i;
        v->u.num.d = (double)i;
    } else {
        char buf[MAX_NUMBER_TEXT + 1];
        if (n > MAX_NUMBER_TEXT)
            return fail(ps, CX_ELIMIT, "number too long");
        memcpy(buf, s, n);
        buf[n] = '\0';
        v->u.num.d = strtod(buf, NULL);
        if (integer) {
            /* 19 digits and more: exact only when it fits int64 */
            char *e;
            long long ll = strtoll(buf, &e, 10);
            if (*e == '\0' && ll != LLONG_MAX && ll != LLONG_MIN) {
                v->is_int = 1;
                v->u.num.i = (int64_t)ll;
            }
        }
    }
    ps->p = p;
    return 0;
}

static int parse_value(parser_t *ps, cx_mj_t *v);

static int parse_container(parser_t *ps, cx_mj_t *v, int object)
{
    if (++ps->depth > CX_MJ_MAX_DEPTH)
        return fail(ps, CX_ELIMIT, "nesting too deep");
    ps->p++; /* '[' or '{' */
    size_t base = ps->top;
    skip_ws(ps);
    unsigned close = object ? '}' : ']';
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            cx_mj_member_t *m;
            if (push(ps, &m) != 0)
                return -1;
            m->key = NULL;
            if (object) {
                skip_ws(ps);
                uint32_t klen;
                if (ps->p == ps->end || *ps->p != '"')
                    return fail(ps, CX_EJSON, "expected a member name");
                ps->p++;
                const char *key;
                if (parse_string(ps, &key, &klen) != 0)
                    return -1;
                /* the stack may have moved while parsing: index, not pointer */
                ps->stack[ps->top - 1].key = key;
                skip_ws(ps);
                if (ps->p == ps->end || *ps->p != ':')
                    return fail(ps, CX_EJSON, "expected ':'");
                ps->p++;
            }
            size_t idx = ps->top - 1;
            cx_mj_t tmp;
            if (parse_value(ps, &tmp) != 0)
                return -1;
            ps->stack[idx].value = tmp;
            skip_ws(ps);
            if (ps->p == ps->end)
                return fail(ps, CX_EJSON, "unterminated container");
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == close) {
                ps->p++;
                break;
            }
            return fail(ps, CX_EJSON, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    size_t n = ps->top - base;
    if (n >= UINT32_MAX)
        return fail(ps, CX_ELIMIT, "container too large");
    v->type = object ? CX_MJ_OBJECT : CX_MJ_ARRAY;
    v->n = (uint32_t)n;
    if (n) {
        if (object) {
            cx_mj_member_t *mem = cx_arena_alloc(ps->a, n * sizeof *mem);
            if (mem == NULL)
                return fail(ps, CX_ENOSPC, "request arena exhausted");
            memcpy(mem, ps->stack + base, n * sizeof *mem);
            v->u.members = mem;
        } else {
            cx_mj_t *items = cx_arena_alloc(ps->a, n * sizeof *items);
            if (items == NULL)
                return fail(ps, CX_ENOSPC, "request arena exhausted");
            for (size_t i = 0; i < n; i++)
                items[i] = ps->stack[base + i].value;
            v->u.items = items;
        }
    }
    ps->top = base;
    ps->depth--;
    return 0;
}

static int literal(parser_t *ps, const char *word, size_t n, cx_mj_type_t t, cx_mj_t *v)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, CX_EJSON, "unexpected character");
    ps->p += n;
    v->type = (uint8_t)t;
    return 0;
}

static int parse_value(parser_t *ps, cx_mj_t *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(ps);
    if (ps->p == ps->end)
        return fail(ps, CX_EJSON, "unexpected end of input");
    switch (*ps->p) {
    case '{':
        return parse_container(ps, v, 1);
    case '[':
        return parse_container(ps, v, 0);
    case '"': {
        ps->p++;
        v->type = CX_MJ_STRING;
        return parse_string(ps, &v->u.s, &v->n);
    }
    case 't':
        return literal(ps, "true", 4, CX_MJ_TRUE, v);
    case 'f':
        return literal(ps, "false", 5, CX_MJ_FALSE, v);
    case 'n':
        return literal(ps, "null", 4, CX_MJ_NULL, v);
    default:
        return parse_number(ps, v);
    }
}

int cx_mj_parse(cx_arena_t *a, const char *text, size_t len, const cx_mj_t **out, cx_error_t *err)
{
    *out = NULL;
    parser_t ps;
    ps.p = (const unsigned char *)(text ? text : "");
    ps.end = ps.p + (text ? len : 0);
    ps.a = a;
    ps.depth = 0;
    ps.code = 0;
    ps.why = NULL;
    ps.stack = ps.inline_stack;
    ps.top = 0;
    ps.cap = SCRATCH_INLINE;
    cx_mj_t *root = cx_arena_alloc(a, sizeof *root);
    int rc;
    if (root == NULL) {
        rc = fail(&ps, CX_ENOSPC, "request arena exhausted");
    } else {
        rc = parse_value(&ps, root);
        if (rc == 0) {
            skip_ws(&ps);
            if (ps.p != ps.end)
                rc = fail(&ps, CX_EJSON, "trailing bytes after the JSON value");
        }
    }
    if (ps.stack != ps.inline_stack)
        free(ps.stack);
    if (rc != 0)
        return cx_error_set(err, ps.code, NULL, "%s", ps.why);
    *out = root;
    return 0;
}

const cx_mj_t *cx_mj_get(const cx_mj_t *v, const char *key)
{
    if (v == NULL || v->type != CX_MJ_OBJECT)
        return NULL;
    for (uint32_t i = 0; i < v->n; i++)
        if (strcmp(v->u.members[i].key, key) == 0)
            return &v->u.members[i].value;
    return NULL;
}

const cx_mj_t *cx_mj_at(const cx_mj_t *v, size_t i)
{
    if (v == NULL || v->type != CX_MJ_ARRAY || i >= v->n)
        return NULL;
    return &v->u.items[i];
}

const char *cx_mj_text(cx_arena_t *a, const cx_mj_t *v, int *nomem)
{
    if (v == NULL)
        return NULL;
    if (v->type == CX_MJ_STRING)
        return v->u.s;
    if (v->type != CX_MJ_NUMBER || !v->is_int)
        return NULL;
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%" PRId64, v->u.num.i);
    char *s = cx_arena_strndup(a, buf, (size_t)n);
    if (s == NULL && nomem)
        *nomem = 1;
    return s;
}

int cx_mj_number(const cx_mj_t *v, double *out)
{
    if (v == NULL)
        return -1;
    if (v->type == CX_MJ_NUMBER) {
        *out = v->u.num.d;
    } else if (v->type == CX_MJ_STRING && v->n > 0 && v->n <= 64) {
        char *e;
        *out = strtod(v->u.s, &e);
        if (*e != '\0')
            return -1;
    } else {
        return -1;
    }
    /* finite: NaN compares unequal to itself; infinities exceed DBL_MAX */
    return *out == *out && *out <= 1.7976931348623157e308 && *out >= -1.7976931348623157e308 ? 0
                                                                                             : -1;
}
