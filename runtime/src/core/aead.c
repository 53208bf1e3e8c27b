/* AES-256-GCM sealing of values at rest (core/aead.h) and the small codecs they travel in. */
#define _POSIX_C_SOURCE 200809L
#include "core/aead.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

int cx__aead_seal(const unsigned char key[CX__AEAD_KEY_SIZE], const void *aad, size_t aad_len,
                  const void *pt, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
    if (key == NULL || out == NULL || out_len == NULL || (aad == NULL && aad_len > 0) ||
        (pt == NULL && len > 0) || len > (size_t)1 << 30 || aad_len > (size_t)1 << 30)
        return CX_EINVAL;
    if (cap < len + CX__AEAD_OVERHEAD)
        return CX_ENOSPC;
    unsigned char *nonce = out + 1, *ct = out + 1 + CX__AEAD_NONCE_SIZE;
    out[0] = CX__AEAD_V1;
    if (RAND_bytes(nonce, CX__AEAD_NONCE_SIZE) != 1)
        return CX_ECRYPTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return CX_ECRYPTO;
    int n = 0,
        ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CX__AEAD_NONCE_SIZE, NULL) == 1 &&
             EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
             /* The version byte is authenticated: a value cannot be relabelled. */
             EVP_EncryptUpdate(c, NULL, &n, out, 1) == 1;
    if (ok && aad_len > 0)
        ok = EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1;
    if (ok && len > 0)
        ok = EVP_EncryptUpdate(c, ct, &n, pt, (int)len) == 1 && (size_t)n == len;
    if (ok)
        ok = EVP_EncryptFinal_ex(c, ct + len, &n) == 1 && n == 0;
    if (ok)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CX__AEAD_TAG_SIZE, ct + len) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        OPENSSL_cleanse(out, cap < len + CX__AEAD_OVERHEAD ? cap : len + CX__AEAD_OVERHEAD);
        return CX_ECRYPTO;
    }
    *out_len = len + CX__AEAD_OVERHEAD;
    return 0;
}

int cx__aead_open(const unsigned char key[CX__AEAD_KEY_SIZE], const void *aad, size_t aad_len,
                  const unsigned char *in, size_t len, unsigned char *out, size_t cap,
                  size_t *out_len)
{
    if (key == NULL || in == NULL || out_len == NULL || (aad == NULL && aad_len > 0) ||
        (out == NULL && cap > 0) || aad_len > (size_t)1 << 30 || len > ((size_t)1 << 30))
        return CX_EINVAL;
    if (len < CX__AEAD_OVERHEAD)
        return CX_ECRYPTO;
    if (in[0] != CX__AEAD_V1)
        return CX_ECONFIG;
    size_t ptlen = len - CX__AEAD_OVERHEAD;
    if (cap < ptlen)
        return CX_ENOSPC;
    const unsigned char *nonce = in + 1, *ct = in + 1 + CX__AEAD_NONCE_SIZE;
    unsigned char tag[CX__AEAD_TAG_SIZE];
    memcpy(tag, ct + ptlen, sizeof tag);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return CX_ECRYPTO;
    int n = 0,
        ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CX__AEAD_NONCE_SIZE, NULL) == 1 &&
             EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
             EVP_DecryptUpdate(c, NULL, &n, in, 1) == 1;
    if (ok && aad_len > 0)
        ok = EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1;
    if (ok && ptlen > 0)
        ok = EVP_DecryptUpdate(c, out, &n, ct, (int)ptlen) == 1 && (size_t)n == ptlen;
    if (ok)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CX__AEAD_TAG_SIZE, tag) == 1;
    /* Final checks the tag: nothing decrypted is used unless it matches. */
    if (ok)
        ok = EVP_DecryptFinal_ex(c, out ? out + ptlen : NULL, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        if (out)
            OPENSSL_cleanse(out, ptlen);
        return CX_ECRYPTO;
    }
    *out_len = ptlen;
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int cx__aead_key_parse(const unsigned char *text, size_t len, unsigned char key[CX__AEAD_KEY_SIZE])
{
    if (text == NULL || key == NULL)
        return CX_ECONFIG;
    if (len == CX__AEAD_KEY_SIZE) {
        memcpy(key, text, CX__AEAD_KEY_SIZE);
        return 0;
    }
    while (len > 0 && is_space(text[0]))
        text++, len--;
    while (len > 0 && is_space(text[len - 1]))
        len--;
    if (len != 2 * CX__AEAD_KEY_SIZE)
        return CX_ECONFIG;
    for (size_t i = 0; i < CX__AEAD_KEY_SIZE; i++) {
        int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(key, CX__AEAD_KEY_SIZE);
            return CX_ECONFIG;
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int cx__aead_key_load(const char *secrets_dir, const char *connector, const char *name,
                      unsigned char key[CX__AEAD_KEY_SIZE], cx_error_t *err)
{
    if (secrets_dir == NULL || connector == NULL || name == NULL || key == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "key: no secrets directory");
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/%s/%s", secrets_dir, connector, name);
    if (w < 0 || (size_t)w >= sizeof path)
        return cx_error_set(err, CX_EINVAL, NULL, "key: secrets path too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cx_error_set(err, errno == ENOENT ? CX_ENOTFOUND : CX_ECONFIG, NULL,
                            "key %s/%s: cannot open it in the secrets directory", connector, name);
    unsigned char buf[160];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf)
            break;
    }
    close(fd);
    int rc = n < sizeof buf ? cx__aead_key_parse(buf, n, key) : CX_ECONFIG;
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc != 0)
        return cx_error_set(err, CX_ECONFIG, NULL,
                            "key %s/%s: must be 32 raw bytes or 64 hex digits", connector, name);
    return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static long b64_encode(const char *alphabet, int pad, const unsigned char *in, size_t len,
                       char *out, size_t cap)
{
    size_t full = len / 3, rest = len % 3;
    size_t need = full * 4 + (rest ? (pad ? 4 : rest + 1) : 0);
    if (out == NULL || cap < need + 1)
        return -1;
    char *o = out;
    for (size_t i = 0; i < full; i++, in += 3) {
        uint32_t v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        *o++ = alphabet[v >> 6 & 63];
        *o++ = alphabet[v & 63];
    }
    if (rest) {
        uint32_t v = (uint32_t)in[0] << 16 | (rest == 2 ? (uint32_t)in[1] << 8 : 0);
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        if (rest == 2)
            *o++ = alphabet[v >> 6 & 63];
        else if (pad)
            *o++ = '=';
        if (pad)
            *o++ = '=';
    }
    *o = '\0';
    return (long)(o - out);
}

long cx__b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    return b64_encode(B64URL, 0, in, len, out, cap);
}

long cx__b64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    return b64_encode(B64, 1, in, len, out, cap);
}

static int b64_val(char c)
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

long cx__b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (in == NULL || len % 4 != 0)
        return -1;
    size_t pad = 0;
    if (len >= 1 && in[len - 1] == '=')
        pad++;
    if (len >= 2 && in[len - 2] == '=')
        pad++;
    size_t need = len / 4 * 3 - pad;
    if (need > cap)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            char c = in[i + (size_t)j];
            if (c == '=' && i + 4 == len && (size_t)j >= 4 - pad) {
                v[j] = 0;
                continue;
            }
            if ((v[j] = b64_val(c)) < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (o < need)
            out[o++] = (unsigned char)(w >> 8 & 0xff);
        if (o < need)
            out[o++] = (unsigned char)(w & 0xff);
    }
    return (long)need;
}
