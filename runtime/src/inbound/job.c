/* The job record (job.h): tag-length-value fields after a magic. */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound/job.h"

#define MAGIC "cxj1"

enum {
    T_CONNECTOR = 1,
    T_TYPE = 2,
    T_TENANT = 3,
    T_ACCOUNT = 4,
    T_KEY = 5,
    T_TOKEN = 6,
    T_DONE_TTL = 7,
    T_CORRELATION = 8,
    T_ATTEMPT = 9,
    T_FIRST_MS = 10,
    T_FLAGS = 11,
    T_LAST_ERROR = 12,
    T_EVENT = 13,
    T_CAPABILITY = 14,
    T_ID = 20,
    T_REASON = 21,
    T_ERROR_CODE = 22,
    T_ERROR_CLASS = 23,
    T_MESSAGE = 24,
    T_DEAD_MS = 25
};

static void put(cx_buf_t *b, int tag, const void *v, size_t len)
{
    unsigned char h[5] = {(unsigned char)tag, (unsigned char)(len & 0xff),
                          (unsigned char)((len >> 8) & 0xff), (unsigned char)((len >> 16) & 0xff),
                          (unsigned char)((len >> 24) & 0xff)};
    cx_buf_append(b, h, 5);
    if (len)
        cx_buf_append(b, v, len);
}

static void put_str(cx_buf_t *b, int tag, const char *s)
{
    if (s)
        put(b, tag, s, strlen(s));
}

static void put_int(cx_buf_t *b, int tag, int64_t v)
{
    char n[24];
    int len = snprintf(n, sizeof n, "%" PRId64, v);
    put(b, tag, n, (size_t)len);
}

int cx__job_encode(const cx__job_t *j, cx_buf_t *b)
{
    cx_buf_append(b, MAGIC, 4);
    put_str(b, T_CONNECTOR, j->connector);
    put_str(b, T_TYPE, j->type);
    put_str(b, T_CAPABILITY, j->capability);
    put_str(b, T_TENANT, j->tenant);
    put_str(b, T_ACCOUNT, j->account);
    put_str(b, T_KEY, j->key);
    if (j->token[0])
        put_str(b, T_TOKEN, j->token);
    put_int(b, T_DONE_TTL, j->done_ttl_s);
    put_str(b, T_CORRELATION, j->correlation_id);
    put_int(b, T_ATTEMPT, j->attempt);
    put_int(b, T_FIRST_MS, j->first_ms);
    if (j->flags)
        put_int(b, T_FLAGS, j->flags);
    if (j->last_error)
        put_int(b, T_LAST_ERROR, j->last_error);
    if (j->event)
        put(b, T_EVENT, j->event, j->event_len);
    put_str(b, T_ID, j->id);
    put_str(b, T_REASON, j->reason);
    put_str(b, T_ERROR_CODE, j->error_code);
    put_str(b, T_ERROR_CLASS, j->error_class);
    put_str(b, T_MESSAGE, j->message);
    if (j->dead_ms)
        put_int(b, T_DEAD_MS, j->dead_ms);
    return cx_buf_error(b);
}

static int64_t to_int(const unsigned char *v, size_t len)
{
    char n[24];
    if (len >= sizeof n)
        return 0;
    memcpy(n, v, len);
    n[len] = '\0';
    return strtoll(n, NULL, 10);
}

int cx__job_decode(const unsigned char *p, size_t len, cx_arena_t *arena, cx__job_t *j)
{
    memset(j, 0, sizeof *j);
    if (len < 4 || memcmp(p, MAGIC, 4) != 0)
        return CX_EMALFORMED;
    size_t o = 4;
    while (o < len) {
        if (len - o < 5)
            return CX_EMALFORMED;
        int tag = p[o];
        size_t n = (size_t)p[o + 1] | (size_t)p[o + 2] << 8 | (size_t)p[o + 3] << 16 |
                   (size_t)p[o + 4] << 24;
        o += 5;
        if (n > len - o)
            return CX_EMALFORMED;
        const unsigned char *v = p + o;
        o += n;
        const char **s = NULL;
        switch (tag) {
        case T_CONNECTOR:
            s = &j->connector;
            break;
        case T_TYPE:
            s = &j->type;
            break;
        case T_CAPABILITY:
            s = &j->capability;
            break;
        case T_TENANT:
            s = &j->tenant;
            break;
        case T_ACCOUNT:
            s = &j->account;
            break;
        case T_KEY:
            s = &j->key;
            break;
        case T_CORRELATION:
            s = &j->correlation_id;
            break;
        case T_ID:
            s = &j->id;
            break;
        case T_REASON:
            s = &j->reason;
            break;
        case T_ERROR_CODE:
            s = &j->error_code;
            break;
        case T_ERROR_CLASS:
            s = &j->error_class;
            break;
        case T_MESSAGE:
            s = &j->message;
            break;
        case T_TOKEN:
            if (n != CX_DEDUPE_TOKEN_SIZE - 1)
                return CX_EMALFORMED;
            memcpy(j->token, v, n);
            j->token[n] = '\0';
            break;
        case T_DONE_TTL:
            j->done_ttl_s = (uint32_t)to_int(v, n);
            break;
        case T_ATTEMPT:
            j->attempt = (uint32_t)to_int(v, n);
            break;
        case T_FIRST_MS:
            j->first_ms = to_int(v, n);
            break;
        case T_FLAGS:
            j->flags = (uint32_t)to_int(v, n);
            break;
        case T_LAST_ERROR:
            j->last_error = (int)to_int(v, n);
            break;
        case T_DEAD_MS:
            j->dead_ms = to_int(v, n);
            break;
        case T_EVENT: {
            unsigned char *e = cx_arena_alloc(arena, n ? n : 1);
            if (e == NULL)
                return CX_ENOSPC;
            memcpy(e, v, n);
            j->event = e;
            j->event_len = n;
            break;
        }
        default: /* a field of a later release */
            break;
        }
        if (s) {
            if ((*s = cx_arena_strndup(arena, (const char *)v, n)) == NULL)
                return CX_ENOSPC;
        }
    }
    return 0;
}
