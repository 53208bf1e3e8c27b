/* Shared by the dedupe store implementations (dedupe_embedded.c, dedupe_redis.c): argument
 * checks, the environment prefix and claim tokens, so both stores behave the same. */
#ifndef CX_STORES_DEDUPE_INTERNAL_H
#define CX_STORES_DEDUPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cx/dedupe_store.h"

/* Value format v1 (see cx/dedupe_store.h). */
#define CX__DEDUPE_V1_PROCESSING "v1|processing|"
#define CX__DEDUPE_V1_DONE "v1|done|"
#define CX__DEDUPE_TOKEN_LEN 32

/* Writes "cx:<environment>:dedupe:" into prefix (sizeof prefix == 96). Returns 0 or CX_EINVAL
 * when environment is NULL, empty, longer than 64 or not [A-Za-z0-9._-]. */
int cx__dedupe_prefix(const char *environment, char prefix[96], cx_error_t *err);

/* Checks a claim's arguments: items non-NULL when n > 0, n <= CX_DEDUPE_BATCH_MAX, ttl > 0,
 * every key non-NULL, non-empty and at most CX_DEDUPE_KEY_MAX bytes. Stores each key's length
 * in lens (n entries) when lens is not NULL. Returns 0 or CX_EINVAL (err->path "items[i].key"). */
int cx__dedupe_check_claim(const cx_dedupe_item_t *items, size_t n, uint32_t ttl_ms, size_t *lens,
                           cx_error_t *err);

/* Checks one item for complete/release: OWNED, a valid key and a 32-hex-digit token. Returns
 * 0 or CX_EINVAL (no error recorded: it is a per-item result). */
int cx__dedupe_check_owned(const cx_dedupe_item_t *item, size_t *keylen);

/* Checks a complete/release call: items non-NULL when n > 0, n <= CX_DEDUPE_BATCH_MAX. */
int cx__dedupe_check_batch(const cx_dedupe_item_t *items, size_t n, cx_error_t *err);

/* Writes n fresh claim tokens (32 hex digits and a NUL each) into items[i].token. Tokens are
 * unique across threads and processes: a random 64-bit process prefix (renewed after fork)
 * and a 64-bit counter. Returns 0 or CX_ECRYPTO when no random bytes are available.
 * Thread-safe. */
int cx__dedupe_new_tokens(cx_dedupe_item_t *items, size_t n, cx_error_t *err);

/* Sets every item's rc to code (complete/release failing as a whole). */
void cx__dedupe_set_rc(cx_dedupe_item_t *items, size_t n, int code);

/* Makes a Redis dedupe store run claim and complete as Lua scripts, as it does on its own
 * against a server older than Redis 7.0 (tests run the shared semantics through both paths). */
void cx__dedupe_redis_use_scripts(cx_dedupe_store_t *s);

#endif /* CX_STORES_DEDUPE_INTERNAL_H */
