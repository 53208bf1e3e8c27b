/* What the durable-processing stores share (durable_internal.h). */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cx/dlq.h"
#include "cx/queue.h"
#include "cx/ratelimit.h"
#include "stores/durable_internal.h"

int cx__store_check_name(const char *s, size_t max, const char *what, cx_error_t *err)
{
    if (s == NULL || s[0] == '\0')
        return cx_error_set(err, CX_EINVAL, what, "%s is empty", what);
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return cx_error_set(err, CX_EINVAL, what, "%s longer than %zu", what, max);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return cx_error_set(err, CX_EINVAL, what, "%s may only hold [A-Za-z0-9._-]", what);
    }
    return 0;
}

int64_t cx__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cx__mono_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cx_queue_msgs_free(cx_queue_msg_t *msgs, size_t n)
{
    for (size_t i = 0; msgs && i < n; i++) {
        free(msgs[i].data);
        msgs[i].data = NULL;
        msgs[i].len = 0;
    }
}

#ifndef CX_WITH_REDIS
/* Built without hiredis: the symbols exist so callers link in both configurations. */
int cx_queue_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                   cx_queue_t **out, cx_error_t *err)
{
    (void)environment;
    (void)name;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}

int cx_dlq_redis(const char *environment, const char *name, const cx_redis_options_t *opts,
                 cx_dlq_t **out, cx_error_t *err)
{
    (void)environment;
    (void)name;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}

int cx_ratelimit_redis(const char *environment, const cx_redis_options_t *opts,
                       cx_ratelimit_t **out, cx_error_t *err)
{
    (void)environment;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}
#endif
