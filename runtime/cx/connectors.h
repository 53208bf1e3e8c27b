/* Private: the connectors `cx` hosts, built-in ones and shared objects (--connector-lib).
 *
 * A shared object exports CX_CONNECTOR_ENTRY_SYMBOL, `const cx_connector_t
 * *cx_connector_entry(void)`; the runtime checks the struct's ABI version and size when the
 * connector is added (CX_EABI for a connector built against another SDK release). Loaded
 * objects stay mapped until cx_connectors_free(), after the runtime is gone.
 */
#ifndef CX_CLI_CONNECTORS_H
#define CX_CLI_CONNECTORS_H

#include <stddef.h>

#include "cx/connector.h"

#define CX_CLI_MAX_CONNECTORS 64

typedef struct cx_connector_set_s {
    const cx_connector_t *items[CX_CLI_MAX_CONNECTORS];
    size_t n;
    void *handles[CX_CLI_MAX_CONNECTORS]; /* dlopen handles */
    size_t n_handles;
} cx_connector_set_t;

/* Adds the built-in connectors (the adapters compiled into cx). */
void cx_connectors_builtin(cx_connector_set_t *set);

/* dlopen()s path and adds the connector it exports. Returns 0 or -1 with a one-line reason in
 * why (cannot load, no entry symbol, NULL connector, a connector id already present). */
int cx_connectors_load(cx_connector_set_t *set, const char *path, char *why, size_t cap);

/* The connector with this manifest id, or NULL. */
/* Keeps only the connectors named in list ("whatsapp,test"); -1 with the reason when one is
 * unknown. */
int cx_connectors_select(cx_connector_set_t *set, const char *list, char *why, size_t cap);

const cx_connector_t *cx_connectors_find(const cx_connector_set_t *set, const char *id);

/* Unloads the shared objects. No connector of the set may be in use. */
void cx_connectors_free(cx_connector_set_t *set);

#endif
