/* The injectable clock (cx/clock.h): the caller's function, or the wall clock. */
#include <time.h>

#include "cx/clock.h"

int64_t cx_clock_now(const cx_clock_t *c)
{
    if (c != NULL && c->now != NULL)
        return c->now(c->ud);
    return (int64_t)time(NULL);
}
