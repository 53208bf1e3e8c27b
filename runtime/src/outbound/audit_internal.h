/* Private: what the audit chain (outbound/audit.c) shares with its stores
 * (stores/audit_file.c, stores/audit_redis.c). */
#ifndef CX_OUTBOUND_AUDIT_INTERNAL_H
#define CX_OUTBOUND_AUDIT_INTERNAL_H

#include <stddef.h>

#include "cx/audit.h"

/* Whether tenant is usable as a chain name (and a file name): the schema's identifier format,
 * [a-z0-9][a-z0-9_.-]*, at most 128 bytes. */
int cx__audit_tenant_ok(const char *tenant);

/* The seq and mac of a stored record line (proto3 JSON of AuditRecord). Returns 0 or
 * CX_EAUDIT_TAMPERED (not a record, or no 64-hex-digit mac). */
int cx__audit_line_head(const char *json, size_t len, cx_audit_head_t *out);

/* A checkpoint as one JSON object (no newline) in buf[0..cap): returns its length, or -1. */
long cx__audit_cp_format(const cx_audit_checkpoint_t *cp, char *buf, size_t cap);

/* Parses what cx__audit_cp_format wrote (strictly). Returns 0 or CX_EAUDIT_TAMPERED. */
int cx__audit_cp_parse(const char *s, size_t len, cx_audit_checkpoint_t *cp);

/* Whether s is 64 lower-case hex digits. */
int cx__audit_mac_ok(const char *s);

#endif /* CX_OUTBOUND_AUDIT_INTERNAL_H */
