/* Webhook signatures: HMAC-SHA256 in hex or base64, and Standard Webhooks v1.
 *
 * Step 2 of the inbound pipeline (ARCHITECTURE.md section 4): a connector's `verify` calls one
 * of these once per request and the runtime answers 401 on CX_EBAD_SIGNATURE, so the handler
 * never sees an unauthenticated body. Three schemes cover most providers:
 *
 *   - hex:    Meta `X-Hub-Signature-256: sha256=<64 hex digits>` (HMAC of the raw body);
 *   - base64: Shopify-style `X-...-Hmac-Sha256: <base64>` (HMAC of the raw body);
 *   - Standard Webhooks v1 (https://www.standardwebhooks.com/): `webhook-id`,
 *     `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64> ...]`, HMAC of
 *     `<id>.<timestamp>.<body>` under the key base64-encoded after `whsec_`, with a tolerance
 *     on the timestamp against replays.
 *
 * Rotation: every verify takes a cx_secret_pair_t, the current secret and, while a rotation is
 * under way, the previous one; a signature under either passes. MACs are compared in constant
 * time (CRYPTO_memcmp) after decoding, so hex is case-insensitive.
 *
 * Errors: a failed check returns CX_EBAD_SIGNATURE and says which check failed in err (missing
 * header, wrong prefix, bad length or encoding, mismatch, stale timestamp). The text never
 * holds a secret, the expected signature, or the received header value. A missing or malformed
 * secret is the operator's problem, not the sender's: CX_ECONFIG.
 *
 * All functions are reentrant and keep no global state: thread-safe.
 */
#ifndef CX_SIGNATURE_H
#define CX_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "cx/clock.h"
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes in an HMAC-SHA256. */
#define CX_HMAC_SHA256_SIZE 32
/* Characters of an HMAC-SHA256 in hex (without prefix or NUL). */
#define CX_SIGNATURE_HEX_LEN 64
/* Characters of an HMAC-SHA256 in padded base64 (without prefix or NUL). */
#define CX_SIGNATURE_BASE64_LEN 44
/* Characters of one Standard Webhooks entry, "v1," + base64 (without NUL). */
#define CX_STANDARD_WEBHOOKS_SIGNATURE_LEN (3 + CX_SIGNATURE_BASE64_LEN)
/* Default timestamp tolerance of Standard Webhooks, either way, in seconds. */
#define CX_STANDARD_WEBHOOKS_TOLERANCE_S 300
/* Largest Standard Webhooks key accepted, in decoded bytes (the spec uses 24 to 64). */
#define CX_STANDARD_WEBHOOKS_MAX_KEY 512

/* The secrets a verify accepts: current always, previous only during a rotation.
 * Caller-owned and only read. For the hex and base64 schemes the bytes are the HMAC key; for
 * Standard Webhooks they are the `whsec_<base64>` text (surrounding whitespace, such as the
 * newline of a secret file, is ignored). previous NULL or previous_len 0: no rotation. */
typedef struct cx_secret_pair_s {
    const unsigned char *current;
    size_t current_len;
    const unsigned char *previous; /* may be NULL */
    size_t previous_len;
} cx_secret_pair_t;

/* HMAC-SHA256 of data[0..len) under key[0..key_len) into out. key may be NULL when key_len is
 * 0, data may be NULL when len is 0. Returns 0, CX_EINVAL (NULL out, or NULL with a non-zero
 * length) or CX_ECRYPTO (OpenSSL failed). Thread-safe.
 *
 *     unsigned char mac[CX_HMAC_SHA256_SIZE];
 *     if (cx_hmac_sha256(key, key_len, body, body_len, mac) != 0) ...;
 */
CX_API int cx_hmac_sha256(const unsigned char *key, size_t key_len, const void *data, size_t len,
                          unsigned char out[CX_HMAC_SHA256_SIZE]);

/* Verifies header_value = prefix + hex(HMAC-SHA256(secret, body)) for the current or previous
 * secret. prefix (e.g. "sha256=") may be NULL or "" for none; it is matched ignoring ASCII
 * case, and so are the hex digits. Spaces and tabs around header_value are ignored.
 * All pointers are borrowed; header_value may be NULL (a missing header); body may be NULL when
 * len is 0; err may be NULL. Returns 0; CX_EBAD_SIGNATURE (header missing or empty, prefix
 * missing, not 64 hex digits, or no secret matches); CX_ECONFIG (no current secret);
 * CX_EINVAL; CX_ECRYPTO. Thread-safe.
 *
 *     rc = cx_signature_verify_hex(&secrets, req->body, req->body_len,
 *                                  cx_request_header(req, "X-Hub-Signature-256"), "sha256=", err);
 */
CX_API int cx_signature_verify_hex(const cx_secret_pair_t *secrets, const void *body, size_t len,
                                   const char *header_value, const char *prefix, cx_error_t *err);

/* Like cx_signature_verify_hex for prefix + base64(HMAC-SHA256(secret, body)): the standard
 * alphabet, padding optional; the value must decode to exactly 32 bytes. Same ownership,
 * return codes and thread safety.
 *
 *     rc = cx_signature_verify_base64(&secrets, req->body, req->body_len,
 *                                     cx_request_header(req, "X-Shopify-Hmac-Sha256"), NULL, err);
 */
CX_API int cx_signature_verify_base64(const cx_secret_pair_t *secrets, const void *body, size_t len,
                                      const char *header_value, const char *prefix,
                                      cx_error_t *err);

/* Writes prefix + lowercase hex(HMAC-SHA256(key, body)) and a NUL to out[0..cap): what
 * `cx replay` and tests send. prefix may be NULL; needs cap >= strlen(prefix) + 65.
 * Returns 0, CX_ENOSPC (out untouched but for a NUL when cap > 0), CX_EINVAL, CX_ECRYPTO.
 * Thread-safe.
 *
 *     char sig[80];
 *     cx_signature_sign_hex(key, key_len, body, len, "sha256=", sig, sizeof sig);
 */
CX_API int cx_signature_sign_hex(const unsigned char *key, size_t key_len, const void *body,
                                 size_t len, const char *prefix, char *out, size_t cap);

/* Like cx_signature_sign_hex with padded base64; needs cap >= strlen(prefix) + 45.
 *
 *     char sig[64];
 *     cx_signature_sign_base64(key, key_len, body, len, NULL, sig, sizeof sig);
 */
CX_API int cx_signature_sign_base64(const unsigned char *key, size_t key_len, const void *body,
                                    size_t len, const char *prefix, char *out, size_t cap);

/* Decodes a Standard Webhooks secret, `whsec_<base64>` (the prefix may be absent, as in the
 * reference libraries; surrounding whitespace is ignored), into key[0..cap) and *key_len.
 * Use it at start-up to refuse a bad secret before the first request. Returns 0, CX_ECONFIG
 * (empty, not base64, or longer than CX_STANDARD_WEBHOOKS_MAX_KEY), CX_ENOSPC (cap too small)
 * or CX_EINVAL. Thread-safe.
 *
 *     unsigned char key[CX_STANDARD_WEBHOOKS_MAX_KEY]; size_t n;
 *     if (cx_standard_webhooks_secret_decode(text, text_len, key, sizeof key, &n) != 0) ...;
 */
CX_API int cx_standard_webhooks_secret_decode(const unsigned char *secret, size_t secret_len,
                                              unsigned char *key, size_t cap, size_t *key_len);

/* Verifies a Standard Webhooks v1 request. secrets holds the `whsec_` texts (current, and
 * previous during a rotation). webhook_id, webhook_timestamp and webhook_signature are the
 * header values (NULL when absent). The timestamp must be decimal Unix seconds within
 * tolerance_s (0 means CX_STANDARD_WEBHOOKS_TOLERANCE_S) of cx_clock_now(clock), in either
 * direction; clock may be NULL for the wall clock. webhook_signature is one or more
 * space-separated `<version>,<base64>` entries: entries of other versions, and malformed ones,
 * are skipped; one v1 entry matching either secret is enough.
 * All pointers are borrowed; body may be NULL when len is 0; err may be NULL. Returns 0;
 * CX_EBAD_SIGNATURE (a header missing or empty, a malformed timestamp, a timestamp outside the
 * tolerance, no v1 entry, or no v1 entry matching); CX_ECONFIG (no current secret, or a secret
 * that is not `whsec_` + base64); CX_EINVAL; CX_ECRYPTO. Thread-safe when clock is.
 *
 *     rc = cx_standard_webhooks_verify(&secrets, id, ts, sig, req->body, req->body_len,
 *                                      NULL, 0, err);
 */
CX_API int cx_standard_webhooks_verify(const cx_secret_pair_t *secrets, const char *webhook_id,
                                       const char *webhook_timestamp, const char *webhook_signature,
                                       const void *body, size_t len, const cx_clock_t *clock,
                                       uint32_t tolerance_s, cx_error_t *err);

/* Writes the `webhook-signature` value `v1,<base64>` and a NUL to out[0..cap) (cap >=
 * CX_STANDARD_WEBHOOKS_SIGNATURE_LEN + 1), signing `<webhook_id>.<webhook_timestamp>.<body>`
 * under the `whsec_` secret[0..secret_len). The timestamp is taken as the exact text the
 * caller will send in `webhook-timestamp`. Returns 0, CX_ECONFIG (bad secret), CX_ENOSPC,
 * CX_EINVAL (NULL or empty id or timestamp), CX_ECRYPTO. Thread-safe.
 *
 *     char sig[CX_STANDARD_WEBHOOKS_SIGNATURE_LEN + 1];
 *     cx_standard_webhooks_sign(whsec, whsec_len, "msg_1", "1614265330", body, len, sig,
 *                               sizeof sig);
 */
CX_API int cx_standard_webhooks_sign(const unsigned char *secret, size_t secret_len,
                                     const char *webhook_id, const char *webhook_timestamp,
                                     const void *body, size_t len, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* CX_SIGNATURE_H */
