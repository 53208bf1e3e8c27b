/* Private: the job record, the bytes the runtime keeps in the queue, the schedule and the
 * dead-letter store for one item.
 *
 * Format v1: the magic "cxj1", then fields, each a tag byte, a 4-byte little-endian length and
 * that many bytes. Integers are decimal text. A reader skips tags it does not know, so a later
 * release may add fields and the previous one still reads its records after a rollback; a
 * record without the magic is refused. The event is the canonical message packed by protobuf-c
 * (compact, lossless, and unknown fields survive a round trip through an older release) with
 * its type's full name beside it; `cx dlq show` prints it as canonical JSON (cx_to_json).
 */
#ifndef CX_INBOUND_JOB_H
#define CX_INBOUND_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/dedupe_store.h"

/* flags */
#define CX__JOB_ADMITTED 1u /* a rate-limit slot is reserved for the next run: do not ask again */

typedef struct cx__job_s {
    const char *connector;
    const char *type; /* full name of the event's message */
    const char *capability;
    const char *tenant; /* NULL: not resolved (an invalid item) */
    const char *account;
    const char *key; /* dedupe key; NULL for an item that failed before it had one */
    const char *correlation_id;
    char token[CX_DEDUPE_TOKEN_SIZE]; /* the dedupe claim's token ("" when none) */
    uint32_t done_ttl_s;
    uint32_t attempt; /* handler runs so far */
    int64_t first_ms; /* first received, Unix ms */
    uint32_t flags;
    int last_error; /* CX_E* of the last failure, 0 */
    const unsigned char *event;
    size_t event_len;
    /* Dead letters only. */
    const char *id;
    const char *reason;
    const char *error_code;
    const char *error_class;
    const char *message;
    int64_t dead_ms;
} cx__job_t;

/* Appends the record of j to out. Returns 0 or the buffer's error. */
int cx__job_encode(const cx__job_t *j, cx_buf_t *out);

/* Decodes a record; strings and the event are copied into arena. Returns 0, CX_EMALFORMED,
 * CX_ENOSPC. */
int cx__job_decode(const unsigned char *p, size_t len, cx_arena_t *arena, cx__job_t *j);

#endif /* CX_INBOUND_JOB_H */
