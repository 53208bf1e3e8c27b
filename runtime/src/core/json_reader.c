/* The arena JSON reader for connectors (cx/json_reader.h).
 *
 * Recursive descent, depth-limited, over a copy of the input made once into the arena. Strings
 * are produced in place in that copy: a string without escapes is a pointer to its first byte,
 * its closing quote overwritten by the NUL; a string with escapes is unescaped in place, the
 * output never longer than the escapes it replaces (\uXXXX gives at most 3 bytes, a surrogate
 * pair of 12 bytes 4), so the writer never overtakes the reader. Keys and values then cost no
 * allocation and no second copy; in memory the copy costs about what one allocation per string
 * would (each rounded up to the arena's 16 bytes).
 *
 * The copy ends with COPY_TAIL NUL bytes. The first is a sentinel: no token can continue
 * through a NUL, so the scanners stop on it without an end check in their loops, and compare
 * with the end only once they have stopped: a NUL inside the input is still a control
 * character in a string and an unexpected character elsewhere. The others let the string
 * scanner read 8 bytes at any position up to the sentinel.
 *
 * Children of the containers being read are collected on one scratch stack (a small buffer on
 * the C stack, grown on the heap for large arrays) and copied into the arena, exactly sized,
 * when their container closes.
 */
#include "cx/json_reader.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "core/words.h"

#define SCRATCH_INLINE 128
#define MAX_NUMBER_TEXT 512
#define COPY_TAIL 8

typedef struct parser_s {
    unsigned char *p, *end; /* in the arena copy; *end is the sentinel NUL */
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
    unsigned char *p = ps->p;
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
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

/* The first byte at or after p that a string cannot hold as it is: '"', '\\', a control
 * character (the sentinel included) or a byte >= 0x80 (UTF-8, validated a sequence at a time).
 * Eight bytes at a time: a byte is flagged in m when it is below 0x20 (w - 0x20 wraps), equal
 * to '"' or '\\' (its XOR with them is 0, which wraps when 1 is subtracted) or has its high
 * bit set. A byte below 0x80 sets no high bit in these differences unless it wraps, and only a
 * wrapping byte borrows from the next, so the lowest flagged byte is exactly the first special
 * one (bytes above it may be flagged by its borrow, and are never looked at). */
static unsigned char *skip_plain(unsigned char *p)
{
    for (;;) {
        uint64_t w = cx__word(p);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w); /* the first byte in the low bits, borrows towards later ones */
#endif
        uint64_t q = w ^ (CX__ONES * '"'), b = w ^ (CX__ONES * '\\');
        uint64_t m = ((w - CX__ONES * 0x20) | (q - CX__ONES) | (b - CX__ONES) | w) & CX__HIGHS;
        if (m != 0)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
}

/* The rest of a string whose first run of plain bytes ended at p on something other than its
 * closing quote: validates and unescapes in one pass, in place. o is where the unescaped text
 * goes once the first escape has been met (NULL before: until then the string stays where it
 * was read). */
static int parse_string_rest(parser_t *ps, unsigned char *start, unsigned char *p, const char **out,
                             uint32_t *out_len)
{
    unsigned char *end = ps->end, *o = NULL, *run = start;
    for (;;) {
        while (*p >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (n == 0)
                return fail(ps, CX_EJSON, "invalid UTF-8 in a string");
            p = skip_plain(p + n);
        }
        if (o != NULL) {
            memmove(o, run, (size_t)(p - run));
            o += p - run;
        }
        unsigned c = *p;
        if (c == '"')
            break;
        if (c != '\\') {
            if (p == end)
                return fail(ps, CX_EJSON, "unterminated string");
            return fail(ps, CX_EJSON, "control character in a string");
        }
        if (o == NULL)
            o = p;
        if (end - p < 2)
            return fail(ps, CX_EJSON, "unterminated string");
        int byte = cx__json_escape_byte(p[1]);
        if (byte >= 0) {
            *o++ = (unsigned char)byte;
        } else if (p[1] == 'u') {
            unsigned v, lo;
            if (end - p < 6 || cx__json_hex4(p + 2, &v) != 0)
                return fail(ps, CX_EJSON, "bad \\u escape");
            if (v == 0)
                return fail(ps, CX_EJSON, "\\u0000 in a string");
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || cx__json_hex4(p + 8, &lo) != 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return fail(ps, CX_EJSON, "lone surrogate in a \\u escape");
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (v >= 0xDC00 && v <= 0xDFFF) {
                return fail(ps, CX_EJSON, "lone surrogate in a \\u escape");
            }
            o = cx__json_put_utf8(o, v);
            p += 4; /* and the 2 below */
        } else {
            return fail(ps, CX_EJSON, "bad escape");
        }
        p += 2;
        run = p;
        p = skip_plain(p);
    }
    if ((size_t)(p - start) >= UINT32_MAX)
        return fail(ps, CX_ELIMIT, "string too long");
    if (o == NULL)
        o = p;
    *o = '\0';
    ps->p = p + 1;
    *out = (const char *)start;
    *out_len = (uint32_t)(o - start);
    return 0;
}

/* ps->p is just past the opening quote. Most strings are one run of plain bytes: the closing
 * quote becomes the NUL and the string is where it was read. */
static int parse_string(parser_t *ps, const char **out, uint32_t *out_len)
{
    unsigned char *start = ps->p, *p = skip_plain(start);
    if (*p != '"' || (size_t)(p - start) >= UINT32_MAX)
        return parse_string_rest(ps, start, p, out, out_len);
    *p = '\0';
    ps->p = p + 1;
    *out = (const char *)start;
    *out_len = (uint32_t)(p - start);
    return 0;
}

static int is_digit(unsigned c)
{
    return c - '0' < 10;
}

static int parse_number(parser_t *ps, cx_mj_t *v)
{
    const unsigned char *s = ps->p, *p = s;
    if (*p == '-')
        p++;
    if (!is_digit(*p))
        return fail(ps, CX_EJSON, "bad number");
    if (*p == '0') {
        p++;
    } else {
        while (is_digit(*p))
            p++;
    }
    int integer = 1;
    if (*p == '.') {
        integer = 0;
        p++;
        if (!is_digit(*p))
            return fail(ps, CX_EJSON, "bad number");
        while (is_digit(*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        integer = 0;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!is_digit(*p))
            return fail(ps, CX_EJSON, "bad number");
        while (is_digit(*p))
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
    ps->p = (unsigned char *)p;
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
    if (*ps->p == close) {
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
                if (*ps->p != '"')
                    return fail(ps, CX_EJSON, "expected a member name");
                ps->p++;
                const char *key;
                if (parse_string(ps, &key, &klen) != 0)
                    return -1;
                /* the stack may have moved while parsing: index, not pointer */
                ps->stack[ps->top - 1].key = key;
                skip_ws(ps);
                if (*ps->p != ':')
                    return fail(ps, CX_EJSON, "expected ':'");
                ps->p++;
            }
            size_t idx = ps->top - 1;
            cx_mj_t tmp;
            if (parse_value(ps, &tmp) != 0)
                return -1;
            ps->stack[idx].value = tmp;
            skip_ws(ps);
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == close) {
                ps->p++;
                break;
            }
            if (ps->p == ps->end)
                return fail(ps, CX_EJSON, "unterminated container");
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
            cx_mj_member_t *mem = cx_arena_alloc_uninit(ps->a, n * sizeof *mem);
            if (mem == NULL)
                return fail(ps, CX_ENOSPC, "request arena exhausted");
            memcpy(mem, ps->stack + base, n * sizeof *mem);
            v->u.members = mem;
        } else {
            cx_mj_t *items = cx_arena_alloc_uninit(ps->a, n * sizeof *items);
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

/* The sentinel and the tail make the comparison safe up to the end: a word never matches
 * across the NUL. */
static int literal(parser_t *ps, const char *word, size_t n, cx_mj_type_t t, cx_mj_t *v)
{
    if (memcmp(ps->p, word, n) != 0)
        return fail(ps, CX_EJSON, "unexpected character");
    ps->p += n;
    v->type = (uint8_t)t;
    return 0;
}

static int parse_value(parser_t *ps, cx_mj_t *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(ps);
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
        if (ps->p == ps->end)
            return fail(ps, CX_EJSON, "unexpected end of input");
        return parse_number(ps, v);
    }
}

int cx_mj_parse(cx_arena_t *a, const char *text, size_t len, const cx_mj_t **out, cx_error_t *err)
{
    *out = NULL;
    parser_t ps;
    ps.p = ps.end = NULL;
    ps.a = a;
    ps.depth = 0;
    ps.code = 0;
    ps.why = NULL;
    ps.stack = ps.inline_stack;
    ps.top = 0;
    ps.cap = SCRATCH_INLINE;
    if (text == NULL)
        len = 0;
    unsigned char *copy =
        len <= SIZE_MAX - COPY_TAIL ? cx_arena_alloc_uninit(a, len + COPY_TAIL) : NULL;
    cx_mj_t *root = copy ? cx_arena_alloc(a, sizeof *root) : NULL;
    int rc;
    if (root == NULL) {
        rc = fail(&ps, CX_ENOSPC, "request arena exhausted");
    } else {
        if (len)
            memcpy(copy, text, len);
        memset(copy + len, 0, COPY_TAIL);
        ps.p = copy;
        ps.end = copy + len;
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
    /* The first byte rules out most members without a call (adapters look up a handful of
     * short names per object). */
    for (uint32_t i = 0; i < v->n; i++)
        if (v->u.members[i].key[0] == key[0] && strcmp(v->u.members[i].key, key) == 0)
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
