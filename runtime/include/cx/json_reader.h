/* The JSON reader of libcx for connectors: one pass, everything in the request arena, no malloc
 * per value. Adapters read provider payloads with it (the Meta adapters, the test connector).
 *
 * Why not jansson (ARCHITECTURE.md section 2 allows "a small reader of our own where jansson's
 * limits bite"): jansson allocates every value, string and object hash table with malloc and
 * frees them one by one; on this machine it reads a 2 KB WhatsApp batch in about 35-70 us,
 * more than the whole budget of the adapter benchmark (10 items in 50 us: 200,000 items/s).
 * This reader builds an immutable tree in the request arena: the input is copied once into the
 * arena and every key and string is produced in place in that copy (unescaped there when it
 * has escapes), then used as it is by the canonical messages (no second copy); objects are
 * arrays of members searched linearly (provider objects have a handful of keys), and
 * everything is released with the arena.
 *
 * What it accepts is RFC 8259 JSON: one value with optional surrounding whitespace; strings
 * must be valid UTF-8 (surrogate pairs in \u escapes are combined; a lone surrogate or
 * \u0000 is rejected, since canonical strings are NUL-terminated UTF-8); numbers are kept as
 * int64 when they are integers that fit, and always as double. Nesting deeper than
 * CX_MJ_MAX_DEPTH is refused. Duplicate keys are kept; lookups return the first (a connector
 * that must refuse them walks the members itself).
 *
 * It is not the proto3 JSON codec of the generated contracts (cx_from_json in cx/schema.h,
 * which decodes straight into a message); it is a DOM for adapters that map a provider's
 * payload by hand. jansson stays available to adapters that prefer a mutable DOM.
 *
 *     const cx_mj_t *root;
 *     if (cx_mj_parse(ctx->arena, req->body, req->body_len, &root, err) != 0) return ...;
 *     const char *id = cx_mj_gets(cx_mj_at(cx_mj_get(root, "items"), 0), "id");
 *
 * Ownership: every value, key and string lives in the arena passed to cx_mj_parse and is valid
 * until that arena is released; the input text is not referenced after the call. The arena
 * holds the copy of the input (len + 8 bytes) and the tree. Thread-safe with distinct arenas;
 * a parsed tree is immutable and may be read from any thread.
 */
#ifndef CX_JSON_READER_H
#define CX_JSON_READER_H

#include <stddef.h>
#include <stdint.h>

#include "cx/arena.h"
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CX_MJ_MAX_DEPTH 64

typedef enum {
    CX_MJ_NULL = 0,
    CX_MJ_FALSE = 1,
    CX_MJ_TRUE = 2,
    CX_MJ_NUMBER = 3,
    CX_MJ_STRING = 4,
    CX_MJ_ARRAY = 5,
    CX_MJ_OBJECT = 6
} cx_mj_type_t;

typedef struct cx_mj_s cx_mj_t;
typedef struct cx_mj_member_s cx_mj_member_t;

/* A value. Read-only once parsed; lives in the arena it was parsed into. */
struct cx_mj_s {
    uint8_t type;   /* cx_mj_type_t */
    uint8_t is_int; /* NUMBER: an integer that fits int64 (i is exact) */
    uint32_t n;     /* STRING: bytes (NUL excluded); ARRAY: items; OBJECT: members */
    union {
        const char *s;           /* STRING: NUL-terminated UTF-8 */
        cx_mj_t *items;          /* ARRAY */
        cx_mj_member_t *members; /* OBJECT */
        struct {
            double d;
            int64_t i;
        } num; /* NUMBER */
    } u;
};

struct cx_mj_member_s {
    const char *key; /* NUL-terminated */
    cx_mj_t value;
};

/* Parses text[0..len) into *out (in arena; text is copied there first). Returns 0, CX_EJSON (not
 * JSON, bad UTF-8, \u0000, trailing bytes), CX_ELIMIT (deeper than CX_MJ_MAX_DEPTH, a string or
 * container larger than 2^32) or CX_ENOSPC (arena, the copy included). err->message says which
 * (no payload); err may be NULL. */
CX_API int cx_mj_parse(cx_arena_t *a, const char *text, size_t len, const cx_mj_t **out,
                       cx_error_t *err);

/* The member key of an object, or NULL (v NULL or not an object, key absent). */
CX_API const cx_mj_t *cx_mj_get(const cx_mj_t *v, const char *key);
/* Item i of an array, or NULL. */
CX_API const cx_mj_t *cx_mj_at(const cx_mj_t *v, size_t i);

/* The string value, or NULL when v is NULL or not a string. */
static inline const char *cx_mj_str(const cx_mj_t *v)
{
    return v && v->type == CX_MJ_STRING ? v->u.s : NULL;
}
/* The string member key of obj, or NULL. */
static inline const char *cx_mj_gets(const cx_mj_t *obj, const char *key)
{
    return cx_mj_str(cx_mj_get(obj, key));
}
static inline int cx_mj_is(const cx_mj_t *v, cx_mj_type_t t)
{
    return v != NULL && v->type == t;
}
/* 1 for JSON true only. */
static inline int cx_mj_true(const cx_mj_t *v)
{
    return v != NULL && v->type == CX_MJ_TRUE;
}
/* Number of items of an array, members of an object; 0 otherwise. */
static inline size_t cx_mj_len(const cx_mj_t *v)
{
    return v && (v->type == CX_MJ_ARRAY || v->type == CX_MJ_OBJECT) ? v->n : 0;
}

/* The text of a string or an integer member (integers rendered in decimal into the arena), or
 * NULL: for ids a provider sends as "123" in one payload and 123 in another (Meta does). Sets
 * *nomem when the rendering fails; nomem may be NULL. */
CX_API const char *cx_mj_text(cx_arena_t *a, const cx_mj_t *v, int *nomem);

/* A number, or a string holding a finite decimal number ("37.44"): 0 and *out, else -1. */
CX_API int cx_mj_number(const cx_mj_t *v, double *out);

#ifdef __cplusplus
}
#endif

#endif /* CX_JSON_READER_H */
