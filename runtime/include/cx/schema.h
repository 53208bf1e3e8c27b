/* The schema engine: validation, proto3 JSON, dedupe keys and redaction for every message.
 *
 * cx-gen emits, per message, a cx_msg_meta_t table (json names, rules, PII classes, the parsed
 * dedupe-key template, cross-field rules) beside protobuf-c's descriptor, plus thin typed
 * wrappers (cx_messaging_direct_message_validate(), ...). This small hand-written engine walks
 * those tables; it is tested once for every message. See docs/internals/schema-engine.md.
 *
 * Messages are protobuf-c structs. Field tables are parallel to desc->fields (field-number
 * order, as protobuf-c sorts them).
 */
#ifndef CX_SCHEMA_H
#define CX_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The generated tables' shape; bumped with cxgen.GEN_ABI. Generated files refuse to compile
 * against another value. */
#define CX_GEN_ABI 1

/* PII classes: the numbers of cx.options.v1.PiiClass. */
typedef enum {
    CX_PII_UNSPECIFIED = 0,
    CX_PII_NONE = 1,
    CX_PII_PHONE = 2,
    CX_PII_EMAIL = 3,
    CX_PII_NAME = 4,
    CX_PII_CONTENT = 5,
    CX_PII_SECRET = 6
} cx_pii_t;

/* String formats: the numbers of cx.options.v1.Format. */
typedef enum {
    CX_FORMAT_NONE = 0,
    CX_FORMAT_EMAIL = 1,
    CX_FORMAT_E164 = 2,
    CX_FORMAT_URI = 3,
    CX_FORMAT_UUID = 4,
    CX_FORMAT_MESSAGE_ID = 5,
    CX_FORMAT_HOSTNAME = 6,
    CX_FORMAT_IDENTIFIER = 7,
    CX_FORMAT_TIME_ZONE = 8,
    CX_FORMAT_MIME_TYPE = 9,
    CX_FORMAT_LANGUAGE_TAG = 10,
    CX_FORMAT_DATE = 11,
    CX_FORMAT_CURRENCY = 12,
    CX_FORMAT_TRACEPARENT = 13
} cx_format_t;

/* Message kinds: the numbers of cx.options.v1.MessageKind. */
typedef enum {
    CX_KIND_VALUE = 0,
    CX_KIND_EVENT = 1,
    CX_KIND_COMMAND = 2,
    CX_KIND_RESULT = 3
} cx_msg_kind_t;

/* cx_field_meta_t.flags */
enum {
    CX_F_REQUIRED = 1u << 0,
    CX_F_DEFINED_ONLY = 1u << 1,
    CX_F_FINITE = 1u << 2,
    CX_F_HAS_GTE = 1u << 3,  /* gte is set (integers) */
    CX_F_HAS_LTE = 1u << 4,  /* lte is set (integers) */
    CX_F_HAS_GTE_D = 1u << 5, /* gte_d is set (floating point) */
    CX_F_HAS_LTE_D = 1u << 6, /* lte_d is set (floating point) */
    CX_F_TIMESTAMP = 1u << 7  /* a google.protobuf.Timestamp field */
};

struct cx_msg_meta_s;

/* What protobuf-c's descriptor lacks for one field. */
typedef struct cx_field_meta_s {
    const char *json_name; /* proto3 JSON name (lowerCamelCase) */
    uint32_t flags;        /* CX_F_* */
    uint32_t min_len, max_len;     /* strings: code points; bytes: bytes; 0 = none */
    uint32_t min_items, max_items; /* repeated; 0 = none */
    int64_t gte, lte;              /* integers, when CX_F_HAS_GTE / CX_F_HAS_LTE */
    double gte_d, lte_d;           /* floating point, when CX_F_HAS_GTE_D / CX_F_HAS_LTE_D */
    uint8_t format;                /* cx_format_t */
    uint8_t pii;                   /* cx_pii_t */
    const struct cx_msg_meta_s *msg; /* message-typed fields (not Timestamps), else NULL */
} cx_field_meta_t;

/* A field path in a template or rule: indexes into successive desc->fields arrays. */
typedef struct cx_field_path_s {
    const uint16_t *index;
    uint8_t len;
} cx_field_path_t;

/* One dedupe-key template segment: literal text, or a reference with alternatives. */
typedef struct cx_key_segment_s {
    const char *literal;        /* non-NULL for literal text */
    const cx_field_path_t *alt; /* references: the alternatives, first non-empty wins */
    uint8_t n_alt;
    uint32_t bucket_seconds;    /* time bucket, 0 = none */
} cx_key_segment_t;

/* at_least_one_of: field indexes of this message. */
typedef struct cx_field_group_s {
    const uint16_t *index;
    uint8_t n;
    const char *names; /* "a, b, c" for messages */
} cx_field_group_t;

/* required_if: `field` is required when `when` equals `equals` (an enum value number when
 * `when` is an enum, a string, "true"), or is set when equals is NULL. */
typedef struct cx_required_if_s {
    uint16_t field;
    uint16_t when;
    const char *equals;
    int32_t equals_enum;
} cx_required_if_t;

typedef struct cx_msg_meta_s {
    const ProtobufCMessageDescriptor *desc;
    const char *full_name;   /* cx.messaging.v1.DirectMessage */
    const char *event_type;  /* cx.messaging.v1.direct_message, or NULL for values */
    const char *capability;  /* "inbound_messages", or NULL */
    uint8_t kind;            /* cx_msg_kind_t */
    uint32_t dedupe_ttl_seconds;
    const cx_field_meta_t *fields; /* parallel to desc->fields */
    const cx_key_segment_t *key;   /* dedupe-key template, NULL for values */
    uint8_t n_key;
    const cx_field_group_t *at_least_one_of;
    uint8_t n_at_least_one_of;
    const cx_required_if_t *required_if;
    uint8_t n_required_if;
} cx_msg_meta_t;

/* ---- Validation ------------------------------------------------------------------------- */

typedef struct cx_violation_s {
    char path[128];   /* attendees[2].email */
    const char *rule; /* protovalidate rule id: "string.max_len" (static storage) */
    char message[96]; /* "must be at most 256 characters"; never the value */
} cx_violation_t;

/* Caller-owned storage for violations. count keeps counting past cap (only cap are stored). */
typedef struct cx_violations_s {
    cx_violation_t *items;
    size_t cap;
    size_t count;
} cx_violations_t;

/* Validates msg against meta's rules, recursively. Returns 0 when valid, CX_EVALIDATION when
 * any rule fails (every violation recorded in v, which may be NULL). Never allocates.
 * Thread-safe. */
CX_API int cx_validate(const cx_msg_meta_t *meta, const ProtobufCMessage *msg, cx_violations_t *v);

/* ---- proto3 JSON ------------------------------------------------------------------------ */

typedef struct cx_json_options_s {
    int lenient;          /* ignore unknown fields instead of rejecting them */
    uint32_t max_depth;   /* nesting limit, 0 = 64 */
    size_t max_bytes;     /* input size limit, 0 = 16 MiB */
} cx_json_options_t;

/* Appends msg as proto3 JSON (json names, defaults omitted, int64 as strings, enums by name,
 * bytes as base64, Timestamps as RFC 3339) to out. Returns 0, CX_ENOSPC or CX_ENOMEM. */
CX_API int cx_to_json(const cx_msg_meta_t *meta, const ProtobufCMessage *msg, cx_buf_t *out);

/* Decodes proto3 JSON into a new message allocated in arena (*out). Accepts json names and
 * original names, int64 as strings or numbers, enums by name or number. opts may be NULL.
 * Errors (CX_EJSON, CX_ETYPE, CX_EUNKNOWN_FIELD, CX_ELIMIT, CX_EUTF8, CX_ERANGE, CX_ENOSPC)
 * carry the JSON path in err->path. Thread-safe with distinct arenas. */
CX_API int cx_from_json(const cx_msg_meta_t *meta, const char *json, size_t len, cx_arena_t *arena,
                        const cx_json_options_t *opts, ProtobufCMessage **out, cx_error_t *err);

/* ---- Dedupe keys and redaction ---------------------------------------------------------- */

/* The secret for keyed pseudonyms (HMAC-SHA256). Caller-owned; not copied. */
typedef struct cx_keyring_s {
    const unsigned char *key;
    size_t key_len;
} cx_keyring_t;

/* Appends msg's dedupe key (docs/dedupe-keys.md) to out. Returns 0, CX_EDEDUPE_KEY (err->path
 * names the empty field), CX_EINVAL (a message without a template, or a PII segment with no
 * keyring), CX_ELIMIT (the key would be longer than CX_DEDUPE_KEY_MAX, which no dedupe store
 * accepts), CX_ENOSPC (out is too small). out is unchanged on failure. Thread-safe. */
CX_API int cx_dedupe_key(const cx_msg_meta_t *meta, const ProtobufCMessage *msg,
                         const cx_keyring_t *keyring, cx_buf_t *out, cx_error_t *err);

typedef enum {
    CX_REDACT_MASK = 1,        /* for people: phone -> ***1234, e-mail -> j***@example.com */
    CX_REDACT_PSEUDONYMIZE = 2 /* for joins: keyed HMAC pseudonyms, stable per keyring */
} cx_redact_mode_t;

/* Like cx_to_json, with every PII-classed value masked or pseudonymised. keyring is required
 * for CX_REDACT_PSEUDONYMIZE. Returns 0, CX_EINVAL, CX_ENOSPC. */
CX_API int cx_to_json_redacted(const cx_msg_meta_t *meta, const ProtobufCMessage *msg,
                               cx_redact_mode_t mode, const cx_keyring_t *keyring, cx_buf_t *out);

/* The keyed pseudonym of a value: 16 lower-case hex digits + NUL into out[17]. */
CX_API int cx_pseudonym(const cx_keyring_t *keyring, const char *value, size_t len, char out[17]);

/* ---- Registry --------------------------------------------------------------------------- */

/* The meta of a message by full name (cx.messaging.v1.DirectMessage) or event type
 * (cx.messaging.v1.direct_message); NULL when unknown. Thread-safe. */
CX_API const cx_msg_meta_t *cx_schema_find(const char *name);
/* Every registered message, sorted by full name; *n receives the count. */
CX_API const cx_msg_meta_t *const *cx_schema_all(size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* CX_SCHEMA_H */
