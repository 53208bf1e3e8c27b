/* Webhook signatures (cx/signature.h): HMAC-SHA256 in hex or base64, and Standard Webhooks v1.
 *
 * Every verify follows the same order: refuse a missing secret (configuration), refuse a
 * malformed header (cheap, says exactly what is wrong), compute the MAC under each configured
 * secret, then decode the received signature to bytes and compare with CRYPTO_memcmp against
 * every MAC. Comparing decoded bytes, not text, is what makes hex case-insensitive and base64
 * padding optional without a second, text-level comparison that could leak timing. The MACs of
 * both secrets are always computed and both compared, so timing does not tell which secret
 * a rotation is still using. Decoding the *received* value is not constant-time: the sender
 * knows it already.
 *
 * The codecs are our own rather than EVP_DecodeBlock, which skips whitespace, pads output to a
 * multiple of three and accepts non-canonical trailing bits: a signature has exactly one valid
 * spelling per alphabet here (up to hex case and optional base64 padding).
 *
 * Expected MACs and decoded keys live on the stack and are wiped with OPENSSL_cleanse.
 */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>

#include "cx/signature.h"

/* One piece of signed content; Standard Webhooks signs id "." timestamp "." body. */
typedef struct {
    const void *data;
    size_t len;
} part_t;

/* The MACs of the signed content under each configured secret (current first). */
typedef struct {
    unsigned char mac[2][CX_HMAC_SHA256_SIZE];
    size_t n;
} macs_t;

/* ---- HMAC ---------------------------------------------------------------------------------- */

/* HMAC-SHA256 (RFC 2104) over the parts, on OpenSSL's SHA-256 block functions. The EVP_MAC
 * route fetched the HMAC and SHA-256 implementations from the provider store on every call
 * (a lock and a hash lookup each), which cost more than the MAC of a webhook body itself; a
 * fetch cached for the process is not an option (a cached fetch outlives an unloaded
 * connector library). The low-level SHA256_* functions are deprecated in OpenSSL 3 but kept,
 * and use the same assembly (SHA extensions where the CPU has them). */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
static int hmac_parts(const unsigned char *key, size_t key_len, const part_t *parts, size_t n_parts,
                      unsigned char out[CX_HMAC_SHA256_SIZE])
{
    enum { BLOCK = 64 };
    unsigned char k[BLOCK] = {0}, pad[BLOCK], inner[CX_HMAC_SHA256_SIZE];
    SHA256_CTX c;
    int ok = 1;
    if (key_len > BLOCK)
        ok = SHA256(key, key_len, k) != NULL;
    else if (key_len > 0)
        memcpy(k, key, key_len);
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && SHA256_Init(&c) && SHA256_Update(&c, pad, BLOCK);
    for (size_t i = 0; ok && i < n_parts; i++)
        ok = parts[i].len == 0 || SHA256_Update(&c, parts[i].data, parts[i].len);
    ok = ok && SHA256_Final(inner, &c);
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && SHA256_Init(&c) && SHA256_Update(&c, pad, BLOCK) &&
         SHA256_Update(&c, inner, sizeof inner) && SHA256_Final(out, &c);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
    OPENSSL_cleanse(&c, sizeof c);
    if (!ok)
        ERR_clear_error(); /* leave no stale entries for the next OpenSSL user on this thread */
    return ok ? 0 : CX_ECRYPTO;
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

int cx_hmac_sha256(const unsigned char *key, size_t key_len, const void *data, size_t len,
                   unsigned char out[CX_HMAC_SHA256_SIZE])
{
    if (out == NULL || (key == NULL && key_len > 0) || (data == NULL && len > 0))
        return CX_EINVAL;
    part_t part = {data, len};
    return hmac_parts(key, key_len, &part, 1, out);
}

/* ---- Codecs -------------------------------------------------------------------------------- */

static const char HEX_DIGITS[] = "0123456789abcdef";
static const char B64_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX_DIGITS[in[i] >> 4];
        out[2 * i + 1] = HEX_DIGITS[in[i] & 0x0f];
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes exactly 2 * n hex digits (either case) into out; -1 on a non-hex character. */
static int hex_decode(const char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(in[2 * i]);
        int lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static size_t b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Padded standard base64 of in[0..n) into out (b64_encoded_len(n) characters, no NUL). */
static void b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64_ALPHABET[v >> 18 & 63];
        out[o++] = B64_ALPHABET[v >> 12 & 63];
        out[o++] = B64_ALPHABET[v >> 6 & 63];
        out[o++] = B64_ALPHABET[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = B64_ALPHABET[v >> 18 & 63];
        out[o++] = B64_ALPHABET[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64_ALPHABET[v >> 6 & 63] : (char)'=';
        out[o++] = '=';
    }
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

#define B64_BAD (-1)
#define B64_NOSPC (-2)

/* Decodes standard base64 (padding optional, but complete when present; unused trailing bits
 * must be zero) into out[0..cap). Returns 0, B64_BAD or B64_NOSPC. */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *out_len)
{
    if (n >= 4 && n % 4 == 0 && in[n - 1] == '=')
        n -= in[n - 2] == '=' ? 2 : 1;
    if (n % 4 == 1)
        return B64_BAD;
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (need > cap)
        return B64_NOSPC;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return B64_BAD;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        return B64_BAD;
    *out_len = o;
    return 0;
}

/* ---- Shared checks ------------------------------------------------------------------------- */

static int is_blank(char c, int newlines)
{
    return c == ' ' || c == '\t' || (newlines && (c == '\r' || c == '\n'));
}

static void trim(const char *s, size_t n, int newlines, const char **out, size_t *out_len)
{
    while (n > 0 && is_blank(*s, newlines)) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1], newlines))
        n--;
    *out = s;
    *out_len = n;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int has_prefix_nocase(const char *s, size_t n, const char *prefix, size_t plen)
{
    if (n < plen)
        return 0;
    for (size_t i = 0; i < plen; i++) {
        if (ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)prefix[i]))
            return 0;
    }
    return 1;
}

static int has_previous(const cx_secret_pair_t *s)
{
    return s->previous != NULL && s->previous_len > 0;
}

static int check_secrets(const cx_secret_pair_t *s, cx_error_t *err)
{
    if (s == NULL || s->current == NULL || s->current_len == 0)
        return cx_error_set(err, CX_ECONFIG, NULL, "no current signing secret configured");
    return 0;
}

static int check_body(const void *body, size_t len, cx_error_t *err)
{
    if (body == NULL && len > 0)
        return cx_error_set(err, CX_EINVAL, NULL, "body is NULL with a non-zero length");
    return 0;
}

/* MACs of parts under each key; keys[1] is used only when n_keys is 2. */
static int compute_macs(const part_t keys[2], size_t n_keys, const part_t *parts, size_t n_parts,
                        macs_t *m, cx_error_t *err)
{
    m->n = 0;
    for (size_t i = 0; i < n_keys; i++) {
        if (hmac_parts(keys[i].data, keys[i].len, parts, n_parts, m->mac[i]) != 0)
            return cx_error_set(err, CX_ECRYPTO, NULL, "HMAC-SHA256 failed");
        m->n++;
    }
    return 0;
}

/* Whether got equals any of the MACs; always compares against all of them. */
static int macs_match(const macs_t *m, const unsigned char got[CX_HMAC_SHA256_SIZE])
{
    int ok = 0;
    for (size_t i = 0; i < m->n; i++)
        ok |= CRYPTO_memcmp(m->mac[i], got, CX_HMAC_SHA256_SIZE) == 0;
    return ok;
}

static int mismatch(const cx_secret_pair_t *s, cx_error_t *err)
{
    return cx_error_set(err, CX_EBAD_SIGNATURE, NULL,
                        has_previous(s)
                            ? "signature matches neither the current nor the previous secret"
                            : "signature does not match the secret");
}

/* ---- HMAC of the body, hex or base64 ------------------------------------------------------- */

typedef enum { ENC_HEX, ENC_BASE64 } encoding_t;

static int verify_body(const cx_secret_pair_t *secrets, const void *body, size_t len,
                       const char *header_value, const char *prefix, encoding_t enc,
                       cx_error_t *err)
{
    int rc = check_secrets(secrets, err);
    if (rc == 0)
        rc = check_body(body, len, err);
    if (rc != 0)
        return rc;
    if (header_value == NULL)
        return cx_error_set(err, CX_EBAD_SIGNATURE, NULL, "signature header missing");

    const char *v;
    size_t n;
    trim(header_value, strlen(header_value), 0, &v, &n);
    if (n == 0)
        return cx_error_set(err, CX_EBAD_SIGNATURE, NULL, "signature header empty");
    size_t plen = prefix ? strlen(prefix) : 0;
    if (plen > 0) {
        if (!has_prefix_nocase(v, n, prefix, plen))
            return cx_error_set(err, CX_EBAD_SIGNATURE, NULL,
                                "signature header lacks the expected prefix \"%s\"", prefix);
        v += plen;
        n -= plen;
    }

    unsigned char got[CX_HMAC_SHA256_SIZE];
    if (enc == ENC_HEX) {
        if (n != CX_SIGNATURE_HEX_LEN || hex_decode(v, CX_HMAC_SHA256_SIZE, got) != 0)
            return cx_error_set(err, CX_EBAD_SIGNATURE, NULL, "signature is not %d hex digits",
                                CX_SIGNATURE_HEX_LEN);
    } else {
        size_t got_len = 0;
        if (b64_decode(v, n, got, sizeof got, &got_len) != 0 || got_len != sizeof got)
            return cx_error_set(err, CX_EBAD_SIGNATURE, NULL,
                                "signature is not the base64 of a %d-byte HMAC-SHA256",
                                CX_HMAC_SHA256_SIZE);
    }

    part_t keys[2] = {{secrets->current, secrets->current_len},
                      {secrets->previous, secrets->previous_len}};
    part_t part = {body, len};
    macs_t macs;
    rc = compute_macs(keys, has_previous(secrets) ? 2 : 1, &part, 1, &macs, err);
    if (rc == 0 && !macs_match(&macs, got))
        rc = mismatch(secrets, err);
    OPENSSL_cleanse(&macs, sizeof macs);
    return rc;
}

int cx_signature_verify_hex(const cx_secret_pair_t *secrets, const void *body, size_t len,
                            const char *header_value, const char *prefix, cx_error_t *err)
{
    return verify_body(secrets, body, len, header_value, prefix, ENC_HEX, err);
}

int cx_signature_verify_base64(const cx_secret_pair_t *secrets, const void *body, size_t len,
                               const char *header_value, const char *prefix, cx_error_t *err)
{
    return verify_body(secrets, body, len, header_value, prefix, ENC_BASE64, err);
}

static int sign_body(const unsigned char *key, size_t key_len, const void *body, size_t len,
                     const char *prefix, encoding_t enc, char *out, size_t cap)
{
    if (out == NULL || (key == NULL && key_len > 0) || (body == NULL && len > 0))
        return CX_EINVAL;
    size_t plen = prefix ? strlen(prefix) : 0;
    size_t slen = enc == ENC_HEX ? CX_SIGNATURE_HEX_LEN : CX_SIGNATURE_BASE64_LEN;
    if (cap < plen + slen + 1) {
        if (cap > 0)
            out[0] = '\0';
        return CX_ENOSPC;
    }
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    part_t part = {body, len};
    int rc = hmac_parts(key, key_len, &part, 1, mac);
    if (rc != 0) {
        out[0] = '\0';
        return rc;
    }
    memcpy(out, prefix ? prefix : "", plen);
    if (enc == ENC_HEX)
        hex_encode(mac, sizeof mac, out + plen);
    else
        b64_encode(mac, sizeof mac, out + plen);
    out[plen + slen] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

int cx_signature_sign_hex(const unsigned char *key, size_t key_len, const void *body, size_t len,
                          const char *prefix, char *out, size_t cap)
{
    return sign_body(key, key_len, body, len, prefix, ENC_HEX, out, cap);
}

int cx_signature_sign_base64(const unsigned char *key, size_t key_len, const void *body, size_t len,
                             const char *prefix, char *out, size_t cap)
{
    return sign_body(key, key_len, body, len, prefix, ENC_BASE64, out, cap);
}

/* ---- Standard Webhooks v1 ------------------------------------------------------------------ */

#define WHSEC_PREFIX "whsec_"

int cx_standard_webhooks_secret_decode(const unsigned char *secret, size_t secret_len,
                                       unsigned char *key, size_t cap, size_t *key_len)
{
    if ((secret == NULL && secret_len > 0) || key == NULL || key_len == NULL)
        return CX_EINVAL;
    const char *s;
    size_t n;
    trim((const char *)secret, secret_len, 1, &s, &n);
    if (n >= sizeof WHSEC_PREFIX - 1 && memcmp(s, WHSEC_PREFIX, sizeof WHSEC_PREFIX - 1) == 0) {
        s += sizeof WHSEC_PREFIX - 1;
        n -= sizeof WHSEC_PREFIX - 1;
    }
    if (n == 0 || n > b64_encoded_len(CX_STANDARD_WEBHOOKS_MAX_KEY))
        return CX_ECONFIG;
    size_t got = 0;
    int rc = b64_decode(s, n, key, cap, &got);
    if (rc == B64_NOSPC)
        return CX_ENOSPC;
    if (rc != 0 || got == 0 || got > CX_STANDARD_WEBHOOKS_MAX_KEY) {
        OPENSSL_cleanse(key, cap);
        return CX_ECONFIG;
    }
    *key_len = got;
    return 0;
}

/* Parses decimal Unix seconds: digits only, no sign, no overflow. */
static int parse_seconds(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* |a - b| > tol without overflow: the true difference of two int64 fits in a uint64. */
static int farther_than(int64_t a, int64_t b, uint32_t tol)
{
    uint64_t d = a >= b ? (uint64_t)a - (uint64_t)b : (uint64_t)b - (uint64_t)a;
    return d > tol;
}

static int missing(const char *v)
{
    return v == NULL || *v == '\0';
}

int cx_standard_webhooks_verify(const cx_secret_pair_t *secrets, const char *webhook_id,
                                const char *webhook_timestamp, const char *webhook_signature,
                                const void *body, size_t len, const cx_clock_t *clock,
                                uint32_t tolerance_s, cx_error_t *err)
{
    unsigned char key[2][CX_STANDARD_WEBHOOKS_MAX_KEY];
    part_t keys[2] = {{key[0], 0}, {key[1], 0}};
    size_t n_keys = 0;
    macs_t macs;
    int rc = check_secrets(secrets, err);
    if (rc == 0)
        rc = check_body(body, len, err);
    if (rc != 0)
        return rc;

    memset(&macs, 0, sizeof macs);
    if (cx_standard_webhooks_secret_decode(secrets->current, secrets->current_len, key[0],
                                           sizeof key[0], &keys[0].len) != 0) {
        rc = cx_error_set(err, CX_ECONFIG, NULL,
                          "current Standard Webhooks secret is not whsec_ + base64");
        goto done;
    }
    n_keys = 1;
    if (has_previous(secrets)) {
        if (cx_standard_webhooks_secret_decode(secrets->previous, secrets->previous_len, key[1],
                                               sizeof key[1], &keys[1].len) != 0) {
            rc = cx_error_set(err, CX_ECONFIG, NULL,
                              "previous Standard Webhooks secret is not whsec_ + base64");
            goto done;
        }
        n_keys = 2;
    }

    if (missing(webhook_id)) {
        rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-id", "webhook-id header missing");
        goto done;
    }
    if (missing(webhook_timestamp)) {
        rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-timestamp",
                          "webhook-timestamp header missing");
        goto done;
    }
    if (missing(webhook_signature)) {
        rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-signature",
                          "webhook-signature header missing");
        goto done;
    }

    int64_t ts;
    if (parse_seconds(webhook_timestamp, &ts) != 0) {
        rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-timestamp",
                          "webhook-timestamp is not a whole number of Unix seconds");
        goto done;
    }
    uint32_t tol = tolerance_s ? tolerance_s : CX_STANDARD_WEBHOOKS_TOLERANCE_S;
    int64_t now = cx_clock_now(clock);
    if (farther_than(ts, now, tol)) {
        rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-timestamp",
                          "timestamp outside the %lu s tolerance (%s)", (unsigned long)tol,
                          ts < now ? "too old" : "in the future");
        goto done;
    }

    part_t parts[5] = {{webhook_id, strlen(webhook_id)},
                       {".", 1},
                       {webhook_timestamp, strlen(webhook_timestamp)},
                       {".", 1},
                       {body, len}};
    rc = compute_macs(keys, n_keys, parts, 5, &macs, err);
    if (rc != 0)
        goto done;

    /* Space-separated "<version>,<base64>" entries; only v1 counts, malformed ones are skipped
     * so a sender can list signatures for schemes we do not know yet. */
    size_t seen_v1 = 0;
    int ok = 0;
    const char *p = webhook_signature;
    while (*p != '\0' && !ok) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p != '\0' && *p != ' ')
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen < 3 || memcmp(tok, "v1,", 3) != 0)
            continue;
        seen_v1++;
        unsigned char got[CX_HMAC_SHA256_SIZE];
        size_t got_len = 0;
        if (b64_decode(tok + 3, tlen - 3, got, sizeof got, &got_len) == 0 && got_len == sizeof got)
            ok = macs_match(&macs, got);
    }
    if (!ok) {
        if (seen_v1 == 0)
            rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-signature",
                              "webhook-signature holds no v1 signature");
        else
            rc = cx_error_set(err, CX_EBAD_SIGNATURE, "webhook-signature",
                              n_keys == 2
                                  ? "no v1 signature matches the current or the previous secret"
                                  : "no v1 signature matches the secret");
    }

done:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(&macs, sizeof macs);
    return rc;
}

int cx_standard_webhooks_sign(const unsigned char *secret, size_t secret_len,
                              const char *webhook_id, const char *webhook_timestamp,
                              const void *body, size_t len, char *out, size_t cap)
{
    if (out == NULL || missing(webhook_id) || missing(webhook_timestamp) ||
        (body == NULL && len > 0))
        return CX_EINVAL;
    if (cap < CX_STANDARD_WEBHOOKS_SIGNATURE_LEN + 1) {
        if (cap > 0)
            out[0] = '\0';
        return CX_ENOSPC;
    }
    out[0] = '\0';
    unsigned char key[CX_STANDARD_WEBHOOKS_MAX_KEY];
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    size_t key_len = 0;
    int rc = cx_standard_webhooks_secret_decode(secret, secret_len, key, sizeof key, &key_len);
    if (rc != 0) {
        rc = rc == CX_EINVAL ? CX_EINVAL : CX_ECONFIG;
        goto done;
    }
    part_t parts[5] = {{webhook_id, strlen(webhook_id)},
                       {".", 1},
                       {webhook_timestamp, strlen(webhook_timestamp)},
                       {".", 1},
                       {body, len}};
    rc = hmac_parts(key, key_len, parts, 5, mac);
    if (rc != 0)
        goto done;
    memcpy(out, "v1,", 3);
    b64_encode(mac, sizeof mac, out + 3);
    out[CX_STANDARD_WEBHOOKS_SIGNATURE_LEN] = '\0';

done:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}
