/* libFuzzer target for libcx's arena JSON reader (cx/json_reader.h, runtime/src/core/).
 *
 * The input is any byte string. cx_mj_parse must return 0, CX_EJSON, CX_ELIMIT or CX_ENOSPC
 * with err set to the same code and a message, and never crash. A parse into a small arena
 * either gives the same result as one into a large arena or runs out (CX_ENOSPC). A tree it
 * accepts is well formed (strings NUL-terminated, as long as n says, valid UTF-8 without NUL;
 * nesting within CX_MJ_MAX_DEPTH), its lookups agree with its members, and written back as
 * JSON it reads again into the same tree. Any broken invariant aborts.
 *
 *     clang: cmake -DCX_FUZZ=ON ...; ./fuzz_json_reader -max_total_time=60 tests/fuzz/corpus
 *     gcc:   fuzz_json_reader_replay tests/fuzz/corpus tests/fuzz/corpus_json_reader
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/buf.h"
#include "cx/json_reader.h"

#define FUZZ_SMALL_ARENA ((size_t)2048)
#define FUZZ_LARGE_ARENA ((size_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s, uint32_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (strlen(s) != n)
        abort(); /* an embedded NUL, or n is wrong */
    while (p < end) {
        unsigned c = *p;
        size_t k = 0;
        if (c < 0x80)
            k = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            k = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 4;
        if (k == 0 || (size_t)(end - p) < k)
            abort();
        unsigned cp = k == 1 ? c : c & (0x7F >> k);
        for (size_t i = 1; i < k; i++) {
            if ((p[i] & 0xC0) != 0x80)
                abort();
            cp = cp << 6 | (p[i] & 0x3F);
        }
        static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            abort();
        p += k;
    }
}

static void check_tree(const cx_mj_t *v, int depth)
{
    switch (v->type) {
    case CX_MJ_NULL:
    case CX_MJ_FALSE:
    case CX_MJ_TRUE:
        break;
    case CX_MJ_NUMBER:
        if (v->is_int && (double)v->u.num.i != v->u.num.d)
            abort();
        break;
    case CX_MJ_STRING:
        check_utf8(v->u.s, v->n);
        if (cx_mj_str(v) != v->u.s)
            abort();
        break;
    case CX_MJ_ARRAY:
        if (depth >= CX_MJ_MAX_DEPTH || cx_mj_len(v) != v->n)
            abort();
        for (uint32_t i = 0; i < v->n; i++) {
            if (cx_mj_at(v, i) != &v->u.items[i])
                abort();
            check_tree(&v->u.items[i], depth + 1);
        }
        if (cx_mj_at(v, v->n) != NULL || cx_mj_get(v, "") != NULL)
            abort();
        break;
    case CX_MJ_OBJECT:
        if (depth >= CX_MJ_MAX_DEPTH || cx_mj_len(v) != v->n)
            abort();
        for (uint32_t i = 0; i < v->n; i++) {
            const cx_mj_member_t *m = &v->u.members[i];
            check_utf8(m->key, (uint32_t)strlen(m->key));
            /* lookups return the first member of that name */
            uint32_t first = 0;
            while (strcmp(v->u.members[first].key, m->key) != 0)
                first++;
            if (cx_mj_get(v, m->key) != &v->u.members[first].value)
                abort();
            check_tree(&m->value, depth + 1);
        }
        if (cx_mj_at(v, 0) != NULL)
            abort();
        break;
    default:
        abort();
    }
}

static void write_string(cx_buf_t *b, const char *s)
{
    cx_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            cx_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            cx_buf_printf(b, "\\u%04x", *p);
        else
            cx_buf_append(b, p, 1);
    }
    cx_buf_puts(b, "\"");
}

/* The tree as JSON. Numbers: integers exactly, others with 17 significant digits (which read
 * back to the same double); infinities (from 1e999) as 1e999 and -1e999. */
static void write_tree(cx_buf_t *b, const cx_mj_t *v)
{
    switch (v->type) {
    case CX_MJ_NULL:
        cx_buf_puts(b, "null");
        break;
    case CX_MJ_FALSE:
        cx_buf_puts(b, "false");
        break;
    case CX_MJ_TRUE:
        cx_buf_puts(b, "true");
        break;
    case CX_MJ_NUMBER:
        if (v->is_int)
            cx_buf_printf(b, "%" PRId64, v->u.num.i);
        else if (isinf(v->u.num.d))
            cx_buf_puts(b, v->u.num.d > 0 ? "1e999" : "-1e999");
        else
            cx_buf_printf(b, "%.17g", v->u.num.d);
        break;
    case CX_MJ_STRING:
        write_string(b, v->u.s);
        break;
    case CX_MJ_ARRAY:
        cx_buf_puts(b, "[");
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                cx_buf_puts(b, ",");
            write_tree(b, &v->u.items[i]);
        }
        cx_buf_puts(b, "]");
        break;
    default:
        cx_buf_puts(b, "{");
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                cx_buf_puts(b, ",");
            write_string(b, v->u.members[i].key);
            cx_buf_puts(b, ":");
            write_tree(b, &v->u.members[i].value);
        }
        cx_buf_puts(b, "}");
        break;
    }
}

static void check_same(const cx_mj_t *x, const cx_mj_t *y)
{
    if (x->type != y->type || x->n != y->n)
        abort();
    switch (x->type) {
    case CX_MJ_NUMBER:
        /* 1.0 reads back as the integer 1: the double is what must survive */
        if ((x->is_int && (!y->is_int || x->u.num.i != y->u.num.i)) || x->u.num.d != y->u.num.d)
            abort();
        break;
    case CX_MJ_STRING:
        if (memcmp(x->u.s, y->u.s, x->n) != 0)
            abort();
        break;
    case CX_MJ_ARRAY:
        for (uint32_t i = 0; i < x->n; i++)
            check_same(&x->u.items[i], &y->u.items[i]);
        break;
    case CX_MJ_OBJECT:
        for (uint32_t i = 0; i < x->n; i++) {
            if (strcmp(x->u.members[i].key, y->u.members[i].key) != 0)
                abort();
            check_same(&x->u.members[i].value, &y->u.members[i].value);
        }
        break;
    default:
        break;
    }
}

static int parse(cx_arena_t *a, const char *text, size_t len, const cx_mj_t **out)
{
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_mj_parse(a, text, len, out, &err);
    if (rc == 0) {
        if (*out == NULL || err.code != 0)
            abort();
    } else {
        if (rc != CX_EJSON && rc != CX_ELIMIT && rc != CX_ENOSPC)
            abort();
        if (*out != NULL || err.code != rc || err.message[0] == '\0')
            abort();
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    cx_arena_t large, small, again;
    cx_arena_init(&large, NULL, FUZZ_LARGE_ARENA);
    cx_arena_init(&small, NULL, FUZZ_SMALL_ARENA);
    cx_arena_init(&again, NULL, FUZZ_LARGE_ARENA);
    const cx_mj_t *root = NULL, *tiny = NULL, *back = NULL;
    int rc = parse(&large, text, size, &root);
    int rc_small = parse(&small, text, size, &tiny);
    if (rc_small != rc && rc_small != CX_ENOSPC)
        abort();
    if (rc_small == 0)
        check_same(root, tiny);
    if (rc == 0) {
        check_tree(root, 0);
        cx_buf_t b;
        cx_buf_init(&b, (size_t)256 << 20);
        write_tree(&b, root);
        if (cx_buf_error(&b) != 0)
            abort();
        if (parse(&again, b.data, b.len, &back) != 0)
            abort();
        check_same(root, back);
        cx_buf_free(&b);
    }
    cx_arena_release(&again);
    cx_arena_release(&small);
    cx_arena_release(&large);
    return 0;
}
