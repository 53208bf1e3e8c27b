/* The connectors linked into cx-conformance (built-in), each with its fixture directory. */
#ifndef CX_CONFORMANCE_BUILTIN_H
#define CX_CONFORMANCE_BUILTIN_H

#include <stddef.h>

#include "cx/connector.h"

typedef struct cx_conf_builtin_s {
    const char *name;                   /* the manifest id */
    const cx_connector_t *(*get)(void); /* the connector */
    const char *fixtures;               /* its fixtures, relative to the source tree */
} cx_conf_builtin_t;

/* The table; *n receives its length. */
const cx_conf_builtin_t *cx_conf_builtins(size_t *n);

#endif
