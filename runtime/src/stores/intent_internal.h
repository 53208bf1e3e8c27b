/* Shared by the intent stores (intent_embedded.c, intent_redis.c) and the rate limiters:
 * key checks, prefixes, tokens and the v1 value codec, so every store writes and reads the
 * same bytes (cx/outbound.h documents the format). */
#ifndef CX_STORES_INTENT_INTERNAL_H
#define CX_STORES_INTENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cx/outbound.h"

/* Bytes of an encoded value's tail: code, status, id, provider code and result, with room. */
#define CX__INTENT_TAIL_MAX (CX_INTENT_RESULT_MAX + CX_INTENT_ID_MAX + CX_INTENT_CODE_MAX + 128)
/* Bytes of a whole encoded value. */
#define CX__INTENT_VALUE_MAX (CX__INTENT_TAIL_MAX + 128)
/* The value's state words. */
#define CX__INTENT_SENDING "sending"
#define CX__INTENT_DONE "done"
#define CX__INTENT_FAILED "failed"
#define CX__INTENT_IN_DOUBT "in_doubt"

/* Writes "cx:<environment>:<kind>:" into prefix (96 bytes). environment as for the dedupe
 * store ([A-Za-z0-9._-], 1..64). Returns 0 or CX_EINVAL. */
int cx__store_prefix(const char *environment, const char *kind, char prefix[96], cx_error_t *err);

/* Checks a key: non-NULL, non-empty, at most CX_DEDUPE_KEY_MAX bytes. Returns 0 (and its
 * length in *len) or CX_EINVAL (recorded in err with path "key"). */
int cx__intent_check_key(const char *key, size_t *len, cx_error_t *err);

/* A fresh claim token (32 hex digits + NUL). Returns 0 or CX_ECRYPTO. */
int cx__intent_new_token(char token[CX_DEDUPE_TOKEN_SIZE], cx_error_t *err);

/* The value word of a state ("sending", ...); NULL for NONE. */
const char *cx__intent_state_word(cx_intent_state_t state);

/* Encodes rec's tail ("<code>|<status>|<n>:<id>|<n>:<pcode>|<result>") into out (at least
 * CX__INTENT_TAIL_MAX bytes). Returns its length, or -1 when a field is too long. */
int cx__intent_encode_tail(const cx_intent_t *rec, char *out);

/* The tail of a `sending` value and of an `in_doubt` value made from an expired lease. */
#define CX__INTENT_SENDING_TAIL "0|0|0:|0:|"
#define CX__INTENT_DOUBT_TAIL "-27|0|0:|0:|"

/* Encodes a whole value "v1|<state>|<token>|<updated>|<lease>|<tail>" into out
 * (CX__INTENT_VALUE_MAX bytes). Returns its length or -1. */
int cx__intent_encode(const char *state_word, const char *token, int64_t updated_ms,
                      int64_t lease_ms, const char *tail, size_t tail_len, char *out);

/* Decodes a stored value into out (mine = 0). A value that does not parse (another format)
 * reads as IN_DOUBT with code CX_EIN_DOUBT and an empty token. */
void cx__intent_decode(const char *value, size_t len, cx_intent_t *out);

/* Clears out to state NONE. */
void cx__intent_none(cx_intent_t *out);

/* Unix time in ms (CLOCK_REALTIME). */
int64_t cx__intent_wall_ms(void);

#endif /* CX_STORES_INTENT_INTERNAL_H */
