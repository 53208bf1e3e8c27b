/* Private: the table of every generated message, emitted by cx-gen in
 * generated/tables/registry.cx.c, sorted by full name. */
#ifndef CX_SCHEMA_REGISTRY_H
#define CX_SCHEMA_REGISTRY_H

#include <stddef.h>

#include "cx/schema.h"

extern const cx_msg_meta_t *const cx__schema_registry[];
extern const size_t cx__schema_registry_len;

#endif /* CX_SCHEMA_REGISTRY_H */
