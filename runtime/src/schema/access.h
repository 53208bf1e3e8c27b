/* Private: generic access to protobuf-c message fields, shared by the schema engine.
 *
 * protobuf-c lays a message out as a C struct described by ProtobufCMessageDescriptor:
 * desc->fields[i].offset locates the value, quantifier_offset the repeated count (size_t) or,
 * for oneof members, the case (uint32, equal to the active member's field number). Proto3
 * singular fields have no presence bit: "set" means "not the default value".
 */
#ifndef CX_SCHEMA_ACCESS_H
#define CX_SCHEMA_ACCESS_H

#include <stdint.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

#include "cx/schema.h"

static inline void *cx__field_ptr(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    return (char *)m + fd->offset;
}

static inline size_t cx__repeated_count(const ProtobufCMessage *m,
                                        const ProtobufCFieldDescriptor *fd)
{
    return *(const size_t *)((const char *)m + fd->quantifier_offset);
}

static inline int cx__is_repeated(const ProtobufCFieldDescriptor *fd)
{
    return fd->label == PROTOBUF_C_LABEL_REPEATED;
}

static inline int cx__in_oneof(const ProtobufCFieldDescriptor *fd)
{
    return (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* For oneof members: whether this member is the active one. */
static inline int cx__oneof_active(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    return *(const uint32_t *)((const char *)m + fd->quantifier_offset) == fd->id;
}

/* Size of one value of a field's type in the C struct (element size for repeated fields). */
static inline size_t cx__value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

/* Whether the value at p (one value of fd's type) is the proto3 default. */
static inline int cx__value_is_default(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(const void *const *)p == NULL;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: {
        float f = *(const float *)p;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        return bits == 0; /* -0.0 is not the default: it is written out */
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = *(const double *)p;
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return bits == 0;
    }
    default:
        return cx__value_size(fd->type) == 4 ? *(const uint32_t *)p == 0
                                             : *(const uint64_t *)p == 0;
    }
}

/* Whether a field is present: a non-empty list, the active oneof member, or a non-default
 * singular value. */
static inline int cx__field_is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    if (cx__is_repeated(fd))
        return cx__repeated_count(m, fd) > 0;
    if (cx__in_oneof(fd))
        return cx__oneof_active(m, fd);
    return !cx__value_is_default(fd, cx__field_ptr(m, fd));
}

/* The i-th value of a repeated field. */
static inline const void *cx__repeated_at(const ProtobufCMessage *m,
                                          const ProtobufCFieldDescriptor *fd, size_t i)
{
    const char *base = *(const char *const *)cx__field_ptr(m, fd);
    return base + i * cx__value_size(fd->type);
}

#endif /* CX_SCHEMA_ACCESS_H */
