/* libFuzzer target for the proto3 JSON reader (and, behind it, validation and the writer).
 *
 * The first input byte picks the message type, so one corpus covers every domain; the rest is
 * the JSON document. A document that decodes must then validate without crashing, encode,
 * decode again from our own output and give the same message (compared by protobuf-c's binary
 * encoding), and encode in both redaction modes. Any broken invariant aborts.
 *
 *     clang: cmake -DCX_FUZZ=ON ...; ./fuzz_from_json tests/fuzz/corpus
 *     gcc:   cx_fuzz_replay tests/fuzz/corpus   (replays files, see replay_main.c)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/schema.h"

/* Small on purpose: arena exhaustion is one of the paths worth fuzzing. */
#define FUZZ_ARENA_LIMIT ((size_t)64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *pack_of(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b == NULL)
        abort();
    if (protobuf_c_message_pack(m, b) != *len)
        abort();
    return b;
}

/* The types this target decodes: every registered type, or with CX_FUZZ_DOMAIN ("messaging")
 * those of one domain (one fuzz target per domain). */
static const cx_msg_meta_t *const *fuzz_types(size_t *n)
{
#ifdef CX_FUZZ_DOMAIN
    static const cx_msg_meta_t *picked[512];
    static size_t n_picked;
    if (n_picked == 0) {
        size_t n_all;
        const cx_msg_meta_t *const *all = cx_schema_all(&n_all);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "cx.%s.v1.", CX_FUZZ_DOMAIN);
        for (size_t i = 0; i < n_all && n_picked < 512; i++)
            if (strncmp(all[i]->full_name, prefix, strlen(prefix)) == 0)
                picked[n_picked++] = all[i];
    }
    *n = n_picked;
    return picked;
#else
    return cx_schema_all(n);
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n_types;
    const cx_msg_meta_t *const *all = fuzz_types(&n_types);
    if (n_types == 0)
        return 0;
    const cx_msg_meta_t *meta = all[data[0] % n_types];
    cx_json_options_t opts = {(data[0] / n_types) & 1, 0, 0};
    const char *json = (const char *)data + 1;
    size_t len = size - 1;

    cx_arena_t arena;
    cx_arena_init(&arena, NULL, FUZZ_ARENA_LIMIT);
    cx_error_t err;
    cx_error_clear(&err);
    ProtobufCMessage *msg = NULL;
    int rc = cx_from_json(meta, json, len, &arena, &opts, &msg, &err);
    if (rc != 0) {
        /* Every failure is reported with a code and leaves no message behind. */
        if (msg != NULL || err.code != rc || arena.used > FUZZ_ARENA_LIMIT)
            abort();
        cx_arena_release(&arena);
        return 0;
    }

    cx_violation_t items[8];
    cx_violations_t v = {items, 8, 0};
    (void)cx_validate(meta, msg, &v);

    cx_buf_t out;
    /* Output can outgrow input (an enum number becomes its name): generous but bounded. */
    cx_buf_init(&out, 64 * len + 65536);
    if (cx_to_json(meta, msg, &out) != 0)
        abort();

    /* Our own output must read back to the same message, in a roomier arena. */
    cx_arena_t again_arena;
    cx_arena_init(&again_arena, NULL, (size_t)16 << 20);
    ProtobufCMessage *again = NULL;
    cx_error_clear(&err);
    if (cx_from_json(meta, out.data, out.len, &again_arena, NULL, &again, &err) != 0)
        abort();
    size_t la, lb;
    uint8_t *pa = pack_of(msg, &la), *pb = pack_of(again, &lb);
    if (la != lb || memcmp(pa, pb, la) != 0)
        abort();
    free(pa);
    free(pb);

    static const unsigned char key[] = "fuzz-key";
    const cx_keyring_t keyring = {key, sizeof key - 1};
    cx_buf_reset(&out);
    if (cx_to_json_redacted(meta, msg, CX_REDACT_MASK, NULL, &out) != 0)
        abort();
    cx_buf_reset(&out);
    if (cx_to_json_redacted(meta, msg, CX_REDACT_PSEUDONYMIZE, &keyring, &out) != 0)
        abort();

    cx_buf_free(&out);
    cx_arena_release(&again_arena);
    cx_arena_release(&arena);
    return 0;
}
