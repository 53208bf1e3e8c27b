/* proto3 JSON: seeded random round trips over every registered message, the reader's error
 * cases with their codes and paths, the writer's exact text, and redaction.
 *
 * Round trips compare protobuf-c's binary encodings of the original and the decoded message:
 * pack is deterministic (field-number order) and compares floating point bit for bit, NaN
 * included, so "equal bytes" means "equal messages" with no hand-written comparison to trust.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cx/calendar/v1/calendar.cx.h"
#include "cx/common/v1/common.cx.h"
#include "cx/email/v1/email.cx.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/schema.h"
#include "google/protobuf/timestamp.pb-c.h"

#define ROUND_TRIPS_PER_TYPE 30
#define FILL_MAX_DEPTH 3

/* ---- A test-only message with every scalar type the schemas do not use ------------------ */

typedef struct {
    ProtobufCMessage base;
    int32_t f_int32, f_sint32, f_sfixed32;
    uint32_t f_uint32, f_fixed32;
    int64_t f_int64, f_sint64, f_sfixed64;
    uint64_t f_uint64, f_fixed64;
    float f_float;
    double f_double;
    protobuf_c_boolean f_bool;
    ProtobufCBinaryData f_bytes;
    char *f_string;
    int f_enum;
    Google__Protobuf__Timestamp *f_ts;
    size_t n_r_bytes;
    ProtobufCBinaryData *r_bytes;
    size_t n_r_float;
    float *r_float;
    size_t n_r_sint64;
    int64_t *r_sint64;
    size_t n_r_ts;
    Google__Protobuf__Timestamp **r_ts;
    uint32_t which;
    union {
        ProtobufCBinaryData o_bytes;
        float o_float;
        char *o_string;
    };
} all_types_t;

static void all_types_init(ProtobufCMessage *m);

/* protobuf-c's field descriptor: name, number, label, type, quantifier and value offsets, type
 * descriptor, default, flags. */
#define AT_FIELD(name, id, label, type, q, desc, def, flags)                                       \
    {                                                                                              \
        (#name), id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q,                          \
            offsetof(all_types_t, name), desc, def, flags, 0, NULL, NULL                           \
    }
#define AT_ONE(name, id, type)                                                                     \
    AT_FIELD(name, id, NONE, type, offsetof(all_types_t, which), NULL, NULL,                       \
             PROTOBUF_C_FIELD_FLAG_ONEOF)
#define AT_REP(name, id, type, desc, flags)                                                        \
    AT_FIELD(name, id, REPEATED, type, offsetof(all_types_t, n_##name), desc, NULL, flags)

static const ProtobufCFieldDescriptor all_types_fields[] = {
    AT_FIELD(f_int32, 1, NONE, INT32, 0, NULL, NULL, 0),
    AT_FIELD(f_sint32, 2, NONE, SINT32, 0, NULL, NULL, 0),
    AT_FIELD(f_sfixed32, 3, NONE, SFIXED32, 0, NULL, NULL, 0),
    AT_FIELD(f_uint32, 4, NONE, UINT32, 0, NULL, NULL, 0),
    AT_FIELD(f_fixed32, 5, NONE, FIXED32, 0, NULL, NULL, 0),
    AT_FIELD(f_int64, 6, NONE, INT64, 0, NULL, NULL, 0),
    AT_FIELD(f_sint64, 7, NONE, SINT64, 0, NULL, NULL, 0),
    AT_FIELD(f_sfixed64, 8, NONE, SFIXED64, 0, NULL, NULL, 0),
    AT_FIELD(f_uint64, 9, NONE, UINT64, 0, NULL, NULL, 0),
    AT_FIELD(f_fixed64, 10, NONE, FIXED64, 0, NULL, NULL, 0),
    AT_FIELD(f_float, 11, NONE, FLOAT, 0, NULL, NULL, 0),
    AT_FIELD(f_double, 12, NONE, DOUBLE, 0, NULL, NULL, 0),
    AT_FIELD(f_bool, 13, NONE, BOOL, 0, NULL, NULL, 0),
    AT_FIELD(f_bytes, 14, NONE, BYTES, 0, NULL, NULL, 0),
    AT_FIELD(f_string, 15, NONE, STRING, 0, NULL, &protobuf_c_empty_string, 0),
    AT_FIELD(f_enum, 16, NONE, ENUM, 0, &cx__common__v1__actor_kind__descriptor, NULL, 0),
    AT_FIELD(f_ts, 17, NONE, MESSAGE, 0, &google__protobuf__timestamp__descriptor, NULL, 0),
    AT_REP(r_bytes, 18, BYTES, NULL, 0),
    AT_REP(r_float, 19, FLOAT, NULL, PROTOBUF_C_FIELD_FLAG_PACKED),
    AT_REP(r_sint64, 20, SINT64, NULL, PROTOBUF_C_FIELD_FLAG_PACKED),
    AT_REP(r_ts, 21, MESSAGE, &google__protobuf__timestamp__descriptor, 0),
    AT_ONE(o_bytes, 22, BYTES),
    AT_ONE(o_float, 23, FLOAT),
    AT_ONE(o_string, 24, STRING),
};

#define N_AT (sizeof all_types_fields / sizeof all_types_fields[0])

static const unsigned all_types_by_name[N_AT] = {
    12, 13, 11, 15, 4, 9, 10, 0, 5, 2, 7, 1, 6, 14, 16, 3, 8, 21, 22, 23, 17, 18, 19, 20,
};

static const ProtobufCIntRange all_types_ranges[] = {{1, 0}, {0, (int)N_AT}};

static const ProtobufCMessageDescriptor all_types_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "cx.test.AllTypes",
    "AllTypes",
    "AllTypes",
    "cx.test",
    sizeof(all_types_t),
    N_AT,
    all_types_fields,
    all_types_by_name,
    1,
    all_types_ranges,
    all_types_init,
    NULL,
    NULL,
    NULL,
};

static void all_types_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(all_types_t));
    m->descriptor = &all_types_desc;
    ((all_types_t *)m)->f_string = (char *)protobuf_c_empty_string;
}

#define AT_META(json, flags)                                                                       \
    {                                                                                              \
        json, flags, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, CX_PII_NONE, NULL                              \
    }

static const cx_field_meta_t all_types_field_meta[N_AT] = {
    AT_META("fInt32", 0),   AT_META("fSint32", 0),          AT_META("fSfixed32", 0),
    AT_META("fUint32", 0),  AT_META("fFixed32", 0),         AT_META("fInt64", 0),
    AT_META("fSint64", 0),  AT_META("fSfixed64", 0),        AT_META("fUint64", 0),
    AT_META("fFixed64", 0), AT_META("fFloat", 0),           AT_META("fDouble", 0),
    AT_META("fBool", 0),    AT_META("fBytes", 0),           AT_META("fString", 0),
    AT_META("fEnum", 0),    AT_META("fTs", CX_F_TIMESTAMP), AT_META("rBytes", 0),
    AT_META("rFloat", 0),   AT_META("rSint64", 0),          AT_META("rTs", CX_F_TIMESTAMP),
    AT_META("oBytes", 0),   AT_META("oFloat", 0),           AT_META("oString", 0),
};

static const cx_msg_meta_t all_types_meta = {
    &all_types_desc,
    "cx.test.AllTypes",
    NULL,
    NULL,
    CX_KIND_VALUE,
    0,
    all_types_field_meta,
    NULL,
    0,
    NULL,
    0,
    NULL,
    0,
};

/* ---- Seeded random messages over descriptors -------------------------------------------- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t below(rng_t *r, uint64_t n)
{
    return n ? rnd(r) % n : 0;
}

static struct {
    int int64_min, uint64_max, nan, inf, utf8_4byte, max_len;
} cov;

/* Which oneof members of registered messages were filled: one flag array per message. */
static const cx_msg_meta_t *const *g_all;
static size_t g_n_all;
static unsigned char *g_oneof_hit[256];

static void note_oneof(const cx_msg_meta_t *meta, unsigned field)
{
    for (size_t i = 0; i < g_n_all; i++) {
        if (g_all[i] == meta) {
            g_oneof_hit[i][field] = 1;
            return;
        }
    }
}

static void *arena_new(cx_arena_t *a, size_t n)
{
    void *p = cx_arena_alloc(a, n);
    assert_non_null(p);
    return p;
}

/* One code point: mostly ASCII, JSON's special characters, 2-, 3- and 4-byte UTF-8. */
static size_t put_code_point(rng_t *r, char *o)
{
    uint64_t k = below(r, 100);
    uint32_t cp;
    if (k < 50)
        cp = 0x20 + (uint32_t)below(r, 0x5F);
    else if (k < 60)
        cp = (uint32_t) "\"\\/\b\f\n\r\t\x01\x1f\x7f"[below(r, 11)];
    else if (k < 72)
        cp = 0x80 + (uint32_t)below(r, 0x780);
    else if (k < 86) {
        cp = 0x800 + (uint32_t)below(r, 0xF7FE);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0x2028 + (cp & 1); /* U+2028/2029 instead of surrogates */
    } else
        cp = 0x10000 + (uint32_t)below(r, 0x100000);
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    cov.utf8_4byte = 1;
    return 4;
}

static char *gen_string(rng_t *r, cx_arena_t *a, uint32_t max_len)
{
    uint32_t bound = max_len ? max_len : 64;
    uint64_t k = below(r, 100);
    uint32_t n;
    if (k < 6 && max_len) {
        n = max_len;
        cov.max_len = 1;
    } else if (k < 12) {
        n = 1;
    } else {
        n = (uint32_t)below(r, (bound < 24 ? bound : 24) + 1);
    }
    char *s = arena_new(a, (size_t)n * 4 + 1);
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++)
        len += put_code_point(r, s + len);
    s[len] = '\0';
    return s;
}

static ProtobufCBinaryData gen_bytes(rng_t *r, cx_arena_t *a, uint32_t max_len)
{
    uint32_t bound = max_len ? max_len : 40;
    size_t n = below(r, 10) == 0 ? bound : below(r, (bound < 40 ? bound : 40) + 1);
    ProtobufCBinaryData b = {n, n ? arena_new(a, n) : NULL};
    for (size_t i = 0; i < n; i++)
        b.data[i] = (uint8_t)rnd(r);
    return b;
}

static double gen_double(rng_t *r, const cx_field_meta_t *fm)
{
    uint64_t k = below(r, 100);
    if ((fm->flags & CX_F_HAS_GTE_D) && (fm->flags & CX_F_HAS_LTE_D) && k < 40)
        return fm->gte_d + (fm->lte_d - fm->gte_d) * (double)below(r, 1000001) / 1e6;
    if (k < 55) {
        static const double specials[] = {
            0.1,  -0.0,   DBL_MAX,   -DBL_MAX,           DBL_MIN, 5e-324, 1e21,
            1e-7, 123.25, -2.5e-300, 9007199254740993.0, 1.0 / 3};
        return specials[below(r, sizeof specials / sizeof specials[0])];
    }
    if (k < 65) {
        cov.nan = 1;
        return NAN;
    }
    if (k < 75) {
        cov.inf = 1;
        return below(r, 2) ? INFINITY : -INFINITY;
    }
    if (k < 85)
        return (double)((int64_t)below(r, 2000001) - 1000000) / 1000.0;
    for (;;) {
        uint64_t bits = rnd(r);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isnan(d))
            return d;
    }
}

static float gen_float(rng_t *r)
{
    uint64_t k = below(r, 100);
    if (k < 10) {
        cov.nan = 1;
        return NAN;
    }
    if (k < 20) {
        cov.inf = 1;
        return below(r, 2) ? INFINITY : -INFINITY;
    }
    if (k < 40) {
        static const float specials[] = {0.1f,    -0.0f,  FLT_MAX,     -FLT_MAX,
                                         FLT_MIN, 1e-45f, 16777217.0f, 3.14159274f};
        return specials[below(r, sizeof specials / sizeof specials[0])];
    }
    for (;;) {
        uint32_t bits = (uint32_t)rnd(r);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (!isnan(f))
            return f;
    }
}

static Google__Protobuf__Timestamp *gen_timestamp(rng_t *r, cx_arena_t *a)
{
    Google__Protobuf__Timestamp *ts = arena_new(a, sizeof *ts);
    google__protobuf__timestamp__init(ts);
    static const int64_t specials[] = {INT64_C(-62135596800), INT64_C(253402300799), 0, -1,
                                       INT64_C(63108020)};
    ts->seconds = below(r, 4) == 0
                      ? specials[below(r, 5)]
                      : INT64_C(-62135596800) + (int64_t)below(r, UINT64_C(315537897600));
    switch (below(r, 4)) {
    case 0:
        ts->nanos = 0;
        break;
    case 1:
        ts->nanos = (int32_t)below(r, 1000) * 1000000;
        break;
    case 2:
        ts->nanos = (int32_t)below(r, 1000000) * 1000;
        break;
    default:
        ts->nanos = (int32_t)below(r, 1000000000);
    }
    return ts;
}

static void fill_message(rng_t *r, cx_arena_t *a, const cx_msg_meta_t *meta, ProtobufCMessage *m,
                         int depth, uint64_t iteration);

static int64_t gen_signed(rng_t *r, const cx_field_meta_t *fm, int64_t lo, int64_t hi)
{
    int64_t glo = (fm->flags & CX_F_HAS_GTE) && fm->gte > lo ? fm->gte : lo;
    int64_t ghi = (fm->flags & CX_F_HAS_LTE) && fm->lte < hi ? fm->lte : hi;
    uint64_t k = below(r, 100);
    if ((fm->flags & (CX_F_HAS_GTE | CX_F_HAS_LTE)) && k < 60 && glo <= ghi)
        return glo + (int64_t)below(r, (uint64_t)ghi - (uint64_t)glo + 1);
    if (k < 75) {
        const int64_t specials[] = {lo, hi, -1, 0, 1, (int64_t)1 << 53 | 1};
        int64_t v = specials[below(r, 6)];
        return v < lo ? lo : v > hi ? hi : v;
    }
    uint64_t bits = rnd(r);
    if (hi == INT32_MAX)
        return (int32_t)(uint32_t)bits;
    return (int64_t)bits;
}

/* One random value of fd's type into p. */
static void gen_value(rng_t *r, cx_arena_t *a, const ProtobufCFieldDescriptor *fd,
                      const cx_field_meta_t *fm, void *p, int depth)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)p = (int32_t)gen_signed(r, fm, INT32_MIN, INT32_MAX);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = below(r, 5) == 0 ? UINT32_MAX : (uint32_t)rnd(r) >> below(r, 32);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v = gen_signed(r, fm, INT64_MIN, INT64_MAX);
        if (v == INT64_MIN)
            cov.int64_min = 1;
        *(int64_t *)p = v;
        break;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = below(r, 4) == 0 ? UINT64_MAX : rnd(r) >> below(r, 64);
        if ((fm->flags & CX_F_HAS_GTE) && v < (uint64_t)fm->gte && below(r, 2))
            v = (uint64_t)fm->gte;
        if (v == UINT64_MAX)
            cov.uint64_max = 1;
        *(uint64_t *)p = v;
        break;
    }
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = gen_float(r);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = gen_double(r, fm);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = (protobuf_c_boolean)below(r, 2);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = fd->descriptor;
        *(int32_t *)p = below(r, 10) == 0 ? (int32_t)(below(r, 2) ? 1000 : -7)
                                          : ed->values[below(r, ed->n_values)].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        *(char **)p = gen_string(r, a, fm->max_len);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        *(ProtobufCBinaryData *)p = gen_bytes(r, a, fm->max_len);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (fm->flags & CX_F_TIMESTAMP) {
            *(Google__Protobuf__Timestamp **)p = gen_timestamp(r, a);
        } else {
            const ProtobufCMessageDescriptor *d = fm->msg->desc;
            ProtobufCMessage *sub = arena_new(a, d->sizeof_message);
            protobuf_c_message_init(d, sub);
            if (depth < FILL_MAX_DEPTH)
                fill_message(r, a, fm->msg, sub, depth + 1, rnd(r));
            *(ProtobufCMessage **)p = sub;
        }
        break;
    }
}

static void fill_message(rng_t *r, cx_arena_t *a, const cx_msg_meta_t *meta, ProtobufCMessage *m,
                         int depth, uint64_t iteration)
{
    const ProtobufCMessageDescriptor *d = meta->desc;
    /* Oneofs: the members sharing a case field form a group; the iteration number walks
     * through every member (and "none") so each one is hit within a few iterations. */
    unsigned done[64];
    unsigned n_done = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        unsigned q = fd->quantifier_offset, seen = 0;
        for (unsigned k = 0; k < n_done; k++)
            seen |= done[k] == q;
        if (seen || n_done == 64)
            continue;
        done[n_done++] = q;
        unsigned members[256], n = 0;
        for (unsigned j = i; j < d->n_fields && n < 256; j++)
            if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                d->fields[j].quantifier_offset == q)
                members[n++] = j;
        uint64_t pick = (iteration + n_done) % (n + 1);
        if (pick == n)
            continue;
        unsigned f = members[pick];
        gen_value(r, a, &d->fields[f], &meta->fields[f], (char *)m + d->fields[f].offset, depth);
        *(uint32_t *)((char *)m + q) = d->fields[f].id;
        note_oneof(meta, f);
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const cx_field_meta_t *fm = &meta->fields[i];
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || below(r, 100) < 35)
            continue;
        int is_msg = fd->type == PROTOBUF_C_TYPE_MESSAGE && !(fm->flags & CX_F_TIMESTAMP);
        if (is_msg && depth >= FILL_MAX_DEPTH)
            continue;
        void *p = (char *)m + fd->offset;
        if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
            gen_value(r, a, fd, fm, p, depth);
            continue;
        }
        uint32_t cap = fm->max_items ? fm->max_items : 4;
        size_t n = below(r, 8) == 0 && cap <= 8 ? cap : below(r, (cap < 3 ? cap : 3) + 1);
        size_t size =
            fd->type == PROTOBUF_C_TYPE_MESSAGE  ? sizeof(void *)
            : fd->type == PROTOBUF_C_TYPE_BYTES  ? sizeof(ProtobufCBinaryData)
            : fd->type == PROTOBUF_C_TYPE_STRING ? sizeof(char *)
            : fd->type == PROTOBUF_C_TYPE_BOOL   ? sizeof(protobuf_c_boolean)
            : fd->type == PROTOBUF_C_TYPE_DOUBLE || fd->type == PROTOBUF_C_TYPE_INT64 ||
                    fd->type == PROTOBUF_C_TYPE_UINT64 || fd->type == PROTOBUF_C_TYPE_SINT64 ||
                    fd->type == PROTOBUF_C_TYPE_SFIXED64 || fd->type == PROTOBUF_C_TYPE_FIXED64
                ? 8
                : 4;
        char *items = n ? arena_new(a, n * size) : NULL;
        for (size_t k = 0; k < n; k++)
            gen_value(r, a, fd, fm, items + k * size, depth);
        *(void **)p = items;
        *(size_t *)((char *)m + fd->quantifier_offset) = n;
    }
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* Encodes, decodes, compares binary encodings and the re-encoded JSON. */
static void round_trip(const cx_msg_meta_t *meta, const ProtobufCMessage *m, cx_buf_t *json,
                       cx_buf_t *again, uint64_t seed)
{
    cx_buf_reset(json);
    cx_buf_reset(again);
    int rc = cx_to_json(meta, m, json);
    if (rc != 0)
        fail_msg("%s seed %llu: cx_to_json: %s", meta->full_name, (unsigned long long)seed,
                 cx_err_name(rc));
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, (size_t)64 << 20);
    cx_error_t err;
    cx_error_clear(&err);
    ProtobufCMessage *back = NULL;
    rc = cx_from_json(meta, json->data, json->len, &arena, NULL, &back, &err);
    if (rc != 0)
        fail_msg("%s seed %llu: cx_from_json: %s at '%s': %s\n%.400s", meta->full_name,
                 (unsigned long long)seed, cx_err_name(rc), err.path, err.message, json->data);
    size_t la, lb;
    uint8_t *pa = pack(m, &la), *pb = pack(back, &lb);
    if (la != lb || memcmp(pa, pb, la) != 0)
        fail_msg("%s seed %llu: decoded message differs\n%.2000s", meta->full_name,
                 (unsigned long long)seed, json->data);
    assert_int_equal(cx_to_json(meta, back, again), 0);
    assert_int_equal(again->len, json->len);
    assert_memory_equal(again->data, json->data, json->len);
    free(pa);
    free(pb);
    cx_arena_release(&arena);
}

static size_t round_trips_of(const cx_msg_meta_t *meta, uint64_t seed_base, cx_buf_t *json,
                             cx_buf_t *again)
{
    /* Enough iterations for the round robin to reach every oneof member and "none". */
    unsigned biggest = 0;
    for (unsigned i = 0; i < meta->desc->n_fields; i++)
        if (meta->desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            biggest++;
    unsigned iterations = ROUND_TRIPS_PER_TYPE > biggest + 2 ? ROUND_TRIPS_PER_TYPE : biggest + 2;
    for (unsigned it = 0; it < iterations; it++) {
        uint64_t seed = seed_base * 1000 + it;
        rng_t r = {seed};
        cx_arena_t arena;
        cx_arena_init(&arena, NULL, (size_t)64 << 20);
        ProtobufCMessage *m = arena_new(&arena, meta->desc->sizeof_message);
        protobuf_c_message_init(meta->desc, m);
        if (it > 0)
            fill_message(&r, &arena, meta, m, 0, it);
        round_trip(meta, m, json, again, seed);
        cx_arena_release(&arena);
    }
    return iterations;
}

static void test_random_round_trips_of_every_message_type(void **state)
{
    (void)state;
    g_all = cx_schema_all(&g_n_all);
    assert_true(g_n_all > 0 && g_n_all <= 256);
    size_t members = 0;
    for (size_t i = 0; i < g_n_all; i++) {
        g_oneof_hit[i] = calloc(g_all[i]->desc->n_fields + 1, 1);
        for (unsigned f = 0; f < g_all[i]->desc->n_fields; f++)
            members += (g_all[i]->desc->fields[f].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
    }
    cx_buf_t json, again;
    cx_buf_init(&json, (size_t)64 << 20);
    cx_buf_init(&again, (size_t)64 << 20);
    size_t total = 0;
    for (size_t i = 0; i < g_n_all; i++)
        total += round_trips_of(g_all[i], i + 1, &json, &again);
    total += round_trips_of(&all_types_meta, 999, &json, &again);
    size_t hit = 0;
    for (size_t i = 0; i < g_n_all; i++) {
        for (unsigned f = 0; f < g_all[i]->desc->n_fields; f++)
            hit += g_oneof_hit[i][f];
        free(g_oneof_hit[i]);
    }
    cx_buf_free(&json);
    cx_buf_free(&again);
#define YN(x) ((x) ? "yes" : "no")
    printf("json round trips: %zu messages over %zu types\n", total, g_n_all + 1);
    printf("json coverage: oneof members %zu/%zu, int64_min %s, uint64_max %s, nan %s, inf %s, "
           "utf8_4byte %s, max_len strings %s\n",
           hit, members, YN(cov.int64_min), YN(cov.uint64_max), YN(cov.nan), YN(cov.inf),
           YN(cov.utf8_4byte), YN(cov.max_len));
    assert_true(total >= 2000);
    assert_int_equal(hit, members);
    assert_true(cov.int64_min && cov.uint64_max && cov.nan && cov.inf && cov.utf8_4byte &&
                cov.max_len);
}

/* ---- Reader errors: code and path -------------------------------------------------------- */

typedef struct {
    int rc;
    cx_error_t err;
    ProtobufCMessage *msg;
    cx_arena_t arena;
} decoded_t;

static void decode_opts(decoded_t *d, const cx_msg_meta_t *meta, const char *json, size_t len,
                        const cx_json_options_t *opts)
{
    cx_arena_init(&d->arena, NULL, (size_t)16 << 20);
    cx_error_clear(&d->err);
    d->msg = NULL;
    d->rc = cx_from_json(meta, json, len, &d->arena, opts, &d->msg, &d->err);
    if (d->rc == 0)
        assert_non_null(d->msg);
    else
        assert_null(d->msg);
}

static void decode(decoded_t *d, const cx_msg_meta_t *meta, const char *json)
{
    decode_opts(d, meta, json, strlen(json), NULL);
}

/* Decodes json and checks the error code and path. */
static void expect_error(const cx_msg_meta_t *meta, const char *json, int code, const char *path)
{
    decoded_t d;
    decode(&d, meta, json);
    if (d.rc != code || strcmp(d.err.path, path) != 0)
        fail_msg("%s: got %s at '%s' (%s), want %s at '%s'", json, cx_err_name(d.rc), d.err.path,
                 d.err.message, cx_err_name(code), path);
    assert_int_equal(d.err.code, code);
    cx_arena_release(&d.arena);
}

#define EVENT (&cx_calendar_calendar_event_meta)
#define ATTACHMENT (&cx_common_attachment_meta)

static void test_malformed_json_is_ejson_with_path(void **state)
{
    (void)state;
    expect_error(EVENT, "", CX_EJSON, "");
    expect_error(EVENT, "   ", CX_EJSON, "");
    expect_error(EVENT, "{", CX_EJSON, "");
    expect_error(EVENT, "{\"summary\":\"a\",}", CX_EJSON, "");
    expect_error(EVENT, "{\"summary\" \"a\"}", CX_EJSON, "");
    expect_error(EVENT, "{\"summary\":\"a\"} x", CX_EJSON, "");
    expect_error(EVENT, "{\"summary\":\"a\"}{}", CX_EJSON, "");
    expect_error(EVENT, "{'summary':1}", CX_EJSON, "");
    expect_error(EVENT, "{\"attendees\":[{\"email\":\"a\"},{\"email\" 1}]}", CX_EJSON,
                 "attendees[1]");
    expect_error(EVENT, "{\"attendees\":[{},{},{\"email\":\"a\\x\"}]}", CX_EJSON,
                 "attendees[2].email");
    expect_error(EVENT, "{\"attendees\":[{}", CX_EJSON, "attendees");
    expect_error(EVENT, "{\"summary\":\"a\nb\"}", CX_EJSON, "summary");
    expect_error(EVENT, "{\"sequence\":01}", CX_EJSON, "");
    expect_error(EVENT, "{\"sequence\":-}", CX_EJSON, "sequence");
    expect_error(EVENT, "{\"sequence\":1.}", CX_EJSON, "sequence");
    expect_error(EVENT, "{\"sequence\":tru}", CX_EJSON, "sequence");
    expect_error(EVENT, "{\"summary\":\"abc", CX_EJSON, "summary");
}

static void test_wrong_json_type_is_etype_with_path(void **state)
{
    (void)state;
    expect_error(EVENT, "[]", CX_ETYPE, "");
    expect_error(EVENT, "\"x\"", CX_ETYPE, "");
    expect_error(EVENT, "{\"attendees\":[{},{},{\"email\":5}]}", CX_ETYPE, "attendees[2].email");
    expect_error(EVENT, "{\"attendees\":{}}", CX_ETYPE, "attendees");
    expect_error(EVENT, "{\"attendees\":[null]}", CX_ETYPE, "attendees[0]");
    expect_error(EVENT, "{\"organizer\":\"x\"}", CX_ETYPE, "organizer");
    expect_error(EVENT, "{\"sequence\":true}", CX_ETYPE, "sequence");
    expect_error(EVENT, "{\"sequence\":\"12x\"}", CX_ETYPE, "sequence");
    expect_error(EVENT, "{\"endTimeUnspecified\":1}", CX_ETYPE, "endTimeUnspecified");
    expect_error(EVENT, "{\"endTimeUnspecified\":\"true\"}", CX_ETYPE, "endTimeUnspecified");
    expect_error(EVENT, "{\"created\":1}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-02-30T00:00:00Z\"}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-01-01 00:00:00Z\"}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-01-01T00:00:00\"}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-01-01T00:00:00.1234567890Z\"}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-01-01T24:00:00Z\"}", CX_ETYPE, "created");
    expect_error(EVENT, "{\"created\":\"2020-01-01T00:00:60Z\"}", CX_ETYPE, "created");
}

static void test_unknown_field_rejected_unless_lenient(void **state)
{
    (void)state;
    const char *json = "{\"summary\":\"s\",\"attendees\":[{\"email\":\"a@b.c\","
                       "\"bogus\":{\"x\":[1,2.5e3,\"\\u00e9\",true,false,null,{}]}}],"
                       "\"alsoBogus\":[],\"sequence\":3}";
    expect_error(EVENT, json, CX_EUNKNOWN_FIELD, "attendees[0].bogus");
    expect_error(EVENT, "{\"Summary\":\"s\"}", CX_EUNKNOWN_FIELD, "Summary");
    expect_error(EVENT, "{\"\":1}", CX_EUNKNOWN_FIELD, "");
    cx_json_options_t lenient = {1, 0, 0};
    decoded_t d;
    decode_opts(&d, EVENT, json, strlen(json), &lenient);
    assert_int_equal(d.rc, 0);
    const Cx__Calendar__V1__CalendarEvent *ev = (const void *)d.msg;
    assert_string_equal(ev->summary, "s");
    assert_int_equal(ev->n_attendees, 1);
    assert_string_equal(ev->attendees[0]->email, "a@b.c");
    assert_int_equal(ev->sequence, 3);
    cx_arena_release(&d.arena);
    /* Skipped values are still checked: syntax, UTF-8, depth. */
    const char *broken[] = {"{\"bogus\":[1,}", "{\"bogus\":{\"a\" 1}}", "{\"bogus\":\"\xff\"}",
                            "{\"bogus\":01}", "{\"bogus\":nul}"};
    const int codes[] = {CX_EJSON, CX_EJSON, CX_EUTF8, CX_EJSON, CX_EJSON};
    /* "01" is a complete 0 followed by garbage the object sees: no longer inside bogus. */
    const char *paths[] = {"bogus", "bogus", "bogus", "", "bogus"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        decode_opts(&d, EVENT, broken[i], strlen(broken[i]), &lenient);
        assert_int_equal(d.rc, codes[i]);
        assert_string_equal(d.err.path, paths[i]);
        cx_arena_release(&d.arena);
    }
    /* An unknown enum name is dropped too, and only when lenient. */
    expect_error(EVENT, "{\"status\":\"EVENT_STATUS_NOPE\"}", CX_ERANGE, "status");
    const char *en = "{\"status\":\"EVENT_STATUS_NOPE\",\"summary\":\"x\"}";
    decode_opts(&d, EVENT, en, strlen(en), &lenient);
    assert_int_equal(d.rc, 0);
    assert_int_equal(((const Cx__Calendar__V1__CalendarEvent *)(const void *)d.msg)->status, 0);
    cx_arena_release(&d.arena);
}

static void test_overlong_string_decodes_and_fails_validation(void **state)
{
    (void)state;
    /* Length rules are validation's business: the reader keeps what it was given. */
    char json[1024];
    char name[400];
    memset(name, 'a', 321);
    name[321] = '\0';
    snprintf(json, sizeof json, "{\"email\":\"%s@example.com\"}", name);
    decoded_t d;
    decode(&d, &cx_calendar_organizer_meta, json);
    assert_int_equal(d.rc, 0);
    cx_violation_t items[4];
    cx_violations_t v = {items, 4, 0};
    assert_int_equal(cx_validate(&cx_calendar_organizer_meta, d.msg, &v), CX_EVALIDATION);
    int found = 0;
    for (size_t i = 0; i < v.count && i < v.cap; i++)
        found |=
            strcmp(items[i].rule, "string.max_len") == 0 && strcmp(items[i].path, "email") == 0;
    assert_true(found);
    cx_arena_release(&d.arena);
}

static void test_deep_nesting_is_elimit(void **state)
{
    (void)state;
    char json[512];
    size_t n = 0;
    n += (size_t)snprintf(json, sizeof json, "{\"bogus\":");
    for (int i = 0; i < 100; i++)
        json[n++] = '[';
    for (int i = 0; i < 100; i++)
        json[n++] = ']';
    json[n++] = '}';
    json[n] = '\0';
    cx_json_options_t lenient = {1, 0, 0};
    decoded_t d;
    decode_opts(&d, EVENT, json, n, &lenient);
    assert_int_equal(d.rc, CX_ELIMIT);
    assert_string_equal(d.err.path, "bogus");
    cx_arena_release(&d.arena);
    /* Nesting of real messages counts too; the same document passes a larger limit. */
    const char *ev = "{\"event\":{\"attendees\":[{\"email\":\"a@b.c\"}]}}";
    cx_json_options_t shallow = {0, 3, 0};
    decode_opts(&d, &cx_calendar_calendar_event_created_meta, ev, strlen(ev), &shallow);
    assert_int_equal(d.rc, CX_ELIMIT);
    assert_string_equal(d.err.path, "event.attendees[0]");
    cx_arena_release(&d.arena);
    shallow.max_depth = 4;
    decode_opts(&d, &cx_calendar_calendar_event_created_meta, ev, strlen(ev), &shallow);
    assert_int_equal(d.rc, 0);
    cx_arena_release(&d.arena);
    /* A huge max_depth is capped rather than trusted with the stack. */
    char *deep = malloc(200002);
    assert_non_null(deep);
    memcpy(deep, "{\"bogus\":", 9);
    for (int i = 0; i < 100000; i++)
        deep[9 + i] = '[';
    cx_json_options_t huge = {1, UINT32_MAX, 0};
    decode_opts(&d, EVENT, deep, 9 + 100000, &huge);
    assert_int_equal(d.rc, CX_ELIMIT);
    cx_arena_release(&d.arena);
    free(deep);
}

static void test_max_bytes_is_elimit(void **state)
{
    (void)state;
    const char *json = "{\"summary\":\"0123456789\"}";
    cx_json_options_t small = {0, 0, 10};
    decoded_t d;
    decode_opts(&d, EVENT, json, strlen(json), &small);
    assert_int_equal(d.rc, CX_ELIMIT);
    assert_string_equal(d.err.path, "");
    cx_arena_release(&d.arena);
}

static void test_invalid_utf8_is_eutf8(void **state)
{
    (void)state;
    expect_error(EVENT, "{\"summary\":\"\xff\"}", CX_EUTF8, "summary");
    expect_error(EVENT, "{\"summary\":\"\xc0\xaf\"}", CX_EUTF8, "summary");         /* overlong */
    expect_error(EVENT, "{\"summary\":\"\xe0\x80\xaf\"}", CX_EUTF8, "summary");     /* overlong */
    expect_error(EVENT, "{\"summary\":\"\xed\xa0\x80\"}", CX_EUTF8, "summary");     /* surrogate */
    expect_error(EVENT, "{\"summary\":\"\xf4\x90\x80\x80\"}", CX_EUTF8, "summary"); /* > U+10FFFF */
    expect_error(EVENT, "{\"summary\":\"\xe2\x82\"}", CX_EUTF8, "summary");         /* truncated */
    expect_error(EVENT, "{\"attendees\":[{\"displayName\":\"ok\xc3\"}]}", CX_EUTF8,
                 "attendees[0].displayName");
    expect_error(EVENT, "{\"summ\xff\":1}", CX_EUTF8, "");
    expect_error(EVENT, "{\"summary\":\"a\\u0000b\"}", CX_EUTF8, "summary");
}

static void test_lone_surrogate_is_eutf8(void **state)
{
    (void)state;
    expect_error(EVENT, "{\"summary\":\"\\ud800\"}", CX_EUTF8, "summary");
    expect_error(EVENT, "{\"summary\":\"\\udc00\\ud800\"}", CX_EUTF8, "summary");
    expect_error(EVENT, "{\"summary\":\"\\ud800\\u0041\"}", CX_EUTF8, "summary");
    expect_error(EVENT, "{\"summary\":\"\\ud800x\"}", CX_EUTF8, "summary");
    decoded_t d;
    decode(&d, EVENT, "{\"summary\":\"\\ud83d\\ude00\\u00e9\\/\\\"\"}");
    assert_int_equal(d.rc, 0);
    assert_string_equal(((const Cx__Calendar__V1__CalendarEvent *)(const void *)d.msg)->summary,
                        "\xf0\x9f\x98\x80\xc3\xa9/\"");
    cx_arena_release(&d.arena);
}

static void test_duplicate_field_is_ejson(void **state)
{
    (void)state;
    expect_error(EVENT, "{\"summary\":\"a\",\"summary\":\"b\"}", CX_EJSON, "summary");
    expect_error(EVENT, "{\"calendarId\":\"a\",\"calendar_id\":\"b\"}", CX_EJSON, "calendar_id");
    expect_error(EVENT, "{\"summary\":null,\"summary\":\"b\"}", CX_EJSON, "summary");
    expect_error(EVENT, "{\"attendees\":[{\"email\":\"a\",\"email\":\"a\"}]}", CX_EJSON,
                 "attendees[0].email");
    /* Two members of one oneof. */
    expect_error(&cx_calendar_event_time_meta,
                 "{\"date\":\"2024-01-01\",\"dateTime\":\"2024-01-01T00:00:00Z\"}", CX_EJSON,
                 "dateTime");
    decoded_t d;
    decode(&d, &cx_calendar_event_time_meta,
           "{\"date\":null,\"dateTime\":\"1970-01-01T00:00:00Z\"}");
    assert_int_equal(d.rc, 0);
    cx_arena_release(&d.arena);
}

static void test_integer_ranges(void **state)
{
    (void)state;
    expect_error(ATTACHMENT, "{\"sizeBytes\":\"18446744073709551616\"}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":18446744073709551616}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":99999999999999999999999}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":1e20}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":\"-1\"}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":1.5}", CX_ERANGE, "sizeBytes");
    expect_error(ATTACHMENT, "{\"sizeBytes\":\" 1\"}", CX_ETYPE, "sizeBytes");
    expect_error(EVENT, "{\"sequence\":2147483648}", CX_ERANGE, "sequence");
    expect_error(EVENT, "{\"sequence\":-2147483649}", CX_ERANGE, "sequence");
    expect_error(EVENT, "{\"sequence\":1e-1}", CX_ERANGE, "sequence");
    const struct {
        const char *json;
        uint64_t want;
    } ok[] = {
        {"{\"sizeBytes\":\"18446744073709551615\"}", UINT64_MAX},
        {"{\"sizeBytes\":18446744073709551615}", UINT64_MAX},
        {"{\"sizeBytes\":1.8446744073709551615e19}", UINT64_MAX},
        {"{\"sizeBytes\":\"1e2\"}", 100},
        {"{\"sizeBytes\":1.0}", 1},
        {"{\"sizeBytes\":-0}", 0},
        {"{\"sizeBytes\":12300e-2}", 123},
        {"{\"sizeBytes\":0e999999999999}", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        decoded_t d;
        decode(&d, ATTACHMENT, ok[i].json);
        assert_int_equal(d.rc, 0);
        assert_true(((const Cx__Common__V1__Attachment *)(const void *)d.msg)->size_bytes ==
                    ok[i].want);
        cx_arena_release(&d.arena);
    }
    const struct {
        const char *json;
        int64_t want;
    } s64[] = {
        {"{\"amount1000\":\"-9223372036854775808\"}", INT64_MIN},
        {"{\"amount1000\":-9223372036854775808}", INT64_MIN},
        {"{\"amount_1000\":\"9223372036854775807\"}", INT64_MAX},
        {"{\"amount1000\":-1e3}", -1000},
    };
    for (size_t i = 0; i < sizeof s64 / sizeof s64[0]; i++) {
        decoded_t d;
        decode(&d, &cx_messaging_template_currency_meta, s64[i].json);
        if (d.rc != 0)
            fail_msg("%s: %s %s", s64[i].json, cx_err_name(d.rc), d.err.message);
        assert_true(
            ((const Cx__Messaging__V1__TemplateCurrency *)(const void *)d.msg)->amount_1000 ==
            s64[i].want);
        cx_arena_release(&d.arena);
    }
    expect_error(&cx_messaging_template_currency_meta, "{\"amount1000\":\"9223372036854775808\"}",
                 CX_ERANGE, "amount1000");
    expect_error(&cx_messaging_template_currency_meta, "{\"amount1000\":-9223372036854775809}",
                 CX_ERANGE, "amount1000");
}

static void test_arena_limit_is_enospc(void **state)
{
    (void)state;
    char json[4096];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"attendees\":[");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"email\":\"person%d@example.com\"}",
                              i ? "," : "", i);
    n += (size_t)snprintf(json + n, sizeof json - n, "]}");
    int saw_enospc = 0, saw_ok = 0;
    for (size_t limit = 64; limit <= 32768; limit += 64) {
        cx_arena_t a;
        cx_arena_init(&a, NULL, limit);
        cx_error_t err;
        cx_error_clear(&err);
        ProtobufCMessage *m = NULL;
        int rc = cx_from_json(EVENT, json, n, &a, NULL, &m, &err);
        assert_true(a.used <= limit && a.reserved <= limit);
        if (rc == CX_ENOSPC) {
            saw_enospc = 1;
            assert_int_equal(err.code, CX_ENOSPC);
            assert_null(m);
        } else {
            assert_int_equal(rc, 0);
            saw_ok = 1;
        }
        cx_arena_release(&a);
    }
    assert_true(saw_enospc && saw_ok);
    /* The error names where the decoder was. */
    cx_arena_t a;
    cx_arena_init(&a, NULL, 2048);
    cx_error_t err;
    cx_error_clear(&err);
    ProtobufCMessage *m = NULL;
    assert_int_equal(cx_from_json(EVENT, json, n, &a, NULL, &m, &err), CX_ENOSPC);
    assert_true(strncmp(err.path, "attendees", 9) == 0);
    cx_arena_release(&a);
}

static void *failing_alloc(void *ud, size_t size)
{
    (void)ud;
    (void)size;
    return NULL;
}

static void test_failing_allocator_is_enomem(void **state)
{
    (void)state;
    cx_allocator_t al = {failing_alloc, NULL, NULL};
    cx_arena_t a;
    cx_arena_init(&a, &al, 1 << 20);
    cx_error_t err;
    cx_error_clear(&err);
    ProtobufCMessage *m = NULL;
    assert_int_equal(cx_from_json(EVENT, "{}", 2, &a, NULL, &m, &err), CX_ENOMEM);
    cx_arena_release(&a);
}

static void test_every_prefix_of_a_document_is_rejected(void **state)
{
    (void)state;
    const char *json =
        "{\"calendarId\":\"c\\u00e9\",\"status\":\"EVENT_STATUS_CONFIRMED\",\"sequence\":7,"
        "\"start\":{\"dateTime\":\"1972-01-01T10:00:20.021+01:00\"},\"attendees\":[{\"email\":"
        "\"a@b.c\",\"responseStatus\":2,\"self\":true},{\"displayName\":\"\xf0\x9f\x98\x80\"}],"
        "\"endTimeUnspecified\":false,\"recurrence\":[\"RRULE:FREQ=DAILY\",\"\"]}";
    size_t len = strlen(json);
    decoded_t d;
    decode_opts(&d, EVENT, json, len, NULL);
    if (d.rc != 0)
        fail_msg("%s at %s: %s", cx_err_name(d.rc), d.err.path, d.err.message);
    cx_arena_release(&d.arena);
    for (size_t n = 0; n < len; n++) {
        decode_opts(&d, EVENT, json, n, NULL);
        assert_int_not_equal(d.rc, 0);
        cx_arena_release(&d.arena);
    }
}

static void test_null_means_default(void **state)
{
    (void)state;
    decoded_t d;
    decode(&d, EVENT,
           "{\"summary\":null,\"attendees\":null,\"organizer\":null,\"sequence\":null,"
           "\"created\":null,\"status\":null,\"start\":{\"date\":null}}");
    assert_int_equal(d.rc, 0);
    const Cx__Calendar__V1__CalendarEvent *ev = (const void *)d.msg;
    assert_string_equal(ev->summary, "");
    assert_int_equal(ev->n_attendees, 0);
    assert_null(ev->organizer);
    assert_null(ev->created);
    assert_non_null(ev->start);
    assert_int_equal(ev->start->value_case, CX__CALENDAR__V1__EVENT_TIME__VALUE__NOT_SET);
    cx_arena_release(&d.arena);
}

static void test_timestamps_with_offsets_and_fractions(void **state)
{
    (void)state;
    const struct {
        const char *text;
        int64_t seconds;
        int32_t nanos;
    } cases[] = {
        {"1972-01-01T10:00:20.021Z", 63108020, 21000000},
        {"1972-01-01T10:00:20Z", 63108020, 0},
        {"1972-01-01T11:30:20.1+01:30", 63108020, 100000000},
        {"1972-01-01t05:00:20.123456789-05:00", 63108020, 123456789},
        {"1970-01-01T00:00:00.000001z", 0, 1000},
        {"0001-01-01T00:00:00Z", INT64_C(-62135596800), 0},
        {"9999-12-31T23:59:59.999999999Z", INT64_C(253402300799), 999999999},
        {"2000-02-29T00:00:00Z", 951782400, 0},
        {"1969-12-31T23:59:59.5Z", -1, 500000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"created\":\"%s\"}", cases[i].text);
        decoded_t d;
        decode(&d, EVENT, json);
        if (d.rc != 0)
            fail_msg("%s: %s", cases[i].text, d.err.message);
        const Cx__Calendar__V1__CalendarEvent *ev = (const void *)d.msg;
        assert_true(ev->created->seconds == cases[i].seconds);
        assert_int_equal(ev->created->nanos, cases[i].nanos);
        cx_arena_release(&d.arena);
    }
    expect_error(EVENT, "{\"created\":\"0000-12-31T23:59:59Z\"}", CX_ERANGE, "created");
    expect_error(EVENT, "{\"created\":\"0001-01-01T00:00:00+00:01\"}", CX_ERANGE, "created");
    expect_error(EVENT, "{\"created\":\"9999-12-31T23:59:59-00:01\"}", CX_ERANGE, "created");
    expect_error(EVENT, "{\"created\":\"2001-02-29T00:00:00Z\"}", CX_ETYPE, "created");
}

static void test_floats_and_bytes_in_every_accepted_form(void **state)
{
    (void)state;
    const char *json = "{\"fFloat\":\"Infinity\",\"fDouble\":\"-Infinity\",\"rFloat\":[\"NaN\","
                       "1.5,\"2.5\",-0,3e38,1e-50],\"fBytes\":\"+/+/\",\"rBytes\":[\"-_-_\","
                       "\"YQ\",\"YQ==\",\"YWI\",\"YWI=\",\"\"],\"oBytes\":\"\",\"fEnum\":\"2\"}";
    decoded_t d;
    decode(&d, &all_types_meta, json);
    if (d.rc != 0)
        fail_msg("%s at %s: %s", cx_err_name(d.rc), d.err.path, d.err.message);
    const all_types_t *m = (const void *)d.msg;
    assert_true(isinf(m->f_float) && m->f_float > 0);
    assert_true(isinf(m->f_double) && m->f_double < 0);
    assert_int_equal(m->n_r_float, 6);
    assert_true(isnan(m->r_float[0]));
    assert_true(m->r_float[1] == 1.5f && m->r_float[2] == 2.5f);
    assert_true(m->r_float[3] == 0 && signbit(m->r_float[3]));
    assert_true(m->r_float[5] == 0);
    assert_int_equal(m->f_bytes.len, 3);
    assert_memory_equal(m->f_bytes.data, "\xfb\xff\xbf", 3);
    assert_int_equal(m->n_r_bytes, 6);
    assert_memory_equal(m->r_bytes[0].data, "\xfb\xff\xbf", 3);
    assert_int_equal(m->r_bytes[1].len, 1);
    assert_int_equal(m->r_bytes[2].len, 1);
    assert_int_equal(m->r_bytes[3].len, 2);
    assert_int_equal(m->r_bytes[4].len, 2);
    assert_int_equal(m->r_bytes[5].len, 0);
    assert_int_equal(m->which, 22);
    assert_int_equal(m->f_enum, 2);
    cx_arena_release(&d.arena);
    expect_error(&all_types_meta, "{\"fFloat\":3.5e38}", CX_ERANGE, "fFloat");
    expect_error(&all_types_meta, "{\"fFloat\":-3.4028236e38}", CX_ERANGE, "fFloat");
    decode(&d, &all_types_meta, "{\"fFloat\":-3.4028235e38}"); /* FLT_MAX's shortest text */
    assert_int_equal(d.rc, 0);
    assert_true(((const all_types_t *)(const void *)d.msg)->f_float == -FLT_MAX);
    cx_arena_release(&d.arena);
    expect_error(&all_types_meta, "{\"fDouble\":1e309}", CX_ERANGE, "fDouble");
    expect_error(&all_types_meta, "{\"fDouble\":\"nan\"}", CX_ETYPE, "fDouble");
    expect_error(&all_types_meta, "{\"fBytes\":\"YQ=\"}", CX_ETYPE, "fBytes");
    expect_error(&all_types_meta, "{\"fBytes\":\"Y\"}", CX_ETYPE, "fBytes");
    expect_error(&all_types_meta, "{\"fBytes\":\"YQ!=\"}", CX_ETYPE, "fBytes");
    expect_error(&all_types_meta, "{\"rBytes\":[\"YQ\",\"a b\"]}", CX_ETYPE, "rBytes[1]");
    expect_error(&all_types_meta, "{\"oFloat\":1,\"oBytes\":\"\"}", CX_EJSON, "oBytes");
    expect_error(&all_types_meta, "{\"fEnum\":2147483648}", CX_ERANGE, "fEnum");
}

/* ---- Writer: exact text ------------------------------------------------------------------ */

static void expect_json(const cx_msg_meta_t *meta, const ProtobufCMessage *m, const char *want)
{
    char mem[4096];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(cx_to_json(meta, m, &b), 0);
    assert_string_equal(b.data, want);
}

static void test_writer_text_matches_json_format(void **state)
{
    (void)state;
    all_types_t m;
    all_types_init(&m.base);
    expect_json(&all_types_meta, &m.base, "{}");
    Google__Protobuf__Timestamp ts[4];
    const int32_t nanos[] = {0, 21000000, 21000, 21};
    for (int i = 0; i < 4; i++) {
        google__protobuf__timestamp__init(&ts[i]);
        ts[i].seconds = 63108020;
        ts[i].nanos = nanos[i];
    }
    Google__Protobuf__Timestamp *tsp[4] = {&ts[0], &ts[1], &ts[2], &ts[3]};
    float rf[] = {0.1f, 1e-45f, FLT_MAX, -0.0f, 16777216.0f};
    int64_t r64[] = {INT64_MIN, -1};
    m.f_int32 = INT32_MIN;
    m.f_uint32 = UINT32_MAX;
    m.f_int64 = INT64_MIN;
    m.f_uint64 = UINT64_MAX;
    m.f_fixed64 = 1;
    m.f_float = NAN;
    m.f_double = 0.1;
    m.f_bool = 1;
    m.f_bytes.data = (uint8_t *)"\xfb\xff\xbf\x01";
    m.f_bytes.len = 4;
    m.f_string = "a\"\\/\n\x01\x1f\xc3\xa9\xe2\x80\xa8";
    m.f_enum = 77;
    m.f_ts = &ts[1];
    m.n_r_float = 5;
    m.r_float = rf;
    m.n_r_sint64 = 2;
    m.r_sint64 = r64;
    m.n_r_ts = 4;
    m.r_ts = tsp;
    m.which = 24;
    m.o_string = "";
    expect_json(
        &all_types_meta, &m.base,
        "{\"fInt32\":-2147483648,\"fUint32\":4294967295,"
        "\"fInt64\":\"-9223372036854775808\",\"fUint64\":\"18446744073709551615\","
        "\"fFixed64\":\"1\",\"fFloat\":\"NaN\",\"fDouble\":0.1,\"fBool\":true,"
        "\"fBytes\":\"+/+/AQ==\",\"fString\":\"a\\\"\\\\/\\n\\u0001\\u001f\xc3\xa9\xe2\x80\xa8\","
        "\"fEnum\":77,\"fTs\":\"1972-01-01T10:00:20.021Z\","
        "\"rFloat\":[0.1,1.4013e-45,3.4028235e+38,-0.0,16777216],"
        "\"rSint64\":[\"-9223372036854775808\",\"-1\"],"
        "\"rTs\":[\"1972-01-01T10:00:20Z\",\"1972-01-01T10:00:20.021Z\","
        "\"1972-01-01T10:00:20.000021Z\",\"1972-01-01T10:00:20.000000021Z\"],"
        "\"oString\":\"\"}");
    all_types_init(&m.base);
    m.f_double = 1e21;
    m.f_float = -INFINITY;
    m.f_enum = 1;
    m.which = 23;
    m.o_float = 0;
    ts[0].seconds = INT64_C(-62135596800);
    m.f_ts = &ts[0];
    expect_json(&all_types_meta, &m.base,
                "{\"fFloat\":\"-Infinity\",\"fDouble\":1e+21,\"fEnum\":\"ACTOR_KIND_USER\","
                "\"fTs\":\"0001-01-01T00:00:00Z\",\"oFloat\":0}");
    /* Timestamps without a JSON form are refused, and nothing is left in the buffer. */
    ts[0].seconds = INT64_C(253402300800);
    char mem[256];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(cx_to_json(&all_types_meta, &m.base, &b), CX_ERANGE);
    assert_int_equal(b.len, 0);
    ts[0].seconds = 0;
    ts[0].nanos = 1000000000;
    assert_int_equal(cx_to_json(&all_types_meta, &m.base, &b), CX_ERANGE);
    /* Too small a buffer: CX_ENOSPC, nothing half-written. */
    ts[0].nanos = 0;
    cx_buf_init_fixed(&b, mem, 20);
    assert_int_equal(cx_to_json(&all_types_meta, &m.base, &b), CX_ENOSPC);
    assert_int_equal(b.len, 0);
}

static void test_writer_appends_and_checks_arguments(void **state)
{
    (void)state;
    Cx__Common__V1__KeyValue kv;
    cx__common__v1__key_value__init(&kv);
    kv.key = "k";
    char mem[64];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_buf_puts(&b, "x=");
    assert_int_equal(cx_to_json(&cx_common_key_value_meta, &kv.base, &b), 0);
    assert_string_equal(b.data, "x={\"key\":\"k\"}");
    assert_int_equal(cx_to_json(&cx_common_actor_ref_meta, &kv.base, &b), CX_EINVAL);
    assert_int_equal(cx_to_json(NULL, &kv.base, &b), CX_EINVAL);
    assert_int_equal(
        cx_to_json_redacted(&cx_common_key_value_meta, &kv.base, CX_REDACT_PSEUDONYMIZE, NULL, &b),
        CX_EINVAL);
    assert_int_equal(
        cx_to_json_redacted(&cx_common_key_value_meta, &kv.base, (cx_redact_mode_t)0, NULL, &b),
        CX_EINVAL);
    decoded_t d;
    d.msg = (ProtobufCMessage *)&kv; /* must be reset to NULL on failure */
    cx_arena_init(&d.arena, NULL, 1024);
    assert_int_equal(cx_from_json(NULL, "{}", 2, &d.arena, NULL, &d.msg, NULL), CX_EINVAL);
    assert_null(d.msg);
    cx_arena_release(&d.arena);
}

/* ---- Redaction --------------------------------------------------------------------------- */

#define PHONE "+14155550123"
#define EMAIL "jane.doe@example.com"
#define NAME "Jane Doe"
#define CONTENT "Meet me at the Blue Bottle at noon"
#define LATITUDE 37.7749

static const char *pii_value(uint8_t pii)
{
    switch (pii) {
    case CX_PII_PHONE:
        return PHONE;
    case CX_PII_EMAIL:
        return EMAIL;
    case CX_PII_NAME:
        return NAME;
    default:
        return CONTENT;
    }
}

/* Every PII-classed string (and double) in the tree gets the known value of its class;
 * everything else stays empty so it cannot carry one of them. */
static void fill_pii(cx_arena_t *a, const cx_msg_meta_t *meta, ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = meta->desc;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const cx_field_meta_t *fm = &meta->fields[i];
        void *p = (char *)m + fd->offset;
        int rep = fd->label == PROTOBUF_C_LABEL_REPEATED;
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(uint32_t *)((char *)m + fd->quantifier_offset) != 0)
                continue;
        }
        int set = 0;
        if (fd->type == PROTOBUF_C_TYPE_STRING && fm->pii != CX_PII_NONE) {
            const char *v = pii_value(fm->pii);
            if (rep) {
                char **items = arena_new(a, 2 * sizeof *items);
                items[0] = items[1] = (char *)v;
                *(char ***)p = items;
                *(size_t *)((char *)m + fd->quantifier_offset) = 2;
            } else {
                *(const char **)p = v;
            }
            set = 1;
        } else if (fd->type == PROTOBUF_C_TYPE_DOUBLE && fm->pii != CX_PII_NONE && !rep) {
            *(double *)p = LATITUDE;
            set = 1;
        } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE && !(fm->flags & CX_F_TIMESTAMP) &&
                   depth < 3) {
            size_t n = rep ? 2 : 1;
            ProtobufCMessage **items = arena_new(a, n * sizeof *items);
            for (size_t k = 0; k < n; k++) {
                items[k] = arena_new(a, fm->msg->desc->sizeof_message);
                protobuf_c_message_init(fm->msg->desc, items[k]);
                fill_pii(a, fm->msg, items[k], depth + 1);
            }
            if (rep) {
                *(ProtobufCMessage ***)p = items;
                *(size_t *)((char *)m + fd->quantifier_offset) = n;
            } else {
                *(ProtobufCMessage **)p = items[0];
            }
            set = 1;
        }
        if (set && (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            *(uint32_t *)((char *)m + fd->quantifier_offset) = fd->id;
    }
}

static void add_form(char forms[][160], size_t *n, const char *s)
{
    snprintf(forms[(*n)++], 160, "%s", s);
}

static void percent_encode(const char *s, char *out, int plus_for_space)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *out++ = (char)c;
        } else if (c == ' ' && plus_for_space) {
            *out++ = '+';
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
}

static void base64_encode(const char *s, char *out, int url)
{
    const char *tab = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    /* Without padding, the prefix is what matters: drop '='. */
    while (o > 0 && out[o - 1] == '=')
        out[--o] = '\0';
}

/* Every way a value could leak: plain, JSON-escaped (incl. \u escapes of every character),
 * percent-encoded (with %20 and with '+'), base64 (standard, URL-safe), with and without '+'. */
static size_t leak_forms(const char *value, char forms[][160])
{
    size_t n = 0;
    const char *variants[2] = {value, value[0] == '+' ? value + 1 : NULL};
    for (int v = 0; v < 2 && variants[v]; v++) {
        const char *s = variants[v];
        char buf[160];
        add_form(forms, &n, s);
        size_t k = 0;
        for (const char *c = s; *c && k + 7 < sizeof buf; c++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "\\u%04x", (unsigned char)*c);
        add_form(forms, &n, buf);
        k = 0;
        for (const char *c = s; *c && k + 3 < sizeof buf; c++) {
            if (*c == '/')
                buf[k++] = '\\';
            buf[k++] = *c;
        }
        buf[k] = '\0';
        add_form(forms, &n, buf);
        percent_encode(s, buf, 0);
        add_form(forms, &n, buf);
        percent_encode(s, buf, 1);
        add_form(forms, &n, buf);
        base64_encode(s, buf, 0);
        add_form(forms, &n, buf);
        base64_encode(s, buf, 1);
        add_form(forms, &n, buf);
    }
    return n;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] &&
               (p[i] == needle[i] ||
                ((p[i] | 32) == (needle[i] | 32) && (p[i] | 32) >= 'a' && (p[i] | 32) <= 'z')))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

static void assert_no_pii(const char *json, const char *what)
{
    const char *values[] = {PHONE, EMAIL, NAME, CONTENT, "37.7749", "Jane", "jane.doe"};
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
        char forms[16][160];
        size_t n = leak_forms(values[v], forms);
        for (size_t i = 0; i < n; i++)
            if (strstr(json, forms[i]) != NULL || (v < 4 && contains_ci(json, forms[i])))
                fail_msg("%s leaks '%s' as '%s':\n%s", what, values[v], forms[i], json);
    }
}

static const unsigned char TEST_KEY[] = "test-pseudonym-key-0123456789abcdef";
static const cx_keyring_t TEST_KEYRING = {TEST_KEY, sizeof TEST_KEY - 1};

/* Bits of the known values a filled message must show in plain JSON. */
enum { HAS_PHONE = 1, HAS_EMAIL = 2, HAS_NAME = 4, HAS_CONTENT = 8 };

static void redact_and_check(const cx_msg_meta_t *meta, unsigned expect)
{
    static const struct {
        unsigned bit;
        const char *value, *mask;
    } known[] = {
        {HAS_PHONE, PHONE, "\"***0123\""},
        {HAS_EMAIL, EMAIL, "\"j***@example.com\""},
        {HAS_NAME, NAME, "\"[redacted]\""},
        {HAS_CONTENT, CONTENT, "\"[redacted]\""},
    };
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 24);
    ProtobufCMessage *m = arena_new(&a, meta->desc->sizeof_message);
    protobuf_c_message_init(meta->desc, m);
    fill_pii(&a, meta, m, 0);
    cx_buf_t plain, masked, pseudo;
    cx_buf_init(&plain, 1 << 24);
    cx_buf_init(&masked, 1 << 24);
    cx_buf_init(&pseudo, 1 << 24);
    assert_int_equal(cx_to_json(meta, m, &plain), 0);
    assert_int_equal(cx_to_json_redacted(meta, m, CX_REDACT_MASK, NULL, &masked), 0);
    assert_int_equal(cx_to_json_redacted(meta, m, CX_REDACT_PSEUDONYMIZE, &TEST_KEYRING, &pseudo),
                     0);
    char what[160];
    snprintf(what, sizeof what, "%s masked", meta->full_name);
    assert_no_pii(masked.data, what);
    snprintf(what, sizeof what, "%s pseudonymised", meta->full_name);
    assert_no_pii(pseudo.data, what);
    /* Where a value was in the plain JSON, its mask and its pseudonym take its place. */
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int present = strstr(plain.data, known[i].value) != NULL;
        if ((expect & known[i].bit) && !present)
            fail_msg("%s: the filled message has no '%s'", meta->full_name, known[i].value);
        if (!present)
            continue;
        assert_non_null(strstr(masked.data, known[i].mask));
        char pn[17], want[32];
        assert_int_equal(cx_pseudonym(&TEST_KEYRING, known[i].value, strlen(known[i].value), pn),
                         0);
        snprintf(want, sizeof want, "\"pii:%s\"", pn);
        assert_non_null(strstr(pseudo.data, want));
    }
    cx_buf_free(&plain);
    cx_buf_free(&masked);
    cx_buf_free(&pseudo);
    cx_arena_release(&a);
}

static void test_redaction_leaks_no_pii_in_any_encoding(void **state)
{
    (void)state;
    redact_and_check(&cx_messaging_direct_message_meta,
                     HAS_PHONE | HAS_EMAIL | HAS_NAME | HAS_CONTENT);
    redact_and_check(&cx_email_email_message_meta, HAS_EMAIL | HAS_NAME | HAS_CONTENT);
    redact_and_check(&cx_calendar_calendar_event_meta, HAS_EMAIL | HAS_NAME | HAS_CONTENT);
    size_t n;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    for (size_t i = 0; i < n; i++)
        redact_and_check(all[i], 0);
}

static void test_redaction_masks_have_documented_shapes(void **state)
{
    (void)state;
    Cx__Common__V1__ActorRef actor;
    cx__common__v1__actor_ref__init(&actor);
    actor.id = PHONE;
    actor.phone = "+1 (415) 555-0123";
    actor.display_name = NAME;
    actor.username = "jd";
    char mem[512];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(
        cx_to_json_redacted(&cx_common_actor_ref_meta, &actor.base, CX_REDACT_MASK, NULL, &b), 0);
    assert_string_equal(b.data, "{\"id\":\"***0123\",\"phone\":\"***0123\","
                                "\"displayName\":\"[redacted]\",\"username\":\"[redacted]\"}");
    Cx__Email__V1__EmailAddress addr;
    cx__email__v1__email_address__init(&addr);
    const struct {
        const char *in, *out;
    } emails[] = {
        {EMAIL, "{\"address\":\"j***@example.com\"}"},
        {"\xc3\xa9mile@b\"c.d", "{\"address\":\"\xc3\xa9***@b\\\"c.d\"}"},
        {"no-at-sign", "{\"address\":\"***\"}"},
        {"@example.com", "{\"address\":\"***@example.com\"}"},
        {"a@b@example.com", "{\"address\":\"a***@example.com\"}"},
    };
    for (size_t i = 0; i < sizeof emails / sizeof emails[0]; i++) {
        addr.address = (char *)emails[i].in;
        cx_buf_reset(&b);
        assert_int_equal(
            cx_to_json_redacted(&cx_email_email_address_meta, &addr.base, CX_REDACT_MASK, NULL, &b),
            0);
        assert_string_equal(b.data, emails[i].out);
    }
    /* Pseudonyms: stable per key, different across keys, and HMAC-SHA256 underneath. */
    char p1[17], p2[17], p3[17];
    assert_int_equal(cx_pseudonym(&TEST_KEYRING, PHONE, strlen(PHONE), p1), 0);
    assert_int_equal(cx_pseudonym(&TEST_KEYRING, PHONE, strlen(PHONE), p2), 0);
    assert_string_equal(p1, p2);
    const cx_keyring_t other = {(const unsigned char *)"other", 5};
    assert_int_equal(cx_pseudonym(&other, PHONE, strlen(PHONE), p3), 0);
    assert_string_not_equal(p1, p3);
    const cx_keyring_t rfc = {(const unsigned char *)"key", 3};
    const char *fox = "The quick brown fox jumps over the lazy dog";
    assert_int_equal(cx_pseudonym(&rfc, fox, strlen(fox), p3), 0);
    assert_string_equal(p3, "f7bc83f430538424");
    assert_int_equal(cx_pseudonym(NULL, PHONE, strlen(PHONE), p3), CX_EINVAL);
    /* Non-string PII (a CONTENT-classed double) is replaced through its text form. */
    Cx__Messaging__V1__Location loc;
    cx__messaging__v1__location__init(&loc);
    loc.latitude = LATITUDE;
    cx_buf_reset(&b);
    assert_int_equal(
        cx_to_json_redacted(&cx_messaging_location_meta, &loc.base, CX_REDACT_MASK, NULL, &b), 0);
    assert_string_equal(b.data, "{\"latitude\":\"[redacted]\"}");
    cx_buf_reset(&b);
    assert_int_equal(cx_to_json_redacted(&cx_messaging_location_meta, &loc.base,
                                         CX_REDACT_PSEUDONYMIZE, &TEST_KEYRING, &b),
                     0);
    assert_int_equal(cx_pseudonym(&TEST_KEYRING, "37.7749", 7, p1), 0);
    char want[64];
    snprintf(want, sizeof want, "{\"latitude\":\"pii:%s\"}", p1);
    assert_string_equal(b.data, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_round_trips_of_every_message_type),
        cmocka_unit_test(test_malformed_json_is_ejson_with_path),
        cmocka_unit_test(test_wrong_json_type_is_etype_with_path),
        cmocka_unit_test(test_unknown_field_rejected_unless_lenient),
        cmocka_unit_test(test_overlong_string_decodes_and_fails_validation),
        cmocka_unit_test(test_deep_nesting_is_elimit),
        cmocka_unit_test(test_max_bytes_is_elimit),
        cmocka_unit_test(test_invalid_utf8_is_eutf8),
        cmocka_unit_test(test_lone_surrogate_is_eutf8),
        cmocka_unit_test(test_duplicate_field_is_ejson),
        cmocka_unit_test(test_integer_ranges),
        cmocka_unit_test(test_arena_limit_is_enospc),
        cmocka_unit_test(test_failing_allocator_is_enomem),
        cmocka_unit_test(test_every_prefix_of_a_document_is_rejected),
        cmocka_unit_test(test_null_means_default),
        cmocka_unit_test(test_timestamps_with_offsets_and_fractions),
        cmocka_unit_test(test_floats_and_bytes_in_every_accepted_form),
        cmocka_unit_test(test_writer_text_matches_json_format),
        cmocka_unit_test(test_writer_appends_and_checks_arguments),
        cmocka_unit_test(test_redaction_leaks_no_pii_in_any_encoding),
        cmocka_unit_test(test_redaction_masks_have_documented_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
