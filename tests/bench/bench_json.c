/* JSON codec benchmark: prints figures, asserts nothing (see docs/benchmarks.md).
 *
 * For DirectMessage, EmailMessage and CalendarEvent (from the golden canonical fixtures):
 *   decode: cx_from_json vs jansson's bare parse (json_loadb + json_decref) of the same bytes;
 *   encode: cx_to_json vs building a jansson DOM from the same message and dumping it;
 *   binary: protobuf-c unpack / pack of the same message.
 *
 * usage: bench_json [FIXTURES_DIR] [SECONDS_PER_CASE]
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cx/cx.h"
#include "cx/schema.h"
#include "schema/access.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* A jansson DOM of msg: what a hand-written encoder on jansson would build. */
static json_t *dom(const cx_msg_meta_t *meta, const ProtobufCMessage *m);

static json_t *dom_value(const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm,
                         const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING:
        return json_string(*(const char *const *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(fd->descriptor, *(const int *)p);
        return ev ? json_string(ev->name) : json_integer(*(const int *)p);
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64: {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%" PRId64, *(const int64_t *)p);
        return json_string(tmp);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        if (fm->flags & CX_F_TIMESTAMP)
            return json_string("2026-11-29T10:15:30.250Z");
        return dom(fm->msg, sub);
    }
    default:
        return json_integer(*(const int32_t *)p);
    }
}

static json_t *dom(const cx_msg_meta_t *meta, const ProtobufCMessage *m)
{
    json_t *o = json_object();
    for (unsigned i = 0; i < meta->desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &meta->desc->fields[i];
        if (!cx__field_is_set(m, fd))
            continue;
        const cx_field_meta_t *fm = &meta->fields[i];
        if (cx__is_repeated(fd)) {
            json_t *a = json_array();
            for (size_t k = 0; k < cx__repeated_count(m, fd); k++)
                json_array_append_new(a, dom_value(fd, fm, cx__repeated_at(m, fd, k)));
            json_object_set_new(o, fm->json_name, a);
        } else {
            json_object_set_new(o, fm->json_name, dom_value(fd, fm, cx__field_ptr(m, fd)));
        }
    }
    return o;
}

typedef struct {
    const char *label;
    double ns;
    double mbs;
} figure_t;

#define RUN(label_, bytes_, body_)                                                               \
    do {                                                                                         \
        long n_ = 0;                                                                             \
        double t0_ = now(), t1_;                                                                 \
        do {                                                                                     \
            for (int k_ = 0; k_ < 64; k_++) {                                                    \
                body_;                                                                           \
            }                                                                                    \
            n_ += 64;                                                                            \
            t1_ = now();                                                                         \
        } while (t1_ - t0_ < seconds);                                                           \
        double ns_ = (t1_ - t0_) * 1e9 / (double)n_;                                             \
        printf("  %-34s %9.0f ns/msg %9.1f MB/s\n", label_, ns_,                                 \
               (double)(bytes_) * (double)n_ / (t1_ - t0_) / 1e6);                               \
        last_ns = ns_;                                                                           \
    } while (0)

static void bench(const char *name, const cx_msg_meta_t *meta, const char *json, size_t len,
                  double seconds)
{
    double last_ns, ours_dec, jans_dec, ours_enc, jans_enc;
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 16u << 20);
    ProtobufCMessage *msg = NULL;
    cx_error_t err;
    if (cx_from_json(meta, json, len, &arena, NULL, &msg, &err) != 0) {
        fprintf(stderr, "%s: %s at %s\n", name, err.message, err.path);
        exit(1);
    }
    cx_buf_t out;
    cx_buf_init(&out, 16u << 20);
    cx_to_json(meta, msg, &out);
    size_t pbn = protobuf_c_message_get_packed_size(msg);
    uint8_t *pb = malloc(pbn);
    protobuf_c_message_pack(msg, pb);
    printf("%s: %zu bytes JSON, %zu bytes protobuf\n", name, len, pbn);

    cx_arena_t a2;
    cx_arena_init(&a2, NULL, 16u << 20);
    RUN("cx_from_json", len, {
        ProtobufCMessage *m2;
        cx_from_json(meta, json, len, &a2, NULL, &m2, &err);
        cx_arena_release(&a2);
    });
    ours_dec = last_ns;
    RUN("jansson json_loadb (parse only)", len, {
        json_t *j = json_loadb(json, len, 0, NULL);
        json_decref(j);
    });
    jans_dec = last_ns;
    RUN("cx_to_json", out.len, {
        cx_buf_reset(&out);
        cx_to_json(meta, msg, &out);
    });
    ours_enc = last_ns;
    RUN("jansson build DOM + json_dumpb", out.len, {
        json_t *j = dom(meta, msg);
        char tmp[65536];
        json_dumpb(j, tmp, sizeof tmp, JSON_COMPACT);
        json_decref(j);
    });
    jans_enc = last_ns;
    RUN("protobuf-c unpack", pbn, {
        ProtobufCMessage *m3 = protobuf_c_message_unpack(meta->desc, NULL, pbn, pb);
        protobuf_c_message_free_unpacked(m3, NULL);
    });
    RUN("protobuf-c pack", pbn, { protobuf_c_message_pack(msg, pb); });
    printf("  decode: cx / jansson parse = %.2fx time (target <= 1.5x)\n", ours_dec / jans_dec);
    printf("  encode: jansson DOM+dump / cx = %.2fx speed-up (target >= 2x)\n\n",
           jans_enc / ours_enc);
    free(pb);
    cx_buf_free(&out);
    cx_arena_release(&arena);
    cx_arena_release(&a2);
}

/* The JSON of a submessage field of a fixture (EmailMessage inside SendEmailCommand...). */
static char *sub_json(const char *dir, const char *outer, const char *field, const char **type,
                      size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, outer);
    size_t n;
    char *json = slurp(path, &n);
    if (!json)
        return NULL;
    const cx_msg_meta_t *meta = cx_schema_find(outer);
    cx_arena_t a;
    cx_arena_init(&a, NULL, 16u << 20);
    ProtobufCMessage *m;
    cx_error_t err;
    if (cx_from_json(meta, json, n, &a, NULL, &m, &err) != 0)
        return NULL;
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(meta->desc,
                                                                                          field);
    const cx_field_meta_t *fm = &meta->fields[fd - meta->desc->fields];
    cx_buf_t b;
    cx_buf_init(&b, 16u << 20);
    cx_to_json(fm->msg, *(const ProtobufCMessage *const *)cx__field_ptr(m, fd), &b);
    *type = fm->msg->full_name;
    *len = b.len;
    free(json);
    cx_arena_release(&a);
    return b.data; /* owned heap memory of the buffer */
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "fixtures/canonical";
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    printf("connectors %s JSON benchmark, %.1f s per case\n\n", cx_version_string(), seconds);
    const char *cases[][3] = {
        {"cx.messaging.v1.DirectMessage", NULL, NULL},
        {"cx.email.v1.SendEmailCommand", "message", NULL},
        {"cx.calendar.v1.CalendarEventCreated", "event", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *type = cases[i][0];
        size_t len;
        char *json;
        if (cases[i][1]) {
            json = sub_json(dir, cases[i][0], cases[i][1], &type, &len);
        } else {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s.json", dir, type);
            json = slurp(path, &len);
        }
        if (!json) {
            fprintf(stderr, "bench_json: cannot load %s from %s\n", cases[i][0], dir);
            return 1;
        }
        bench(type, cx_schema_find(type), json, len, seconds);
        free(json);
    }
    return 0;
}
