/* Keyed pseudonyms: the HMAC-SHA256 of a value under the keyring's secret, cut to 64 bits.
 *
 * Redacted JSON (CX_REDACT_PSEUDONYMIZE) and dedupe keys both replace personal data with these,
 * so a phone number maps to the same token in a log line and in a key: joins still work, and
 * without the key nobody can test a guess. 64 bits keeps tokens short while making accidental
 * collisions between distinct values negligible at any realistic volume.
 */
#include <limits.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cx/schema.h"

int cx_pseudonym(const cx_keyring_t *keyring, const char *value, size_t len, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    /* An empty key would make the "keyed" pseudonym a plain hash anybody can recompute. */
    if (keyring == NULL || keyring->key == NULL || keyring->key_len == 0 ||
        keyring->key_len > INT_MAX || out == NULL || (value == NULL && len > 0))
        return CX_EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    const unsigned char *data = (const unsigned char *)(value ? value : "");
    if (HMAC(EVP_sha256(), keyring->key, (int)keyring->key_len, data, len, md, &md_len) == NULL ||
        md_len < 8)
        return CX_ECRYPTO;
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[16] = '\0';
    return 0;
}
