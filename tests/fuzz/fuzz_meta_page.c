/* libFuzzer target for the Instagram and Messenger webhook parsers (adapters/instagram/,
 * adapters/messenger/): Instagram Messaging events and comments, Page messaging events and
 * leadgen changes, through the shared Messenger Platform event mapper
 * (adapters/messenger/messenger_events.c) and the Meta batch walk. Built once per connector:
 * CX_FUZZ_CONNECTOR is "instagram" or "messenger" and CX_FUZZ_ENTRY its entry function.
 *
 * The input is a request body. The parse must return 0, CX_EMALFORMED (a 400) or CX_ENOSPC
 * (the arena limit, kept small so exhaustion is fuzzed too), and never crash. Every event it
 * emits is either a per-item error (code set, no message) or a message of its declared type
 * that validates or not without crashing, yields a dedupe key or CX_EDEDUPE_KEY, and encodes
 * to proto3 JSON. Any broken invariant aborts.
 *
 *     clang: cmake -DCX_FUZZ=ON ...; ./fuzz_instagram -max_total_time=60 fixtures/instagram
 *     gcc:   fuzz_instagram_replay fixtures/instagram tests/fuzz/corpus_instagram
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/connector.h"
#include "cx/schema.h"
#include "instagram/instagram.h"
#include "messenger/messenger.h"

#define FUZZ_ARENA_LIMIT ((size_t)256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_event(const cx_event_t *ev, const cx_keyring_t *keyring)
{
    if (ev->error != 0) {
        if (ev->msg != NULL || ev->error >= 0 || ev->error_detail == NULL)
            abort();
        return;
    }
    if (ev->meta == NULL || ev->msg == NULL || ev->msg->descriptor != ev->meta->desc ||
        ev->account_id == NULL || ev->account_id[0] == '\0')
        abort();
    cx_violation_t vbuf[8];
    cx_violations_t v = {vbuf, 8, 0};
    int rc = cx_validate(ev->meta, ev->msg, &v);
    if (rc != 0 && rc != CX_EVALIDATION)
        abort();
    char kmem[1024];
    cx_buf_t kb;
    cx_buf_init_fixed(&kb, kmem, sizeof kmem);
    cx_error_t err;
    cx_error_clear(&err);
    rc = cx_dedupe_key(ev->meta, ev->msg, keyring, &kb, &err);
    if (rc != 0 && rc != CX_EDEDUPE_KEY && rc != CX_ENOSPC)
        abort();
    cx_buf_t jb;
    cx_buf_init(&jb, (size_t)16 << 20);
    if (cx_to_json(ev->meta, ev->msg, &jb) != 0)
        abort();
    cx_buf_free(&jb);
    /* The packed form must be computable (every required pointer set). */
    (void)protobuf_c_message_get_packed_size(ev->msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const cx_connector_t *c = CX_FUZZ_ENTRY();
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, FUZZ_ARENA_LIMIT);
    cx_ctx_t ctx = {NULL, CX_FUZZ_CONNECTOR, 1732871760, &arena};
    cx_request_t req = {"POST", "/webhook/" CX_FUZZ_CONNECTOR, "", NULL, 0, (const char *)data, size};
    cx_parse_out_t out = {NULL, 0, 0, &arena};
    cx_error_t err;
    cx_error_clear(&err);
    int rc = c->parse(c, &ctx, &req, &out, &err);
    if (rc != 0 && rc != CX_EMALFORMED && rc != CX_ENOSPC)
        abort();
    if (rc != 0 && err.code != rc)
        abort();
    if (rc == 0) {
        static const unsigned char key[] = "fuzz-pseudonym-key";
        cx_keyring_t keyring = {key, sizeof key - 1};
        for (size_t i = 0; i < out.n; i++)
            check_event(&out.events[i], &keyring);
    }
    cx_arena_release(&arena);
    return 0;
}
