/* Shared by the stores of durable processing (queue, dead letters, rate limits): name checks,
 * clocks and the Redis reply helpers, so every store behaves the same. */
#ifndef CX_STORES_DURABLE_INTERNAL_H
#define CX_STORES_DURABLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cx/error.h"

/* Checks a key segment: 1..max characters of [A-Za-z0-9._-] (no ':' and no braces, so one
 * environment or queue can never alias another's keys). what names it in the error. Returns 0
 * or CX_EINVAL. */
int cx__store_check_name(const char *s, size_t max, const char *what, cx_error_t *err);

/* Unix time in milliseconds (CLOCK_REALTIME) / monotonic milliseconds. */
int64_t cx__wall_ms(void);
int64_t cx__mono_now_ms(void);

#endif /* CX_STORES_DURABLE_INTERNAL_H */
