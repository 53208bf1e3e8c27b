/* What the intent stores and rate limiters share: prefixes, key checks, tokens, and the v1
 * value codec (cx/outbound.h). */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stores/dedupe_internal.h"
#include "stores/intent_internal.h"

_Static_assert(CX_EIN_DOUBT == -27, "CX__INTENT_DOUBT_TAIL spells CX_EIN_DOUBT");

int cx__store_prefix(const char *environment, const char *kind, char prefix[96], cx_error_t *err)
{
    char tmp[96];
    /* the dedupe store's check is the one rule for environment names */
    int rc = cx__dedupe_prefix(environment, tmp, err);
    if (rc != 0)
        return rc;
    snprintf(prefix, 96, "cx:%s:%s:", environment, kind);
    return 0;
}

int cx__intent_check_key(const char *key, size_t *len, cx_error_t *err)
{
    const char *nul = key ? memchr(key, '\0', CX_DEDUPE_KEY_MAX + 1) : NULL;
    if (key == NULL || key[0] == '\0' || nul == NULL)
        return cx_error_set(err, CX_EINVAL, "key", "intent key is NULL, empty or longer than %d",
                            CX_DEDUPE_KEY_MAX);
    *len = (size_t)(nul - key);
    return 0;
}

int cx__intent_new_token(char token[CX_DEDUPE_TOKEN_SIZE], cx_error_t *err)
{
    cx_dedupe_item_t it;
    memset(&it, 0, sizeof it);
    int rc = cx__dedupe_new_tokens(&it, 1, err);
    if (rc == 0)
        memcpy(token, it.token, CX_DEDUPE_TOKEN_SIZE);
    return rc;
}

const char *cx__intent_state_word(cx_intent_state_t state)
{
    switch (state) {
    case CX_INTENT_SENDING:
        return CX__INTENT_SENDING;
    case CX_INTENT_DONE:
        return CX__INTENT_DONE;
    case CX_INTENT_FAILED:
        return CX__INTENT_FAILED;
    case CX_INTENT_IN_DOUBT:
        return CX__INTENT_IN_DOUBT;
    default:
        return NULL;
    }
}

const char *cx_intent_state_name(cx_intent_state_t state)
{
    const char *w = cx__intent_state_word(state);
    return w ? w : state == CX_INTENT_NONE ? "none" : "unknown";
}

void cx__intent_none(cx_intent_t *out)
{
    out->state = CX_INTENT_NONE;
    out->mine = 0;
    out->lapsed = 0;
    out->token[0] = '\0';
    out->updated_ms = 0;
    out->lease_until_ms = 0;
    out->code = 0;
    out->http_status = 0;
    out->provider_message_id[0] = '\0';
    out->provider_code[0] = '\0';
    out->result_len = 0;
    out->result[0] = '\0';
}

int cx__intent_encode_tail(const cx_intent_t *rec, char *out)
{
    size_t idlen = strnlen(rec->provider_message_id, CX_INTENT_ID_MAX + 1);
    size_t pclen = strnlen(rec->provider_code, CX_INTENT_CODE_MAX + 1);
    if (idlen > CX_INTENT_ID_MAX || pclen > CX_INTENT_CODE_MAX ||
        rec->result_len > CX_INTENT_RESULT_MAX)
        return -1;
    int n = snprintf(out, 128, "%d|%d|%zu:", rec->code, rec->http_status, idlen);
    memcpy(out + n, rec->provider_message_id, idlen);
    n += (int)idlen;
    n += snprintf(out + n, 32, "|%zu:", pclen);
    memcpy(out + n, rec->provider_code, pclen);
    n += (int)pclen;
    out[n++] = '|';
    memcpy(out + n, rec->result, rec->result_len);
    n += (int)rec->result_len;
    out[n] = '\0';
    return n;
}

int cx__intent_encode(const char *state_word, const char *token, int64_t updated_ms,
                      int64_t lease_ms, const char *tail, size_t tail_len, char *out)
{
    if (tail_len > CX__INTENT_TAIL_MAX)
        return -1;
    int n = snprintf(out, 128, "v1|%s|%s|%" PRId64 "|%" PRId64 "|", state_word, token, updated_ms,
                     lease_ms);
    memcpy(out + n, tail, tail_len);
    n += (int)tail_len;
    out[n] = '\0';
    return n;
}

/* ---- Decoding ----------------------------------------------------------------------------- */

typedef struct cur_s {
    const char *p, *end;
    int bad;
} cur_t;

/* The bytes up to the next '|' (consumed). */
static size_t field(cur_t *c, const char **start)
{
    *start = c->p;
    const char *bar = c->p < c->end ? memchr(c->p, '|', (size_t)(c->end - c->p)) : NULL;
    if (bar == NULL) {
        c->bad = 1;
        return 0;
    }
    size_t n = (size_t)(bar - c->p);
    c->p = bar + 1;
    return n;
}

static int64_t num(cur_t *c)
{
    const char *s;
    size_t n = field(c, &s);
    if (c->bad || n == 0 || n > 20)
        return c->bad = 1, 0;
    int neg = 0;
    size_t i = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    int64_t v = 0;
    if (i == n)
        return c->bad = 1, 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return c->bad = 1, 0;
        v = v * 10 + (s[i] - '0');
    }
    return neg ? -v : v;
}

/* "<n>:<bytes>|" into dst (cap includes the NUL). */
static void counted(cur_t *c, char *dst, size_t cap)
{
    size_t n = 0;
    const char *p = c->p;
    while (p < c->end && *p >= '0' && *p <= '9' && n < 1000000)
        n = n * 10 + (size_t)(*p++ - '0');
    if (p == c->p || p >= c->end || *p != ':' || n >= cap || (size_t)(c->end - p - 1) < n + 1 ||
        p[1 + n] != '|') {
        c->bad = 1;
        return;
    }
    memcpy(dst, p + 1, n);
    dst[n] = '\0';
    c->p = p + 1 + n + 1;
}

void cx__intent_decode(const char *value, size_t len, cx_intent_t *out)
{
    cx__intent_none(out);
    cur_t c = {value, value + len, 0};
    const char *s;
    size_t n;
    if (len < 3 || memcmp(value, "v1|", 3) != 0)
        goto unknown;
    c.p += 3;
    n = field(&c, &s);
    if (c.bad)
        goto unknown;
    if (n == 7 && memcmp(s, CX__INTENT_SENDING, 7) == 0)
        out->state = CX_INTENT_SENDING;
    else if (n == 4 && memcmp(s, CX__INTENT_DONE, 4) == 0)
        out->state = CX_INTENT_DONE;
    else if (n == 6 && memcmp(s, CX__INTENT_FAILED, 6) == 0)
        out->state = CX_INTENT_FAILED;
    else if (n == 8 && memcmp(s, CX__INTENT_IN_DOUBT, 8) == 0)
        out->state = CX_INTENT_IN_DOUBT;
    else
        goto unknown;
    n = field(&c, &s);
    if (c.bad || n >= CX_DEDUPE_TOKEN_SIZE)
        goto unknown;
    memcpy(out->token, s, n);
    out->token[n] = '\0';
    out->updated_ms = num(&c);
    out->lease_until_ms = num(&c);
    out->code = (int)num(&c);
    out->http_status = (int)num(&c);
    if (c.bad)
        goto unknown;
    counted(&c, out->provider_message_id, sizeof out->provider_message_id);
    counted(&c, out->provider_code, sizeof out->provider_code);
    if (c.bad || (size_t)(c.end - c.p) > CX_INTENT_RESULT_MAX)
        goto unknown;
    out->result_len = (size_t)(c.end - c.p);
    memcpy(out->result, c.p, out->result_len);
    out->result[out->result_len] = '\0';
    return;
unknown:
    /* Another format (a later release) or damage: we cannot tell whether it was sent. */
    cx__intent_none(out);
    out->state = CX_INTENT_IN_DOUBT;
    out->code = CX_EIN_DOUBT;
}

int64_t cx__intent_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#ifndef CX_WITH_REDIS
int cx_intent_store_redis(const char *environment, const cx_redis_options_t *redis,
                          const cx_intent_redis_options_t *opts, cx_intent_store_t **out,
                          cx_error_t *err)
{
    (void)environment;
    (void)redis;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}

int cx_outbound_limiter_redis(const char *environment, const cx_redis_options_t *redis,
                              cx_outbound_limiter_t **out, cx_error_t *err)
{
    (void)environment;
    (void)redis;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}
#endif
