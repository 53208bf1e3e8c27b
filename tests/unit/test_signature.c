/* Webhook signatures: hex / base64 HMAC-SHA256, rotation, Standard Webhooks v1 (cx/signature.h).
 * Expected MACs were computed independently with Python's hmac module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cx/clock.h"
#include "cx/signature.h"

/* ---- Fixtures ------------------------------------------------------------------------------ */

#define META_SECRET "meta-app-secret-0123456789"
#define META_BODY "{\"object\":\"whatsapp_business_account\",\"entry\":[]}"
#define META_HEX "432135e3ebe505a7790b1fc5cc52dcddea859a5f16db2e8a8e25ae7682804782"
#define META_B64 "QyE14+vlBad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4I="
#define OTHER_SECRET "some-other-secret-abcdef"

/* The test vector of the Standard Webhooks specification. */
#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS "1614265330"
#define SW_BODY "{\"test\": 2432232314}"
#define SW_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
#define SW_OTHER_SECRET "whsec_cHJldmlvdXMtc3RhbmRhcmQtd2ViaG9va3Mta2V5ISE="

static const cx_secret_pair_t META_ONLY = {(const unsigned char *)META_SECRET,
                                           sizeof META_SECRET - 1, NULL, 0};
static const cx_secret_pair_t OTHER_ONLY = {(const unsigned char *)OTHER_SECRET,
                                            sizeof OTHER_SECRET - 1, NULL, 0};
/* A rotation in progress: the sender still signs with META_SECRET, now the previous one. */
static const cx_secret_pair_t ROTATING = {
    (const unsigned char *)OTHER_SECRET, sizeof OTHER_SECRET - 1,
    (const unsigned char *)META_SECRET, sizeof META_SECRET - 1};

static const cx_secret_pair_t SW_ONLY = {(const unsigned char *)SW_SECRET, sizeof SW_SECRET - 1,
                                         NULL, 0};
static const cx_secret_pair_t SW_OTHER_ONLY = {(const unsigned char *)SW_OTHER_SECRET,
                                               sizeof SW_OTHER_SECRET - 1, NULL, 0};
static const cx_secret_pair_t SW_ROTATING = {
    (const unsigned char *)SW_OTHER_SECRET, sizeof SW_OTHER_SECRET - 1,
    (const unsigned char *)SW_SECRET, sizeof SW_SECRET - 1};

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
}

static int64_t sw_now = 1614265330;
static const cx_clock_t SW_CLOCK = {fixed_clock, &sw_now};

static int verify_hex(const cx_secret_pair_t *s, const char *body, const char *header,
                      const char *prefix, cx_error_t *err)
{
    cx_error_clear(err);
    return cx_signature_verify_hex(s, body, strlen(body), header, prefix, err);
}

static int verify_b64(const cx_secret_pair_t *s, const char *body, const char *header,
                      const char *prefix, cx_error_t *err)
{
    cx_error_clear(err);
    return cx_signature_verify_base64(s, body, strlen(body), header, prefix, err);
}

static int sw_verify_at(const cx_secret_pair_t *s, int64_t now, const char *sig, cx_error_t *err)
{
    cx_clock_t clock = {fixed_clock, &now};
    cx_error_clear(err);
    return cx_standard_webhooks_verify(s, SW_ID, SW_TS, sig, SW_BODY, sizeof SW_BODY - 1, &clock, 0,
                                       err);
}

/* The error text names the failed check and nothing secret. */
static void assert_clean_error(const cx_error_t *err, int code, const char *needle)
{
    static const char *const forbidden[] = {META_SECRET,
                                            OTHER_SECRET,
                                            META_HEX,
                                            META_B64,
                                            SW_SECRET,
                                            SW_OTHER_SECRET,
                                            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                                            "432135e3",
                                            "QyE14+vl",
                                            "g0hM9SsE",
                                            "MfKQ9r8G"};
    assert_int_equal(err->code, code);
    assert_true(err->message[0] != '\0');
    if (needle != NULL && strstr(err->message, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->message, needle);
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        if (strstr(err->message, forbidden[i]) != NULL || strstr(err->path, forbidden[i]) != NULL)
            fail_msg("error text leaks \"%s\"", forbidden[i]);
    }
}

/* ---- HMAC ---------------------------------------------------------------------------------- */

static void test_hmac_sha256_matches_rfc4231_case_2(void **state)
{
    (void)state;
    static const unsigned char want[CX_HMAC_SHA256_SIZE] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
        0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
        0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    const char *data = "what do ya want for nothing?";
    assert_int_equal(cx_hmac_sha256((const unsigned char *)"Jefe", 4, data, strlen(data), mac), 0);
    assert_memory_equal(mac, want, sizeof want);
}

/* A key longer than SHA-256's block is hashed first (RFC 4231 test case 6). */
static void test_hmac_sha256_matches_rfc4231_case_6_long_key(void **state)
{
    (void)state;
    static const unsigned char want[CX_HMAC_SHA256_SIZE] = {
        0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26,
        0xaa, 0xcb, 0xf5, 0xb7, 0x7f, 0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28,
        0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f, 0x0e, 0xe3, 0x7f, 0x54};
    unsigned char key[131], mac[CX_HMAC_SHA256_SIZE];
    memset(key, 0xaa, sizeof key);
    const char *data = "Test Using Larger Than Block-Size Key - Hash Key First";
    assert_int_equal(cx_hmac_sha256(key, sizeof key, data, strlen(data), mac), 0);
    assert_memory_equal(mac, want, sizeof want);
}

static void test_hmac_sha256_empty_key_and_data(void **state)
{
    (void)state;
    char hex[CX_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(cx_signature_sign_hex(NULL, 0, NULL, 0, NULL, hex, sizeof hex), 0);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_hmac_sha256_rejects_null_arguments(void **state)
{
    (void)state;
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    assert_int_equal(cx_hmac_sha256(NULL, 3, "x", 1, mac), CX_EINVAL);
    assert_int_equal(cx_hmac_sha256((const unsigned char *)"k", 1, NULL, 1, mac), CX_EINVAL);
    assert_int_equal(cx_hmac_sha256((const unsigned char *)"k", 1, "x", 1, NULL), CX_EINVAL);
}

/* ---- Hex (Meta X-Hub-Signature-256) -------------------------------------------------------- */

static void test_hex_valid_signature_passes(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "sha256=" META_HEX, "sha256=", &err), 0);
    assert_int_equal(err.code, 0);
}

static void test_hex_uppercase_digits_pass(void **state)
{
    (void)state;
    char header[96];
    snprintf(header, sizeof header, "sha256=%s", META_HEX);
    for (char *p = header + 7; *p; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, header, "sha256=", &err), 0);
    /* The algorithm label is matched ignoring case too. */
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "SHA256=" META_HEX, "sha256=", &err), 0);
}

static void test_hex_surrounding_whitespace_ignored(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, " sha256=" META_HEX "\t", "sha256=", &err),
                     0);
}

static void test_hex_without_prefix_passes(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, META_HEX, NULL, &err), 0);
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, META_HEX, "", &err), 0);
}

static void test_hex_tampered_body_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[{}]}";
    assert_int_equal(verify_hex(&META_ONLY, body, "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match");
}

static void test_hex_wrong_secret_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&OTHER_ONLY, META_BODY, "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match");
}

static void test_hex_one_flipped_digit_rejected(void **state)
{
    (void)state;
    char header[96];
    snprintf(header, sizeof header, "sha256=%s", META_HEX);
    header[sizeof "sha256=" + 10] ^= 1; /* a hex digit that stays a hex digit */
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, header, "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match");
}

static void test_hex_missing_header_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, NULL, "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "missing");
}

static void test_hex_empty_header_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "", "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "empty");
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "   ", "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "empty");
}

static void test_hex_wrong_prefix_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "sha1=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "prefix");
    /* The bare digits are not enough when a prefix is expected. */
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "prefix");
}

static void test_hex_bad_length_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    /* One digit short, and one digit too many. */
    char header[96];
    snprintf(header, sizeof header, "sha256=%.63s", META_HEX);
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, header, "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "64 hex digits");
    snprintf(header, sizeof header, "sha256=%s0", META_HEX);
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, header, "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "64 hex digits");
}

static void test_hex_non_hex_digit_rejected(void **state)
{
    (void)state;
    char header[96];
    snprintf(header, sizeof header, "sha256=%s", META_HEX);
    header[sizeof "sha256=" + 4] = 'g';
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, header, "sha256=", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "64 hex digits");
}

static void test_hex_no_secret_is_config_error(void **state)
{
    (void)state;
    cx_error_t err;
    static const cx_secret_pair_t none = {NULL, 0, NULL, 0};
    assert_int_equal(verify_hex(&none, META_BODY, "sha256=" META_HEX, "sha256=", &err), CX_ECONFIG);
    assert_clean_error(&err, CX_ECONFIG, "no current signing secret");
    assert_int_equal(verify_hex(NULL, META_BODY, "sha256=" META_HEX, "sha256=", &err), CX_ECONFIG);
}

static void test_verify_accepts_null_err(void **state)
{
    (void)state;
    assert_int_equal(
        cx_signature_verify_hex(&META_ONLY, META_BODY, sizeof META_BODY - 1, NULL, "sha256=", NULL),
        CX_EBAD_SIGNATURE);
}

/* ---- Rotation ------------------------------------------------------------------------------ */

static void test_previous_secret_accepted_during_rotation(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&ROTATING, META_BODY, "sha256=" META_HEX, "sha256=", &err), 0);
    assert_int_equal(verify_b64(&ROTATING, META_BODY, META_B64, NULL, &err), 0);
}

static void test_current_secret_accepted_during_rotation(void **state)
{
    (void)state;
    char header[96];
    assert_int_equal(cx_signature_sign_hex((const unsigned char *)OTHER_SECRET,
                                           sizeof OTHER_SECRET - 1, META_BODY, sizeof META_BODY - 1,
                                           "sha256=", header, sizeof header),
                     0);
    cx_error_t err;
    assert_int_equal(verify_hex(&ROTATING, META_BODY, header, "sha256=", &err), 0);
}

static void test_previous_secret_rejected_without_rotation(void **state)
{
    (void)state;
    cx_error_t err;
    /* Same current secret as ROTATING, no previous: the old signature must fail. */
    assert_int_equal(verify_hex(&OTHER_ONLY, META_BODY, "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match the secret");
    /* An empty previous secret is no previous secret. */
    cx_secret_pair_t empty_prev = OTHER_ONLY;
    empty_prev.previous = (const unsigned char *)"";
    empty_prev.previous_len = 0;
    assert_int_equal(verify_hex(&empty_prev, META_BODY, "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
}

static void test_rotation_mismatch_names_both_secrets(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_hex(&ROTATING, "{}", "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "neither the current nor the previous");
}

/* ---- Base64 (Shopify-style) ---------------------------------------------------------------- */

static void test_base64_valid_signature_passes(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_b64(&META_ONLY, META_BODY, META_B64, NULL, &err), 0);
}

static void test_base64_without_padding_passes(void **state)
{
    (void)state;
    char header[64];
    snprintf(header, sizeof header, "%.43s", META_B64);
    cx_error_t err;
    assert_int_equal(verify_b64(&META_ONLY, META_BODY, header, NULL, &err), 0);
}

static void test_base64_with_prefix_passes(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_b64(&META_ONLY, META_BODY, "sha256=" META_B64, "sha256=", &err), 0);
}

static void test_base64_tampered_body_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_b64(&META_ONLY, "{\"object\":1}", META_B64, NULL, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match");
}

static void test_base64_wrong_secret_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(verify_b64(&OTHER_ONLY, META_BODY, META_B64, NULL, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "does not match");
}

static void test_base64_malformed_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "QyE14+vlBad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4",       /* 42 chars: 31 bytes */
        "QyE14+vlBad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4I=QUFB", /* 35 bytes */
        "QyE14-vlBad5Cx_FzFLc3eqFml8W2y6KjiWudoKAR4I=",     /* base64url alphabet */
        "QyE14+vlBad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4J=",     /* non-zero unused bits */
        "QyE14+vl Bad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4I=",    /* inner space */
        "QyE14+vlBad5Cx/FzFLc3eqFml8W2y6KjiWudoKAR4I==",    /* too much padding */
        META_HEX,                                           /* hex where base64 is expected */
    };
    cx_error_t err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(verify_b64(&META_ONLY, META_BODY, bad[i], NULL, &err), CX_EBAD_SIGNATURE);
        assert_clean_error(&err, CX_EBAD_SIGNATURE, "base64");
    }
}

/* ---- Signing helpers ----------------------------------------------------------------------- */

static void test_sign_hex_round_trips(void **state)
{
    (void)state;
    char out[7 + CX_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(cx_signature_sign_hex((const unsigned char *)META_SECRET,
                                           sizeof META_SECRET - 1, META_BODY, sizeof META_BODY - 1,
                                           "sha256=", out, sizeof out),
                     0);
    assert_string_equal(out, "sha256=" META_HEX);
}

static void test_sign_base64_round_trips(void **state)
{
    (void)state;
    char out[CX_SIGNATURE_BASE64_LEN + 1];
    assert_int_equal(cx_signature_sign_base64((const unsigned char *)META_SECRET,
                                              sizeof META_SECRET - 1, META_BODY,
                                              sizeof META_BODY - 1, NULL, out, sizeof out),
                     0);
    assert_string_equal(out, META_B64);
}

static void test_sign_too_small_buffer_is_enospc(void **state)
{
    (void)state;
    char out[7 + CX_SIGNATURE_HEX_LEN]; /* one short: no room for the NUL */
    memset(out, 'x', sizeof out);
    assert_int_equal(cx_signature_sign_hex((const unsigned char *)META_SECRET,
                                           sizeof META_SECRET - 1, META_BODY, sizeof META_BODY - 1,
                                           "sha256=", out, sizeof out),
                     CX_ENOSPC);
    assert_int_equal(out[0], '\0');
    char b64[CX_SIGNATURE_BASE64_LEN];
    assert_int_equal(cx_signature_sign_base64((const unsigned char *)META_SECRET,
                                              sizeof META_SECRET - 1, META_BODY,
                                              sizeof META_BODY - 1, NULL, b64, sizeof b64),
                     CX_ENOSPC);
    assert_int_equal(
        cx_signature_sign_hex((const unsigned char *)META_SECRET, 1, "", 0, NULL, NULL, 0),
        CX_EINVAL);
}

/* ---- Standard Webhooks v1 ------------------------------------------------------------------ */

static void test_standard_webhooks_spec_vector_verifies(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, SW_TS, SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &SW_CLOCK, 0, &err),
                     0);
    assert_int_equal(err.code, 0);
}

static void test_standard_webhooks_spec_vector_signs(void **state)
{
    (void)state;
    char sig[CX_STANDARD_WEBHOOKS_SIGNATURE_LEN + 1];
    assert_int_equal(cx_standard_webhooks_sign((const unsigned char *)SW_SECRET,
                                               sizeof SW_SECRET - 1, SW_ID, SW_TS, SW_BODY,
                                               sizeof SW_BODY - 1, sig, sizeof sig),
                     0);
    assert_string_equal(sig, SW_SIG);
    /* Without the whsec_ prefix and with a secret file's trailing newline: the same key. */
    const char *bare = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";
    assert_int_equal(cx_standard_webhooks_sign((const unsigned char *)bare, strlen(bare), SW_ID,
                                               SW_TS, SW_BODY, sizeof SW_BODY - 1, sig, sizeof sig),
                     0);
    assert_string_equal(sig, SW_SIG);
    assert_int_equal(cx_standard_webhooks_sign((const unsigned char *)SW_SECRET,
                                               sizeof SW_SECRET - 1, SW_ID, SW_TS, SW_BODY,
                                               sizeof SW_BODY - 1, sig, sizeof sig - 1),
                     CX_ENOSPC);
}

static void test_standard_webhooks_tampered_body_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    const char *body = "{\"test\": 2432232315}";
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, SW_TS, SW_SIG, body, strlen(body),
                                                 &SW_CLOCK, 0, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "no v1 signature matches");
    assert_string_equal(err.path, "webhook-signature");
}

static void test_standard_webhooks_tampered_id_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, "msg_other", SW_TS, SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &SW_CLOCK, 0, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "no v1 signature matches");
}

static void test_standard_webhooks_wrong_secret_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_OTHER_ONLY, sw_now, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "no v1 signature matches the secret");
}

static void test_standard_webhooks_one_valid_among_several_passes(void **state)
{
    (void)state;
    cx_error_t err;
    const char *sigs[] = {
        /* invalid v1 first, the valid one last */
        "v1,Ceb8+k0yZtaRlqiUuqAlfP8I1PNDr6G4Uq4PfBXGxPE= v1,bm9wZQ== " SW_SIG,
        /* other versions and malformed entries are skipped */
        "v2,abc v1a,xyz garbage " SW_SIG " v1,Ceb8+k0yZtaRlqiUuqAlfP8I1PNDr6G4Uq4PfBXGxPE=",
        /* extra spaces between entries */
        "  v1,bm9wZQ==   " SW_SIG "  ",
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        assert_int_equal(sw_verify_at(&SW_ONLY, sw_now, sigs[i], &err), 0);
}

static void test_standard_webhooks_only_invalid_signatures_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(
        sw_verify_at(&SW_ONLY, sw_now,
                     "v1,Ceb8+k0yZtaRlqiUuqAlfP8I1PNDr6G4Uq4PfBXGxPE= v1,bm9wZQ==", &err),
        CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "no v1 signature matches");
}

static void test_standard_webhooks_no_v1_entry_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    /* The right MAC under another version label does not count. */
    assert_int_equal(
        sw_verify_at(&SW_ONLY, sw_now, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", &err),
        CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "no v1 signature");
    assert_int_equal(
        sw_verify_at(&SW_ONLY, sw_now, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", &err),
        CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "holds no v1 signature");
}

static void test_standard_webhooks_timestamp_too_old_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now + 301, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "timestamp outside the 300 s tolerance");
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "too old");
    assert_string_equal(err.path, "webhook-timestamp");
}

static void test_standard_webhooks_timestamp_too_new_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now - 301, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "timestamp outside the 300 s tolerance");
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "in the future");
}

static void test_standard_webhooks_timestamp_at_tolerance_edge_passes(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now + 300, SW_SIG, &err), 0);
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now - 300, SW_SIG, &err), 0);
}

static void test_standard_webhooks_custom_tolerance(void **state)
{
    (void)state;
    cx_error_t err;
    int64_t now = sw_now + 61;
    cx_clock_t clock = {fixed_clock, &now};
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, SW_TS, SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &clock, 60, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "timestamp outside the 60 s tolerance");
    now = sw_now + 60;
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, SW_TS, SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &clock, 60, &err),
                     0);
}

static void test_standard_webhooks_extreme_clock_does_not_overflow(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_ONLY, INT64_MIN, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "in the future");
    assert_int_equal(sw_verify_at(&SW_ONLY, INT64_MAX, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "too old");
}

static void test_standard_webhooks_malformed_timestamp_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {"-1614265330", "+1614265330", "1614265330.5",
                                      "16142 65330", "0x60367",     "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cx_error_t err;
        cx_error_clear(&err);
        assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, bad[i], SW_SIG, SW_BODY,
                                                     sizeof SW_BODY - 1, &SW_CLOCK, 0, &err),
                         CX_EBAD_SIGNATURE);
        assert_clean_error(&err, CX_EBAD_SIGNATURE, "not a whole number");
    }
}

static void test_standard_webhooks_missing_headers_rejected(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, NULL, SW_TS, SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &SW_CLOCK, 0, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "webhook-id header missing");
    cx_error_clear(&err);
    assert_int_equal(cx_standard_webhooks_verify(&SW_ONLY, SW_ID, "", SW_SIG, SW_BODY,
                                                 sizeof SW_BODY - 1, &SW_CLOCK, 0, &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "webhook-timestamp header missing");
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now, NULL, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "webhook-signature header missing");
}

static void test_standard_webhooks_previous_secret_accepted_during_rotation(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_ROTATING, sw_now, SW_SIG, &err), 0);
    /* And a signature under the new current secret passes as well. */
    char sig[CX_STANDARD_WEBHOOKS_SIGNATURE_LEN + 1];
    assert_int_equal(cx_standard_webhooks_sign((const unsigned char *)SW_OTHER_SECRET,
                                               sizeof SW_OTHER_SECRET - 1, SW_ID, SW_TS, SW_BODY,
                                               sizeof SW_BODY - 1, sig, sizeof sig),
                     0);
    assert_int_equal(sw_verify_at(&SW_ROTATING, sw_now, sig, &err), 0);
}

static void test_standard_webhooks_previous_secret_rejected_without_rotation(void **state)
{
    (void)state;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&SW_OTHER_ONLY, sw_now, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, "matches the secret");
}

static void test_standard_webhooks_bad_secret_is_config_error(void **state)
{
    (void)state;
    static const char *const bad[] = {"whsec_", "whsec_not base64!", "whsec_QUJD*", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cx_secret_pair_t s = {(const unsigned char *)bad[i], strlen(bad[i]), NULL, 0};
        cx_error_t err;
        assert_int_equal(sw_verify_at(&s, sw_now, SW_SIG, &err), CX_ECONFIG);
        assert_int_equal(err.code, CX_ECONFIG);
    }
    cx_secret_pair_t prev_bad = SW_ONLY;
    prev_bad.previous = (const unsigned char *)"whsec_%%%";
    prev_bad.previous_len = 9;
    cx_error_t err;
    assert_int_equal(sw_verify_at(&prev_bad, sw_now, SW_SIG, &err), CX_ECONFIG);
    assert_clean_error(&err, CX_ECONFIG, "previous");
}

static void test_standard_webhooks_secret_decode(void **state)
{
    (void)state;
    unsigned char key[CX_STANDARD_WEBHOOKS_MAX_KEY];
    size_t n = 0;
    assert_int_equal(cx_standard_webhooks_secret_decode((const unsigned char *)SW_SECRET,
                                                        sizeof SW_SECRET - 1, key, sizeof key, &n),
                     0);
    assert_int_equal(n, 24);
    assert_int_equal(cx_standard_webhooks_secret_decode((const unsigned char *)SW_SECRET,
                                                        sizeof SW_SECRET - 1, key, 23, &n),
                     CX_ENOSPC);
    assert_int_equal(cx_standard_webhooks_secret_decode((const unsigned char *)"whsec_!!", 8, key,
                                                        sizeof key, &n),
                     CX_ECONFIG);
}

static void test_error_text_never_leaks_secret_or_signature(void **state)
{
    (void)state;
    /* Every failure path in one place, each checked against the forbidden strings. */
    cx_error_t err;
    assert_int_equal(verify_hex(&META_ONLY, "x", "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(verify_hex(&ROTATING, "x", "sha256=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(verify_b64(&ROTATING, "x", META_B64, NULL, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(verify_hex(&META_ONLY, META_BODY, "sha1=" META_HEX, "sha256=", &err),
                     CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(sw_verify_at(&SW_ROTATING, sw_now, "v1,bm9wZQ==", &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(sw_verify_at(&SW_OTHER_ONLY, sw_now, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    assert_int_equal(sw_verify_at(&SW_ONLY, sw_now + 1000, SW_SIG, &err), CX_EBAD_SIGNATURE);
    assert_clean_error(&err, CX_EBAD_SIGNATURE, NULL);
    cx_secret_pair_t bad = {(const unsigned char *)"whsec_MfKQ9r8G*", 15, NULL, 0};
    assert_int_equal(sw_verify_at(&bad, sw_now, SW_SIG, &err), CX_ECONFIG);
    assert_clean_error(&err, CX_ECONFIG, NULL);
}

/* ---- Clock --------------------------------------------------------------------------------- */

static void test_clock_null_is_wall_clock(void **state)
{
    (void)state;
    int64_t before = (int64_t)time(NULL);
    int64_t now = cx_clock_now(NULL);
    int64_t after = (int64_t)time(NULL);
    assert_true(now >= before && now <= after);
    cx_clock_t no_fn = {NULL, NULL};
    now = cx_clock_now(&no_fn);
    assert_true(now >= before && now <= (int64_t)time(NULL));
}

static void test_clock_injected_function_is_used(void **state)
{
    (void)state;
    int64_t t = 42;
    cx_clock_t c = {fixed_clock, &t};
    assert_int_equal(cx_clock_now(&c), 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_sha256_matches_rfc4231_case_2),
        cmocka_unit_test(test_hmac_sha256_matches_rfc4231_case_6_long_key),
        cmocka_unit_test(test_hmac_sha256_empty_key_and_data),
        cmocka_unit_test(test_hmac_sha256_rejects_null_arguments),
        cmocka_unit_test(test_hex_valid_signature_passes),
        cmocka_unit_test(test_hex_uppercase_digits_pass),
        cmocka_unit_test(test_hex_surrounding_whitespace_ignored),
        cmocka_unit_test(test_hex_without_prefix_passes),
        cmocka_unit_test(test_hex_tampered_body_rejected),
        cmocka_unit_test(test_hex_wrong_secret_rejected),
        cmocka_unit_test(test_hex_one_flipped_digit_rejected),
        cmocka_unit_test(test_hex_missing_header_rejected),
        cmocka_unit_test(test_hex_empty_header_rejected),
        cmocka_unit_test(test_hex_wrong_prefix_rejected),
        cmocka_unit_test(test_hex_bad_length_rejected),
        cmocka_unit_test(test_hex_non_hex_digit_rejected),
        cmocka_unit_test(test_hex_no_secret_is_config_error),
        cmocka_unit_test(test_verify_accepts_null_err),
        cmocka_unit_test(test_previous_secret_accepted_during_rotation),
        cmocka_unit_test(test_current_secret_accepted_during_rotation),
        cmocka_unit_test(test_previous_secret_rejected_without_rotation),
        cmocka_unit_test(test_rotation_mismatch_names_both_secrets),
        cmocka_unit_test(test_base64_valid_signature_passes),
        cmocka_unit_test(test_base64_without_padding_passes),
        cmocka_unit_test(test_base64_with_prefix_passes),
        cmocka_unit_test(test_base64_tampered_body_rejected),
        cmocka_unit_test(test_base64_wrong_secret_rejected),
        cmocka_unit_test(test_base64_malformed_rejected),
        cmocka_unit_test(test_sign_hex_round_trips),
        cmocka_unit_test(test_sign_base64_round_trips),
        cmocka_unit_test(test_sign_too_small_buffer_is_enospc),
        cmocka_unit_test(test_standard_webhooks_spec_vector_verifies),
        cmocka_unit_test(test_standard_webhooks_spec_vector_signs),
        cmocka_unit_test(test_standard_webhooks_tampered_body_rejected),
        cmocka_unit_test(test_standard_webhooks_tampered_id_rejected),
        cmocka_unit_test(test_standard_webhooks_wrong_secret_rejected),
        cmocka_unit_test(test_standard_webhooks_one_valid_among_several_passes),
        cmocka_unit_test(test_standard_webhooks_only_invalid_signatures_rejected),
        cmocka_unit_test(test_standard_webhooks_no_v1_entry_rejected),
        cmocka_unit_test(test_standard_webhooks_timestamp_too_old_rejected),
        cmocka_unit_test(test_standard_webhooks_timestamp_too_new_rejected),
        cmocka_unit_test(test_standard_webhooks_timestamp_at_tolerance_edge_passes),
        cmocka_unit_test(test_standard_webhooks_custom_tolerance),
        cmocka_unit_test(test_standard_webhooks_extreme_clock_does_not_overflow),
        cmocka_unit_test(test_standard_webhooks_malformed_timestamp_rejected),
        cmocka_unit_test(test_standard_webhooks_missing_headers_rejected),
        cmocka_unit_test(test_standard_webhooks_previous_secret_accepted_during_rotation),
        cmocka_unit_test(test_standard_webhooks_previous_secret_rejected_without_rotation),
        cmocka_unit_test(test_standard_webhooks_bad_secret_is_config_error),
        cmocka_unit_test(test_standard_webhooks_secret_decode),
        cmocka_unit_test(test_error_text_never_leaks_secret_or_signature),
        cmocka_unit_test(test_clock_null_is_wall_clock),
        cmocka_unit_test(test_clock_injected_function_is_used),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
