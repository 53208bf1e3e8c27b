/* Mutated fixtures for the robustness and batch checks.
 *
 * The mutations are deterministic (seeded by the case name), so a failure is reproducible:
 * truncations at every eighth of the body, single bit flips at pseudo-random positions, and,
 * for JSON bodies, one type swap per node (a string becomes a number, a number a string, an
 * object an array, ...), an empty object and a deeply nested array.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_SWAPS 48
#define N_FLIPS 16
#define NEST_DEPTH 5000

typedef struct {
    cx_conf_mutation_t *m;
    size_t n, cap;
} list_t;

static void add(list_t *l, const char *body, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(list_t *l, const char *body, size_t len, const char *fmt, ...)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        cx_conf_mutation_t *p = realloc(l->m, cap * sizeof *p);
        if (p == NULL)
            return;
        l->m = p;
        l->cap = cap;
    }
    char *b = malloc(len + 1);
    if (b == NULL)
        return;
    memcpy(b, body, len);
    b[len] = '\0';
    cx_conf_mutation_t *m = &l->m[l->n++];
    m->body = b;
    m->len = len;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->what, sizeof m->what, fmt, ap);
    va_end(ap);
}

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

static json_t *swapped(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return json_array();
    case JSON_ARRAY:
        return json_object();
    case JSON_STRING:
        return json_integer(12345);
    case JSON_INTEGER:
    case JSON_REAL:
        return json_string("not-a-number");
    case JSON_TRUE:
    case JSON_FALSE:
        return json_null();
    default:
        return json_string("null-swapped");
    }
}

/* Replaces the target-th node (depth-first, root excluded) of j by its swap; the path and the
 * swap are described in what. Returns 1 when done. */
static int swap_nth(json_t *j, int *i, int target, char *path, size_t plen, size_t cap, char *what,
                    size_t wcap)
{
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(j, tmp, key, v)
        {
            size_t l = plen + (size_t)snprintf(path + plen, cap - plen, ".%s", key);
            if (l >= cap)
                l = cap - 1;
            if ((*i)++ == target) {
                json_t *s = swapped(v);
                snprintf(what, wcap, "type swap at $%s: %s -> %s", path, type_name(v),
                         type_name(s));
                json_object_set_new(j, key, s);
                return 1;
            }
            if (swap_nth(v, i, target, path, l, cap, what, wcap))
                return 1;
            path[plen] = '\0';
        }
    } else if (json_is_array(j)) {
        for (size_t k = 0; k < json_array_size(j); k++) {
            json_t *v = json_array_get(j, k);
            size_t l = plen + (size_t)snprintf(path + plen, cap - plen, "[%zu]", k);
            if (l >= cap)
                l = cap - 1;
            if ((*i)++ == target) {
                json_t *s = swapped(v);
                snprintf(what, wcap, "type swap at $%s: %s -> %s", path, type_name(v),
                         type_name(s));
                json_array_set_new(j, k, s);
                return 1;
            }
            if (swap_nth(v, i, target, path, l, cap, what, wcap))
                return 1;
            path[plen] = '\0';
        }
    }
    return 0;
}

static void add_json(list_t *l, json_t *j, const char *what)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        add(l, s, strlen(s), "%s", what);
        free(s);
    }
}

size_t cx_conf__mutations(const char *body, size_t len, const char *seed, cx_conf_mutation_t **out)
{
    list_t l = {NULL, 0, 0};
    /* truncations */
    size_t last = (size_t)-1;
    for (int k = 0; k < 8; k++) {
        size_t at = len * (size_t)k / 8;
        if (at != last && at < len)
            add(&l, body, at, "truncated to %zu of %zu bytes", at, len);
        last = at;
    }
    if (len > 1 && len - 1 != last)
        add(&l, body, len - 1, "truncated to %zu of %zu bytes", len - 1, len);
    /* bit flips */
    uint64_t st = 1469598103934665603ull;
    for (const char *p = seed; *p; p++)
        st = (st ^ (unsigned char)*p) * 1099511628211ull;
    st |= 1;
    for (int k = 0; k < N_FLIPS && len; k++) {
        size_t pos = (size_t)(next(&st) % len);
        int bit = (int)(next(&st) % 8);
        char *b = malloc(len + 1);
        if (b == NULL)
            break;
        memcpy(b, body, len);
        b[pos] = (char)(b[pos] ^ (1 << bit));
        add(&l, b, len, "bit %d of byte %zu flipped", bit, pos);
        free(b);
    }
    /* JSON type swaps */
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (root) {
        for (int target = 0; target < MAX_SWAPS; target++) {
            json_t *copy = json_deep_copy(root);
            if (copy == NULL)
                break;
            int i = 0;
            char path[512] = "";
            char what[160];
            int done = swap_nth(copy, &i, target, path, 0, sizeof path, what, sizeof what);
            if (done)
                add_json(&l, copy, what);
            json_decref(copy);
            if (!done)
                break;
        }
        json_t *s = swapped(root);
        char what[160];
        snprintf(what, sizeof what, "type swap of the whole body: %s -> %s", type_name(root),
                 type_name(s));
        add_json(&l, s, what);
        json_decref(s);
        json_t *empty = json_object();
        add_json(&l, empty, "an empty JSON object");
        json_decref(empty);
        json_decref(root);
    }
    /* deep nesting: a parser without a depth limit overflows its stack */
    char *deep = malloc(2 * NEST_DEPTH + 1);
    if (deep) {
        memset(deep, '[', NEST_DEPTH);
        memset(deep + NEST_DEPTH, ']', NEST_DEPTH);
        add(&l, deep, 2 * NEST_DEPTH, "%d nested arrays", NEST_DEPTH);
        free(deep);
    }
    *out = l.m;
    return l.n;
}

void cx_conf__mutations_free(cx_conf_mutation_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].body);
    free(m);
}

/* The first array (depth-first) of two or more elements that are all objects. */
static json_t *find_batch(json_t *j, char *path, size_t plen, size_t cap, int depth)
{
    if (depth > 32)
        return NULL;
    if (json_is_array(j)) {
        size_t n = json_array_size(j);
        int all = n >= 2;
        for (size_t k = 0; all && k < n; k++)
            all = json_is_object(json_array_get(j, k));
        if (all)
            return j;
        for (size_t k = 0; k < n; k++) {
            size_t l = plen + (size_t)snprintf(path + plen, cap - plen, "[%zu]", k);
            json_t *r =
                find_batch(json_array_get(j, k), path, l < cap ? l : cap - 1, cap, depth + 1);
            if (r)
                return r;
            path[plen] = '\0';
        }
    } else if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            size_t l = plen + (size_t)snprintf(path + plen, cap - plen, ".%s", key);
            json_t *r = find_batch(v, path, l < cap ? l : cap - 1, cap, depth + 1);
            if (r)
                return r;
            path[plen] = '\0';
        }
    }
    return NULL;
}

char *cx_conf__poison_item(const char *body, size_t len, size_t *out_len, char *where, size_t cap)
{
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (root == NULL)
        return NULL;
    char path[512] = "";
    json_t *arr = find_batch(root, path, 0, sizeof path, 0);
    char *s = NULL;
    if (arr) {
        json_array_set_new(arr, 0, json_object());
        s = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(where, cap, "$%s[0]", path);
        if (s)
            *out_len = strlen(s);
    }
    json_decref(root);
    return s;
}
