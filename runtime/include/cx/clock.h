/* An injectable clock: Unix seconds from a function the caller chooses.
 *
 * Everything in libcx that compares against "now" (webhook timestamp tolerance, TTLs, token
 * expiry) takes a `const cx_clock_t *` so tests can pin time instead of sleeping. NULL, or a
 * clock whose `now` is NULL, means the real wall clock, time(NULL).
 *
 *     static int64_t fixed(void *ud) { return *(const int64_t *)ud; }
 *     int64_t t = 1614265330; cx_clock_t c = {fixed, &t}; cx_clock_now(&c); // 1614265330
 */
#ifndef CX_CLOCK_H
#define CX_CLOCK_H

#include <stdint.h>

#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the current time in Unix seconds. ud is the clock's user data. */
typedef int64_t (*cx_clock_fn)(void *ud);

/* A clock: a function and its user data. Caller-owned; libcx only reads it. */
typedef struct cx_clock_s {
    cx_clock_fn now; /* NULL: the real clock */
    void *ud;        /* passed to now; may be NULL */
} cx_clock_t;

/* The time of clock c in Unix seconds; c may be NULL (or c->now NULL): then time(NULL).
 * Never fails. Thread-safe when c->now is.
 *
 *     int64_t now = cx_clock_now(NULL);        // wall clock
 *     int64_t t = cx_clock_now(&test_clock);   // whatever the test pinned
 */
CX_API int64_t cx_clock_now(const cx_clock_t *c);

#ifdef __cplusplus
}
#endif

#endif /* CX_CLOCK_H */
