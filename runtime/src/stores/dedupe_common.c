/* What both dedupe stores share: argument checks, the environment prefix and claim tokens. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/words.h"
#include "stores/dedupe_internal.h"

int cx__dedupe_prefix(const char *environment, char prefix[96], cx_error_t *err)
{
    if (environment == NULL || environment[0] == '\0')
        return cx_error_set(err, CX_EINVAL, "environment", "environment is empty");
    size_t len = strlen(environment);
    if (len > 64)
        return cx_error_set(err, CX_EINVAL, "environment", "environment longer than 64");
    /* ':' is the segment separator: "a:dedupe:b" as an environment would alias another
     * environment's keys, so only a conservative alphabet is accepted. */
    for (size_t i = 0; i < len; i++) {
        char c = environment[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return cx_error_set(err, CX_EINVAL, "environment",
                                "environment may only hold [A-Za-z0-9._-]");
    }
    memcpy(prefix, "cx:", 3);
    memcpy(prefix + 3, environment, len);
    memcpy(prefix + 3 + len, ":dedupe:", sizeof ":dedupe:");
    return 0;
}

int cx__dedupe_check_batch(const cx_dedupe_item_t *items, size_t n, cx_error_t *err)
{
    if (n > 0 && items == NULL)
        return cx_error_set(err, CX_EINVAL, "items", "items is NULL");
    if (n > CX_DEDUPE_BATCH_MAX)
        return cx_error_set(err, CX_EINVAL, "items", "batch of %zu items exceeds %u", n,
                            (unsigned)CX_DEDUPE_BATCH_MAX);
    return 0;
}

static int key_len(const char *key, size_t *len)
{
    if (key == NULL || key[0] == '\0')
        return CX_EINVAL;
    /* memchr bounds the scan: a missing NUL must not run past the limit. */
    const char *nul = memchr(key, '\0', CX_DEDUPE_KEY_MAX + 1);
    if (nul == NULL)
        return CX_EINVAL;
    *len = (size_t)(nul - key);
    return 0;
}

int cx__dedupe_check_claim(const cx_dedupe_item_t *items, size_t n, uint32_t ttl_ms, size_t *lens,
                           cx_error_t *err)
{
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0)
        return rc;
    if (ttl_ms == 0)
        return cx_error_set(err, CX_EINVAL, "processing_ttl_ms", "processing TTL is 0");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        if (key_len(items[i].key, &len) != 0) {
            char path[32];
            snprintf(path, sizeof path, "items[%zu].key", i);
            return cx_error_set(err, CX_EINVAL, path, "key is NULL, empty or longer than %d",
                                CX_DEDUPE_KEY_MAX);
        }
        if (lens)
            lens[i] = len;
    }
    return 0;
}

/* Bit 7 of each byte of the result is set where that byte of x is not a lowercase hex digit.
 * With bit 7 cleared first, adding a constant below 0x80 to every byte carries into no
 * neighbour, and bit 7 of each sum tells whether the byte reached the constant's bound; a
 * byte of 0x80 or more fails on its own bit 7. Eight characters cost a dozen instructions
 * instead of eight compare-and-branch rounds (complete and release check every item). */
static uint64_t not_lower_hex8(uint64_t x)
{
    uint64_t low = x & ~CX__HIGHS;
    uint64_t digit = (low + CX__ONES * (0x80 - '0')) & ~(low + CX__ONES * (0x80 - '9' - 1));
    uint64_t letter = (low + CX__ONES * (0x80 - 'a')) & ~(low + CX__ONES * (0x80 - 'f' - 1));
    return (~(digit | letter) | x) & CX__HIGHS;
}

_Static_assert(CX__DEDUPE_TOKEN_LEN % 8 == 0, "the token is checked eight characters at a time");

int cx__dedupe_check_owned(const cx_dedupe_item_t *item, size_t *keylen)
{
    if (item->state != CX_CLAIM_OWNED || key_len(item->key, keylen) != 0)
        return CX_EINVAL;
    uint64_t bad = 0;
    for (int i = 0; i < CX__DEDUPE_TOKEN_LEN; i += 8)
        bad |= not_lower_hex8(cx__word(item->token + i));
    return bad == 0 && item->token[CX__DEDUPE_TOKEN_LEN] == '\0' ? 0 : CX_EINVAL;
}

void cx__dedupe_set_rc(cx_dedupe_item_t *items, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        items[i].rc = code;
}

/* ---- Claim tokens ----------------------------------------------------------------------
 *
 * A token is 16 hex digits of a random process prefix followed by 16 hex digits of a counter.
 * Only uniqueness matters (a token is not a secret, it names a claim), so one RAND_bytes call
 * per process is enough and a claim costs an atomic add. A forked child must not reuse its
 * parent's prefix and counter: a pthread_atfork child handler clears the stored pid, and the
 * child's first claim makes a new prefix. The pid is stored after the prefix with release
 * order, so a reader that sees it set sees its prefix. */

static pthread_mutex_t g_token_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_long g_token_pid; /* the pid g_token_prefix belongs to; 0 = none */
static char g_token_prefix[16]; /* hex; written under g_token_mu before the pid */
static atomic_uint_fast64_t g_token_counter;

static const char HEX[] = "0123456789abcdef";

static void hex64(char *out, uint64_t v)
{
    for (int i = 15; i >= 0; i--) {
        out[i] = HEX[v & 0xf];
        v >>= 4;
    }
}

/* A forked child forgets the prefix (registered once, at the first claim): the check on every
 * claim is then one atomic load instead of a getpid() system call. */
static void token_forget_after_fork(void)
{
    atomic_store_explicit(&g_token_pid, 0, memory_order_relaxed);
}

static pthread_once_t g_token_atfork_once = PTHREAD_ONCE_INIT;

static void token_register_atfork(void)
{
    pthread_atfork(NULL, NULL, token_forget_after_fork);
}

static int token_prefix_ready(void)
{
    if (atomic_load_explicit(&g_token_pid, memory_order_acquire) != 0)
        return 0;
    pthread_once(&g_token_atfork_once, token_register_atfork);
    long pid = (long)getpid();
    int rc = 0;
    pthread_mutex_lock(&g_token_mu);
    if (atomic_load_explicit(&g_token_pid, memory_order_relaxed) != pid) {
        unsigned char r[8];
        if (RAND_bytes(r, sizeof r) != 1) {
            rc = CX_ECRYPTO;
        } else {
            uint64_t v = 0;
            for (size_t i = 0; i < sizeof r; i++)
                v = (v << 8) | r[i];
            hex64(g_token_prefix, v);
            atomic_store_explicit(&g_token_pid, pid, memory_order_release);
        }
    }
    pthread_mutex_unlock(&g_token_mu);
    return rc;
}

int cx__dedupe_new_tokens(cx_dedupe_item_t *items, size_t n, cx_error_t *err)
{
    if (n == 0)
        return 0;
    if (token_prefix_ready() != 0)
        return cx_error_set(err, CX_ECRYPTO, NULL, "no random bytes for claim tokens");
    uint64_t c = atomic_fetch_add_explicit(&g_token_counter, n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        memcpy(items[i].token, g_token_prefix, 16);
        hex64(items[i].token + 16, c + i);
        items[i].token[CX__DEDUPE_TOKEN_LEN] = '\0';
    }
    return 0;
}

#ifndef CX_WITH_REDIS
/* Built without hiredis: the symbol exists so callers link in both configurations. */
int cx_dedupe_store_redis(const char *environment, const cx_redis_options_t *opts,
                          cx_dedupe_store_t **out, cx_error_t *err)
{
    (void)environment;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}
#endif
