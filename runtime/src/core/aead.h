/* Private: AES-256-GCM sealing for values at rest (tokens, OAuth states), via OpenSSL EVP.
 *
 * A sealed value is self-describing and versioned:
 *
 *   byte 0        format version (CX__AEAD_V1 = 0x01)
 *   bytes 1..12   a random 96-bit nonce (RAND_bytes), fresh for every seal
 *   bytes 13..    the ciphertext, as long as the plaintext
 *   last 16       the GCM tag
 *
 * The version byte is authenticated too (it is part of the AAD GCM sees), and so is the
 * caller's AAD, which binds a value to where it belongs (tenant/account for a token): a value
 * copied under another key fails to open. Random nonces are safe for about 2^32 seals under
 * one key (NIST SP 800-38D 8.3); rotate the key well before that.
 *
 * The key is 32 bytes. cx__aead_key_load reads it from <secrets dir>/runtime/token_key: a
 * file of exactly 32 raw bytes, or 64 hex digits (a trailing newline and surrounding blanks
 * allowed). Anything else is refused: a short key must never be padded silently.
 *
 * Functions are reentrant and keep no state: thread-safe. Plaintexts and keys never reach
 * error text.
 */
#ifndef CX_CORE_AEAD_H
#define CX_CORE_AEAD_H

#include <stddef.h>

#include "cx/error.h"

#define CX__AEAD_KEY_SIZE 32
#define CX__AEAD_NONCE_SIZE 12
#define CX__AEAD_TAG_SIZE 16
#define CX__AEAD_V1 0x01
/* Bytes a sealed value adds to its plaintext. */
#define CX__AEAD_OVERHEAD (1 + CX__AEAD_NONCE_SIZE + CX__AEAD_TAG_SIZE)

/* Seals pt[0..len) under key with aad[0..aad_len) into out[0..cap); *out_len = len +
 * CX__AEAD_OVERHEAD. aad may be NULL when aad_len is 0; pt may be NULL when len is 0.
 * Returns 0, CX_EINVAL, CX_ENOSPC (cap too small) or CX_ECRYPTO (no random bytes, EVP
 * failure). */
int cx__aead_seal(const unsigned char key[CX__AEAD_KEY_SIZE], const void *aad, size_t aad_len,
                  const void *pt, size_t len, unsigned char *out, size_t cap, size_t *out_len);

/* Opens a sealed value into out[0..cap); *out_len = plaintext length. Returns 0, CX_EINVAL,
 * CX_ENOSPC, CX_ECONFIG (a format version this release does not know: written by a newer
 * one) or CX_ECRYPTO (wrong key, wrong AAD, or the value was altered: the tag does not
 * match). out is wiped on failure. */
int cx__aead_open(const unsigned char key[CX__AEAD_KEY_SIZE], const void *aad, size_t aad_len,
                  const unsigned char *in, size_t len, unsigned char *out, size_t cap,
                  size_t *out_len);

/* Parses key material: exactly 32 bytes are taken raw; otherwise, after trimming ASCII
 * whitespace, 64 hex digits. Returns 0 or CX_ECONFIG. */
int cx__aead_key_parse(const unsigned char *text, size_t len, unsigned char key[CX__AEAD_KEY_SIZE]);

/* Reads <secrets_dir>/<connector>/<name> (e.g. "runtime", "token_key") and parses it with
 * cx__aead_key_parse. Returns 0, CX_EINVAL, CX_ENOTFOUND (no such file) or CX_ECONFIG (not a
 * valid key; the text names the file, never its content). */
int cx__aead_key_load(const char *secrets_dir, const char *connector, const char *name,
                      unsigned char key[CX__AEAD_KEY_SIZE], cx_error_t *err);

/* Base64url without padding (RFC 4648 section 5) of in[0..len) into out[0..cap) + NUL.
 * Returns the length written, or -1 when cap is too small. */
long cx__b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* Standard base64 with padding, and its decoder (for values stored as text). The encoder
 * returns the length written or -1; the decoder returns the decoded length, or -1 on bad
 * input or a too small out. */
long cx__b64_encode(const unsigned char *in, size_t len, char *out, size_t cap);
long cx__b64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif /* CX_CORE_AEAD_H */
