/* The proto3 JSON reader: cx_from_json.
 *
 * A small streaming recursive-descent parser of our own that decodes straight into protobuf-c
 * structs allocated in the caller's arena. We do not parse with jansson (or any DOM library)
 * and then convert, because:
 *   - jansson keeps integers in json_int_t (long long): uint64 values above INT64_MAX are lost
 *     or rejected, and proto3 JSON needs the full uint64 range as numbers and as strings;
 *   - jansson's depth limit is a compile-time constant (JSON_PARSER_MAX_DEPTH) while ours is a
 *     per-call option, and its errors carry no field path;
 *   - a DOM costs a malloc per value and a second pass; decoding in one pass into the arena is
 *     what keeps decode within a small factor of a bare parse, with no per-field malloc.
 *
 * Mapping (Google's json_format, as the parser side): json names and original proto names;
 * 64-bit integers as strings or numbers, 32-bit ones as numbers or strings, exponent forms
 * accepted when the value is integral; floats as numbers or "NaN"/"Infinity"/"-Infinity" or
 * numeric strings; enums by name or number; bytes as base64, standard or URL-safe, padding
 * optional; Timestamps as RFC 3339 with any offset and 0-9 fraction digits; `null` as absent.
 *
 * Error codes, each with err->path (`attendees[2].email`, names as they appeared):
 *   CX_EJSON           syntax; a duplicate field; two members of one oneof
 *   CX_ETYPE           a JSON value of the wrong kind for the field, or a string the field's
 *                      type cannot read (base64, RFC 3339, a number in a string)
 *   CX_ERANGE          integers outside their type or with a fraction, doubles beyond the type,
 *                      unknown enum names or numbers outside int32, Timestamps outside 0001-9999
 *   CX_EUNKNOWN_FIELD  unless opts->lenient, which skips the value (still checking its syntax)
 *   CX_EUTF8           invalid UTF-8, lone surrogates in \u escapes, U+0000 in a string field
 *                      (protobuf-c strings are NUL-terminated: it would silently truncate)
 *   CX_ELIMIT          input over max_bytes, nesting over max_depth
 *   CX_ENOSPC/ENOMEM   the arena's limit / its allocator
 *
 * The reader recurses once per nesting level, so max_depth is capped at READ_DEPTH_CAP.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "schema/access.h"

#define READ_DEFAULT_DEPTH 64u
#define READ_DEPTH_CAP 512u
#define READ_DEFAULT_MAX_BYTES ((size_t)16 * 1024 * 1024)
#define PATH_CAP 32     /* path segments remembered for err->path */
#define KEY_CAP 256     /* unescaped keys and enum names longer than this match nothing */
#define NUMBER_CAP 1024 /* longest floating-point literal converted */
#define TS_MIN_SECONDS INT64_C(-62135596800)
#define TS_MAX_SECONDS INT64_C(253402300799)

/* parse_value's result when a lenient read dropped the value (an unknown enum name). */
#define SKIPPED 1

typedef struct {
    const char *name; /* a field name, or NULL for an array index */
    size_t len;
    size_t index;
} path_seg_t;

typedef struct {
    const char *p;
    const char *end;
    cx_arena_t *arena;
    cx_error_t *err;
    int lenient;
    int alloc_rc; /* CX_ENOSPC or CX_ENOMEM: why the last arena allocation failed */
    uint32_t depth;
    uint32_t max_depth;
    uint32_t npath; /* may exceed PATH_CAP: deeper segments are not remembered */
    path_seg_t path[PATH_CAP];
    char key[KEY_CAP + 1];
} reader_t;

/* A JSON number token split into its parts. */
typedef struct {
    const char *s; /* the whole token */
    size_t len;
    int neg;
    const char *ip; /* integer digits */
    size_t il;
    const char *fp; /* fraction digits */
    size_t fl;
    int32_t exp; /* clamped to +-READ_EXP_CAP */
} num_t;

#define READ_EXP_CAP 100000

/* ---- Errors and paths ------------------------------------------------------------------- */

static void push_name(reader_t *r, const char *name, size_t len)
{
    if (r->npath < PATH_CAP) {
        r->path[r->npath].name = name;
        r->path[r->npath].len = len;
    }
    r->npath++;
}

static void push_index(reader_t *r, size_t index)
{
    if (r->npath < PATH_CAP) {
        r->path[r->npath].name = NULL;
        r->path[r->npath].index = index;
    }
    r->npath++;
}

static void pop(reader_t *r)
{
    r->npath--;
}

/* `a.b[2].c`; names from the input are shown printable-ASCII only. */
static void render_path(const reader_t *r, char *out, size_t cap)
{
    size_t n = 0;
    uint32_t segs = r->npath < PATH_CAP ? r->npath : PATH_CAP;
    out[0] = '\0';
    for (uint32_t i = 0; i < segs && n + 1 < cap; i++) {
        const path_seg_t *s = &r->path[i];
        if (s->name == NULL) {
            int k = snprintf(out + n, cap - n, "[%zu]", s->index);
            if (k < 0 || (size_t)k >= cap - n)
                break;
            n += (size_t)k;
            continue;
        }
        if (i > 0)
            out[n++] = '.';
        for (size_t j = 0; j < s->len && n + 1 < cap; j++) {
            unsigned char c = (unsigned char)s->name[j];
            out[n++] = (char)(c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? c : '?');
        }
        out[n] = '\0';
    }
    if (r->npath > PATH_CAP && n + 4 < cap)
        memcpy(out + n, "...", 4);
}

/* Records the first error with the current path; returns code. */
static int fail(reader_t *r, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(reader_t *r, int code, const char *fmt, ...)
{
    if (r->err == NULL || r->err->code != 0)
        return code;
    char path[sizeof r->err->path];
    char msg[sizeof r->err->message];
    render_path(r, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cx_error_set(r->err, code, path, "%s", msg);
    return code;
}

static int fail_alloc(reader_t *r, size_t size)
{
    /* The arena fails either at its limit or when its allocator does. Its chunk header is
     * well under 64 bytes, so "not even size + 64 left" means the limit was the reason. */
    const cx_arena_t *a = r->arena;
    size_t left = a->limit > a->reserved ? a->limit - a->reserved : 0;
    if (size >= SIZE_MAX - 64 || left < size + 64)
        return fail(r, CX_ENOSPC, "arena limit of %zu bytes reached", a->limit);
    return fail(r, CX_ENOMEM, "arena allocator failed");
}

/* An arena allocation; on failure the error is recorded and r->alloc_rc says which. */
static void *alloc(reader_t *r, size_t size)
{
    void *p = cx_arena_alloc(r->arena, size);
    if (p == NULL)
        r->alloc_rc = fail_alloc(r, size);
    return p;
}

/* ---- Lexing ----------------------------------------------------------------------------- */

static inline void skip_ws(reader_t *r)
{
    const char *p = r->p;
    while (p < r->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    r->p = p;
}

static inline int peek(const reader_t *r)
{
    return r->p < r->end ? (unsigned char)*r->p : -1;
}

/* Length of the valid UTF-8 sequence at p (non-ASCII lead byte), or 0. */
static size_t utf8_valid(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (p[2] & 0xC0) != 0x80)
            return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

/* 0: ordinary ASCII; 1: '"'; 2: '\\'; 3: control character; 4: non-ASCII. */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

/* A scanned string: the raw bytes between the quotes. */
typedef struct {
    const char *raw;
    size_t len;
    int escaped; /* contains backslash escapes: decode with unescape() */
    int has_nul; /* decodes to a U+0000 */
} jstr_t;

/* Scans a string at r->p (the opening quote), validating escapes and UTF-8; leaves r->p past
 * the closing quote. */
static int scan_string(reader_t *r, jstr_t *s)
{
    const char *p = r->p + 1;
    const char *end = r->end;
    s->raw = p;
    s->len = 0;
    s->escaped = 0;
    s->has_nul = 0;
    for (;;) {
        while (p < end && str_class[(unsigned char)*p] == 0)
            p++;
        if (p >= end) {
            r->p = p;
            return fail(r, CX_EJSON, "unterminated string");
        }
        switch (str_class[(unsigned char)*p]) {
        case 1:
            s->len = (size_t)(p - s->raw);
            r->p = p + 1;
            return 0;
        case 2: {
            s->escaped = 1;
            if (end - p < 2)
                return fail(r, CX_EJSON, "unterminated string");
            char e = p[1];
            if (cx__json_escape_byte((unsigned char)e) >= 0) {
                p += 2;
                break;
            }
            if (e != 'u')
                return fail(r, CX_EJSON, "invalid escape in string");
            unsigned cp;
            if (end - p < 6 || cx__json_hex4((const unsigned char *)p + 2, &cp) != 0)
                return fail(r, CX_EJSON, "invalid \\u escape in string");
            p += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(r, CX_EUTF8, "lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    cx__json_hex4((const unsigned char *)p + 2, &lo) != 0 || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return fail(r, CX_EUTF8, "lone high surrogate in \\u escape");
                p += 6;
            }
            if (cp == 0)
                s->has_nul = 1;
            break;
        }
        case 3:
            return fail(r, CX_EJSON, "unescaped control character in string");
        default: {
            size_t k = utf8_valid((const unsigned char *)p, (const unsigned char *)end);
            if (k == 0)
                return fail(r, CX_EUTF8, "invalid UTF-8 in string");
            p += k;
        }
        }
    }
}

/* Decodes a scanned string's escapes into dst (room for s->len bytes); returns the length.
 * scan_string has validated every escape, so this cannot fail. */
static size_t unescape(const jstr_t *s, char *dst)
{
    const char *p = s->raw, *end = s->raw + s->len;
    char *o = dst;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        if (e != 'u') {
            *o++ = (char)cx__json_escape_byte((unsigned char)e); /* validated by scan_string */
            continue;
        }
        unsigned cp = 0, lo = 0;
        cx__json_hex4((const unsigned char *)p, &cp);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cx__json_hex4((const unsigned char *)p + 2, &lo);
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        o = (char *)cx__json_put_utf8((unsigned char *)o, cp);
    }
    return (size_t)(o - dst);
}

/* A scanned string's text: in place when unescaped, else decoded into r->key. Returns 0 and
 * sets *text and *n, or -1 when it does not fit KEY_CAP (it then matches no name). */
static int small_text(reader_t *r, const jstr_t *s, const char **text, size_t *n)
{
    if (!s->escaped) {
        *text = s->raw;
        *n = s->len;
        return 0;
    }
    if (s->len > KEY_CAP)
        return -1;
    *n = unescape(s, r->key);
    r->key[*n] = '\0';
    *text = r->key;
    return 0;
}

/* Parses a JSON number in [s, end); *stop is where it ends. Returns 0, or -1 when s does not
 * start a valid number. */
static int parse_num(const char *s, const char *end, num_t *n, const char **stop)
{
    const char *p = s;
    n->s = s;
    n->neg = 0;
    n->fp = NULL;
    n->fl = 0;
    n->exp = 0;
    if (p < end && *p == '-') {
        n->neg = 1;
        p++;
    }
    n->ip = p;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    n->il = (size_t)(p - n->ip);
    if (p < end && *p == '.') {
        p++;
        n->fp = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        n->fl = (size_t)(p - n->fp);
        if (n->fl == 0)
            return -1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        int32_t e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < READ_EXP_CAP)
                e = e * 10 + (*p - '0');
            p++;
        }
        if (e > READ_EXP_CAP)
            e = READ_EXP_CAP;
        n->exp = eneg ? -e : e;
    }
    n->len = (size_t)(p - s);
    *stop = p;
    return 0;
}

static inline int num_digit(const num_t *n, size_t i)
{
    return (i < n->il ? n->ip[i] : n->fp[i - n->il]) - '0';
}

/* The magnitude of an integral number. CX_ERANGE for a fraction or a value over UINT64_MAX. */
static int num_to_u64(const num_t *n, uint64_t *out, const char **why)
{
    size_t total = n->il + n->fl;
    int64_t e = (int64_t)n->exp - (int64_t)n->fl;
    size_t kint = total;
    if (e < 0) {
        size_t drop = (uint64_t)(-e) > total ? total : (size_t)(-e);
        kint = total - drop;
        for (size_t i = kint; i < total; i++) {
            if (num_digit(n, i) != 0) {
                *why = "has a fraction";
                return CX_ERANGE;
            }
        }
        e = 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < kint; i++) {
        unsigned d = (unsigned)num_digit(n, i);
        if (v > (UINT64_MAX - d) / 10) {
            *why = "is too large";
            return CX_ERANGE;
        }
        v = v * 10 + d;
    }
    for (; e > 0 && v != 0; e--) {
        if (v > UINT64_MAX / 10) {
            *why = "is too large";
            return CX_ERANGE;
        }
        v *= 10;
    }
    *out = v;
    return 0;
}

/* strtod on a copy of the token (it needs a terminator and the locale's decimal point). */
static int num_to_double(reader_t *r, const num_t *n, double *out)
{
    char buf[NUMBER_CAP + 1];
    if (n->s == NULL || n->len == 0)
        return fail(r, CX_EJSON, "invalid number");
    if (n->len > NUMBER_CAP)
        return fail(r, CX_ELIMIT, "number longer than %d characters", NUMBER_CAP);
    memcpy(buf, n->s, n->len);
    buf[n->len] = '\0';
    char *stop;
    double d = strtod(buf, &stop);
    if (stop != buf + n->len && n->fp != NULL) {
        const char *dp = localeconv()->decimal_point;
        if (dp != NULL && dp[0] != '\0' && dp[1] == '\0') {
            buf[n->fp - 1 - n->s] = dp[0];
            d = strtod(buf, &stop);
        }
    }
    if (stop != buf + n->len)
        return fail(r, CX_ETYPE, "number not readable");
    if (isinf(d))
        return fail(r, CX_ERANGE, "number is out of the range of double");
    *out = d;
    return 0;
}

static int expect_literal(reader_t *r, const char *lit, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
        return fail(r, CX_EJSON, "invalid literal");
    r->p += n;
    return 0;
}

static int is_value_start(int c)
{
    return c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
           c == 'f' || c == 'n';
}

/* ---- Skipping (lenient unknown fields) -------------------------------------------------- */

static int enter(reader_t *r)
{
    if (++r->depth > r->max_depth)
        return fail(r, CX_ELIMIT, "nesting deeper than %u levels", r->max_depth);
    return 0;
}

static int skip_value(reader_t *r)
{
    skip_ws(r);
    int c = peek(r);
    int rc;
    jstr_t s;
    switch (c) {
    case '"':
        return scan_string(r, &s);
    case 't':
        return expect_literal(r, "true", 4);
    case 'f':
        return expect_literal(r, "false", 5);
    case 'n':
        return expect_literal(r, "null", 4);
    case '{':
    case '[': {
        if ((rc = enter(r)) != 0)
            return rc;
        r->p++;
        skip_ws(r);
        char close = c == '{' ? '}' : ']';
        if (peek(r) == close) {
            r->p++;
            r->depth--;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(r);
                if (peek(r) != '"')
                    return fail(r, CX_EJSON, "expected a field name");
                if ((rc = scan_string(r, &s)) != 0)
                    return rc;
                skip_ws(r);
                if (peek(r) != ':')
                    return fail(r, CX_EJSON, "expected ':'");
                r->p++;
            }
            if ((rc = skip_value(r)) != 0)
                return rc;
            skip_ws(r);
            int d = peek(r);
            if (d == ',') {
                r->p++;
                continue;
            }
            if (d == close) {
                r->p++;
                r->depth--;
                return 0;
            }
            return fail(r, CX_EJSON, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    default: {
        num_t n;
        const char *stop;
        if (c == '-' || (c >= '0' && c <= '9')) {
            if (parse_num(r->p, r->end, &n, &stop) != 0)
                return fail(r, CX_EJSON, "invalid number");
            r->p = stop;
            return 0;
        }
        if (c < 0)
            return fail(r, CX_EJSON, "unexpected end of input, expected a value");
        return fail(r, CX_EJSON, "invalid JSON value");
    }
    }
}

/* A well-formed value of the wrong kind is CX_ETYPE; a malformed one is reported as such
 * (CX_EJSON, CX_EUTF8, ...), so the code does not depend on which check ran first. */
static int fail_kind(reader_t *r, const char *expected)
{
    int c = peek(r);
    if (c < 0)
        return fail(r, CX_EJSON, "unexpected end of input, expected %s", expected);
    if (!is_value_start(c))
        return fail(r, CX_EJSON, "invalid JSON value");
    const char *save = r->p;
    uint32_t depth = r->depth;
    int rc = skip_value(r);
    if (rc != 0)
        return rc;
    r->p = save;
    r->depth = depth;
    return fail(r, CX_ETYPE, "expected %s", expected);
}

/* ---- Scalars ---------------------------------------------------------------------------- */

/* Reads a JSON number or a string holding one (the forms proto3 JSON allows for numbers). */
static int read_number(reader_t *r, num_t *n, int *quoted)
{
    int c = peek(r);
    memset(n, 0, sizeof *n);
    const char *stop;
    *quoted = 0;
    if (c == '"') {
        jstr_t s;
        int rc = scan_string(r, &s);
        if (rc != 0)
            return rc;
        const char *text;
        size_t len;
        if (small_text(r, &s, &text, &len) != 0 || parse_num(text, text + len, n, &stop) != 0 ||
            stop != text + len)
            return fail(r, CX_ETYPE, "string does not hold a number");
        *quoted = 1;
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (parse_num(r->p, r->end, n, &stop) != 0)
            return fail(r, CX_EJSON, "invalid number");
        r->p = stop;
        return 0;
    }
    return fail_kind(r, "a number");
}

static int read_integer(reader_t *r, const ProtobufCFieldDescriptor *fd, void *dst)
{
    num_t n;
    int quoted;
    int rc = read_number(r, &n, &quoted);
    if (rc != 0)
        return rc;
    uint64_t mag;
    const char *why = "";
    if (num_to_u64(&n, &mag, &why) != 0)
        return fail(r, CX_ERANGE, "integer %s", why);
    int neg = n.neg && mag != 0;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        if (mag > (neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX))
            return fail(r, CX_ERANGE, "integer out of int32 range");
        *(int32_t *)dst = neg ? (int32_t)(0 - (int64_t)mag) : (int32_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (neg || mag > UINT32_MAX)
            return fail(r, CX_ERANGE, "integer out of uint32 range");
        *(uint32_t *)dst = (uint32_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return fail(r, CX_ERANGE, "integer out of int64 range");
        /* -(INT64_MAX + 1) without signed overflow. */
        *(int64_t *)dst = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
        return 0;
    default: /* UINT64, FIXED64 */
        if (neg)
            return fail(r, CX_ERANGE, "integer out of uint64 range");
        *(uint64_t *)dst = mag;
        return 0;
    }
}

static int read_floating(reader_t *r, const ProtobufCFieldDescriptor *fd, void *dst)
{
    double d = 0;
    int c = peek(r);
    if (c == '"') {
        /* The three spellings json_format uses for non-finite values, else a number. */
        const char *save = r->p;
        jstr_t s;
        int rc = scan_string(r, &s);
        if (rc != 0)
            return rc;
        if (!s.escaped && s.len == 3 && memcmp(s.raw, "NaN", 3) == 0) {
            d = NAN;
            goto store;
        }
        if (!s.escaped && s.len == 8 && memcmp(s.raw, "Infinity", 8) == 0) {
            d = INFINITY;
            goto store;
        }
        if (!s.escaped && s.len == 9 && memcmp(s.raw, "-Infinity", 9) == 0) {
            d = -INFINITY;
            goto store;
        }
        r->p = save;
    }
    num_t n;
    int quoted;
    int rc = read_number(r, &n, &quoted);
    if (rc != 0)
        return rc;
    if ((rc = num_to_double(r, &n, &d)) != 0)
        return rc;
    /* Out of range is what narrows to infinity: FLT_MAX's shortest text, 3.4028235e+38, is a
     * little above FLT_MAX as a double yet must read back (python's json_format refuses it). */
    if (fd->type == PROTOBUF_C_TYPE_FLOAT && isinf((float)d))
        return fail(r, CX_ERANGE, "number is out of the range of float");
store:
    if (fd->type == PROTOBUF_C_TYPE_FLOAT)
        *(float *)dst = (float)d;
    else
        *(double *)dst = d;
    return 0;
}

static int read_bool(reader_t *r, void *dst)
{
    int c = peek(r);
    if (c == 't' && r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
        r->p += 4;
        *(protobuf_c_boolean *)dst = 1;
        return 0;
    }
    if (c == 'f' && r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
        r->p += 5;
        *(protobuf_c_boolean *)dst = 0;
        return 0;
    }
    return fail_kind(r, "true or false");
}

static int read_enum(reader_t *r, const ProtobufCFieldDescriptor *fd, void *dst)
{
    if (peek(r) != '"')
        return read_integer(r, fd, dst);
    const char *save = r->p;
    jstr_t s;
    int rc = scan_string(r, &s);
    if (rc != 0)
        return rc;
    const char *text;
    size_t n;
    if (small_text(r, &s, &text, &n) == 0 && !s.has_nul && n <= KEY_CAP) {
        if (text != r->key) {
            memcpy(r->key, text, n);
            r->key[n] = '\0';
            text = r->key;
        }
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value_by_name(fd->descriptor, r->key);
        if (ev != NULL) {
            *(int32_t *)dst = ev->value;
            return 0;
        }
        /* json_format also reads a number written as a string ("2"). */
        num_t num;
        const char *stop;
        if (parse_num(text, text + n, &num, &stop) == 0 && stop == text + n) {
            r->p = save;
            return read_integer(r, fd, dst);
        }
    }
    if (r->lenient)
        return SKIPPED;
    return fail(r, CX_ERANGE, "unknown value name for enum %s",
                ((const ProtobufCEnumDescriptor *)fd->descriptor)->name);
}

static int read_string(reader_t *r, void *dst, int keep_empty)
{
    if (peek(r) != '"')
        return fail_kind(r, "a string");
    jstr_t s;
    int rc = scan_string(r, &s);
    if (rc != 0)
        return rc;
    if (s.has_nul)
        return fail(r, CX_EUTF8, "U+0000 is not allowed in a string field");
    if (s.len == 0) {
        /* Singular fields keep protobuf-c's shared default; oneof members and list elements
         * need a pointer of their own to count as present. */
        if (keep_empty)
            *(const char **)dst = "";
        return 0;
    }
    char *out;
    if (!s.escaped) {
        out = cx_arena_strndup(r->arena, s.raw, s.len);
        if (out == NULL)
            return fail_alloc(r, s.len + 1);
    } else {
        out = alloc(r, s.len + 1);
        if (out == NULL)
            return r->alloc_rc;
        out[unescape(&s, out)] = '\0';
    }
    *(char **)dst = out;
    return 0;
}

/* Base64, standard or URL-safe alphabet, padding optional: -1 invalid, -2 padding. */
static const unsigned char b64_value[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['-'] = 63,
    ['/'] = 64, ['_'] = 64,
}; /* value + 1; 0 = not in the alphabet */

/* Decodes n base64 characters at s into out (room for n / 4 * 3 + 3); -1 when invalid. */
static long b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad && (n + pad) % 4 != 0) || n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value[(unsigned char)s[i]];
        if (v == 0)
            return -1;
        acc = acc << 6 | (uint32_t)(v - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

static int read_bytes(reader_t *r, void *dst)
{
    if (peek(r) != '"')
        return fail_kind(r, "a base64 string");
    jstr_t s;
    int rc = scan_string(r, &s);
    if (rc != 0)
        return rc;
    ProtobufCBinaryData *b = dst;
    if (s.len == 0)
        return 0;
    size_t cap = s.len / 4 * 3 + 3;
    uint8_t *out = alloc(r, cap > s.len ? cap : s.len);
    if (out == NULL)
        return r->alloc_rc;
    const char *text = s.raw;
    size_t n = s.len;
    if (s.escaped) {
        /* Rare: decode the escapes first, then the base64 in place (it only shrinks). */
        n = unescape(&s, (char *)out);
        text = (const char *)out;
    }
    long k = b64_decode(text, n, out);
    if (k < 0)
        return fail(r, CX_ETYPE, "invalid base64");
    b->data = k > 0 ? out : NULL;
    b->len = (size_t)k;
    return 0;
}

/* ---- Timestamps ------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM). 0, CX_ETYPE (syntax) or CX_ERANGE. */
static int parse_rfc3339(const char *s, size_t n, int64_t *secs, int32_t *nanos)
{
    unsigned y, mo, d, h, mi, sec;
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return CX_ETYPE;
    static const unsigned char mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59 || d < 1)
        return CX_ETYPE;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > (unsigned)mdays[mo - 1] + (mo == 2 && leap))
        return CX_ETYPE;
    size_t i = 19;
    uint32_t frac = 0;
    if (i < n && s[i] == '.') {
        size_t k = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, k++) {
            if (k >= 9)
                return CX_ETYPE;
            frac = frac * 10 + (uint32_t)(s[i] - '0');
        }
        if (k == 0)
            return CX_ETYPE;
        for (; k < 9; k++)
            frac *= 10;
    }
    int64_t offset = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        unsigned oh, om;
        if (n - i < 6 || digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return CX_ETYPE;
        offset = (int64_t)(oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return CX_ETYPE;
    }
    if (i != n)
        return CX_ETYPE;
    int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 +
                (int64_t)sec - offset;
    if (y < 1 || t < TS_MIN_SECONDS || t > TS_MAX_SECONDS)
        return CX_ERANGE;
    *secs = t;
    *nanos = (int32_t)frac;
    return 0;
}

static int read_timestamp(reader_t *r, void *dst)
{
    if (peek(r) != '"')
        return fail_kind(r, "an RFC 3339 timestamp string");
    jstr_t s;
    int rc = scan_string(r, &s);
    if (rc != 0)
        return rc;
    const char *text;
    size_t n;
    int64_t secs = 0;
    int32_t nanos = 0;
    rc = small_text(r, &s, &text, &n) != 0 ? CX_ETYPE : parse_rfc3339(text, n, &secs, &nanos);
    if (rc == CX_ETYPE)
        return fail(r, rc, "invalid RFC 3339 timestamp");
    if (rc != 0)
        return fail(r, rc, "timestamp outside 0001-01-01 to 9999-12-31");
    Google__Protobuf__Timestamp *ts = alloc(r, sizeof *ts);
    if (ts == NULL)
        return r->alloc_rc;
    google__protobuf__timestamp__init(ts);
    ts->seconds = secs;
    ts->nanos = nanos;
    *(Google__Protobuf__Timestamp **)dst = ts;
    return 0;
}

/* ---- Messages --------------------------------------------------------------------------- */

static int read_message(reader_t *r, const cx_msg_meta_t *meta, ProtobufCMessage *msg);

/* How a value is stored: as a singular field, a oneof member or a list element. */
enum { AS_FIELD, AS_ONEOF, AS_ELEMENT };

/* One value of fd's type into dst. 0, SKIPPED or an error. */
static int read_value(reader_t *r, const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm,
                      void *dst, int as)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return read_integer(r, fd, dst);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return read_floating(r, fd, dst);
    case PROTOBUF_C_TYPE_BOOL:
        return read_bool(r, dst);
    case PROTOBUF_C_TYPE_ENUM:
        return read_enum(r, fd, dst);
    case PROTOBUF_C_TYPE_STRING:
        return read_string(r, dst, as != AS_FIELD);
    case PROTOBUF_C_TYPE_BYTES:
        return read_bytes(r, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    if (fm->flags & CX_F_TIMESTAMP)
        return read_timestamp(r, dst);
    if (fm->msg == NULL)
        return fail(r, CX_EINVAL, "no schema tables for this message field");
    if (peek(r) != '{')
        return fail_kind(r, "an object");
    const ProtobufCMessageDescriptor *desc = fm->msg->desc;
    ProtobufCMessage *sub = alloc(r, desc->sizeof_message);
    if (sub == NULL)
        return r->alloc_rc;
    protobuf_c_message_init(desc, sub);
    *(ProtobufCMessage **)dst = sub;
    return read_message(r, fm->msg, sub);
}

static int read_list(reader_t *r, const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm,
                     ProtobufCMessage *msg)
{
    if (peek(r) != '[')
        return fail_kind(r, "an array");
    int rc = enter(r);
    if (rc != 0)
        return rc;
    r->p++;
    size_t size = cx__value_size(fd->type);
    size_t n = 0, cap = 0;
    char *items = NULL;
    skip_ws(r);
    if (peek(r) == ']') {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(r);
        if (n == cap) {
            /* Doubling in the arena: the old block is abandoned, so a list costs at most
             * about three times its final size. */
            size_t ncap = cap ? cap * 2 : 4;
            if (ncap > SIZE_MAX / size)
                return fail_alloc(r, SIZE_MAX);
            char *grown = alloc(r, ncap * size);
            if (grown == NULL)
                return r->alloc_rc;
            if (n)
                memcpy(grown, items, n * size);
            items = grown;
            cap = ncap;
        }
        push_index(r, n);
        if (peek(r) == 'n') {
            rc = fail(r, CX_ETYPE, "null is not allowed in a list");
        } else {
            rc = read_value(r, fd, fm, items + n * size, AS_ELEMENT);
        }
        pop(r);
        if (rc < 0)
            return rc;
        if (rc == 0)
            n++;
        skip_ws(r);
        int c = peek(r);
        if (c == ',') {
            r->p++;
            continue;
        }
        if (c == ']') {
            r->p++;
            break;
        }
        return fail(r, CX_EJSON,
                    c < 0 ? "unexpected end of input in a list" : "expected ',' or ']'");
    }
    r->depth--;
    *(void **)cx__field_ptr(msg, fd) = items;
    *(size_t *)((char *)msg + fd->quantifier_offset) = n;
    return 0;
}

static int read_field(reader_t *r, const cx_msg_meta_t *meta, ProtobufCMessage *msg, unsigned i)
{
    const ProtobufCFieldDescriptor *fd = &meta->desc->fields[i];
    const cx_field_meta_t *fm = &meta->fields[i];
    if (peek(r) == 'n')
        return expect_literal(r, "null", 4); /* null: the field keeps its default */
    if (cx__is_repeated(fd))
        return read_list(r, fd, fm, msg);
    void *dst = cx__field_ptr(msg, fd);
    if (!cx__in_oneof(fd)) {
        int rc = read_value(r, fd, fm, dst, AS_FIELD);
        return rc < 0 ? rc : 0;
    }
    uint32_t *which = (uint32_t *)((char *)msg + fd->quantifier_offset);
    if (*which != 0 && *which != fd->id) {
        const ProtobufCFieldDescriptor *other =
            protobuf_c_message_descriptor_get_field(meta->desc, (unsigned)*which);
        return fail(r, CX_EJSON, "oneof conflict: '%s' is already set",
                    other ? other->name : "another member");
    }
    int rc = read_value(r, fd, fm, dst, AS_ONEOF);
    if (rc < 0)
        return rc;
    if (rc == 0)
        *which = fd->id;
    return 0;
}

/* Whether name (NUL-terminated) is exactly key[0..n); key may hold NULs. */
static inline int name_is(const char *name, const char *key, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (name[i] != key[i] || name[i] == '\0')
            return 0;
    return name[n] == '\0';
}

/* The field named key (json name or proto name), or -1. Fields usually arrive in order, so
 * the search starts after the previous match; the first bytes are compared before the rest. */
static int find_field(const cx_msg_meta_t *meta, const char *key, size_t n, unsigned *hint,
                      const char **name)
{
    unsigned nf = meta->desc->n_fields;
    if (n == 0 || nf == 0)
        return -1;
    unsigned i = *hint < nf ? *hint : 0;
    for (unsigned k = 0; k < nf; k++, i = i + 1 < nf ? i + 1 : 0) {
        const char *jn = meta->fields[i].json_name;
        if (jn[0] == key[0] && name_is(jn, key, n)) {
            *name = jn;
            *hint = i + 1;
            return (int)i;
        }
        const char *pn = meta->desc->fields[i].name;
        if (pn[0] == key[0] && name_is(pn, key, n)) {
            *name = pn;
            *hint = i + 1;
            return (int)i;
        }
    }
    return -1;
}

static int read_message(reader_t *r, const cx_msg_meta_t *meta, ProtobufCMessage *msg)
{
    int rc = enter(r);
    if (rc != 0)
        return rc;
    r->p++; /* '{' */
    unsigned nf = meta->desc->n_fields;
    uint64_t seen_small[8];
    uint64_t *seen = seen_small;
    if (nf > 64 * 8) {
        seen = alloc(r, (nf + 63) / 64 * sizeof *seen);
        if (seen == NULL)
            return r->alloc_rc;
    } else {
        memset(seen_small, 0, sizeof seen_small);
    }
    unsigned hint = 0;
    skip_ws(r);
    if (peek(r) == '}') {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(r);
        if (peek(r) != '"')
            return fail(r, CX_EJSON, "expected a field name");
        jstr_t key;
        if ((rc = scan_string(r, &key)) != 0)
            return rc;
        skip_ws(r);
        if (peek(r) != ':')
            return fail(r, CX_EJSON, "expected ':' after a field name");
        r->p++;
        skip_ws(r);
        const char *text;
        size_t n;
        const char *name = NULL;
        int idx = -1;
        if (small_text(r, &key, &text, &n) == 0)
            idx = find_field(meta, text, n, &hint, &name);
        if (idx < 0) {
            push_name(r, key.raw, key.len);
            if (r->lenient)
                rc = skip_value(r);
            else
                rc = fail(r, CX_EUNKNOWN_FIELD, "unknown field of %s", meta->full_name);
            pop(r);
        } else {
            uint64_t bit = (uint64_t)1 << (idx % 64);
            push_name(r, name, n);
            if (seen[idx / 64] & bit) {
                rc = fail(r, CX_EJSON, "duplicate field");
            } else {
                seen[idx / 64] |= bit;
                rc = read_field(r, meta, msg, (unsigned)idx);
            }
            pop(r);
        }
        if (rc != 0)
            return rc;
        skip_ws(r);
        int c = peek(r);
        if (c == ',') {
            r->p++;
            continue;
        }
        if (c == '}') {
            r->p++;
            break;
        }
        return fail(r, CX_EJSON,
                    c < 0 ? "unexpected end of input in an object" : "expected ',' or '}'");
    }
    r->depth--;
    return 0;
}

int cx_from_json(const cx_msg_meta_t *meta, const char *json, size_t len, cx_arena_t *arena,
                 const cx_json_options_t *opts, ProtobufCMessage **out, cx_error_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (meta == NULL || arena == NULL || out == NULL || (json == NULL && len > 0))
        return cx_error_set(err, CX_EINVAL, NULL, "meta, arena and out are required");
    reader_t r;
    r.p = json ? json : "";
    r.end = r.p + len;
    r.arena = arena;
    r.err = err;
    r.lenient = opts ? opts->lenient : 0;
    r.alloc_rc = CX_ENOSPC;
    r.depth = 0;
    r.max_depth = opts && opts->max_depth ? opts->max_depth : READ_DEFAULT_DEPTH;
    if (r.max_depth > READ_DEPTH_CAP)
        r.max_depth = READ_DEPTH_CAP;
    r.npath = 0;
    size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : READ_DEFAULT_MAX_BYTES;
    if (len > max_bytes)
        return fail(&r, CX_ELIMIT, "input of %zu bytes exceeds the limit of %zu", len, max_bytes);
    skip_ws(&r);
    if (peek(&r) != '{')
        return fail_kind(&r, "an object");
    const ProtobufCMessageDescriptor *desc = meta->desc;
    ProtobufCMessage *msg = alloc(&r, desc->sizeof_message);
    if (msg == NULL)
        return r.alloc_rc;
    protobuf_c_message_init(desc, msg);
    int rc = read_message(&r, meta, msg);
    if (rc != 0)
        return rc;
    skip_ws(&r);
    if (r.p != r.end)
        return fail(&r, CX_EJSON, "unexpected data after the object");
    *out = msg;
    return 0;
}
