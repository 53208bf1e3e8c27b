/* The message registry: look-ups by full name (bisection over the generated, sorted table) and
 * by event type (a linear scan: event types are looked up once per delivery, after the much
 * more frequent full-name look-ups, and the table is small). */
#include <string.h>

#include "schema/registry.h"

const cx_msg_meta_t *cx_schema_find(const char *name)
{
    if (name == NULL)
        return NULL;
    size_t lo = 0, hi = cx__schema_registry_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(name, cx__schema_registry[mid]->full_name);
        if (cmp == 0)
            return cx__schema_registry[mid];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (size_t i = 0; i < cx__schema_registry_len; i++) {
        const char *et = cx__schema_registry[i]->event_type;
        if (et != NULL && strcmp(name, et) == 0)
            return cx__schema_registry[i];
    }
    return NULL;
}

const cx_msg_meta_t *const *cx_schema_all(size_t *n)
{
    if (n != NULL)
        *n = cx__schema_registry_len;
    return cx__schema_registry;
}
