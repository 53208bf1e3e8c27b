/* Dedupe keys from the generated templates (docs/dedupe-keys.md).
 *
 * A template is a list of segments: literal text, or a reference with alternatives, each a
 * path of field indexes walked through submessages. The first alternative whose value is set
 * wins; when none is, the key is refused (CX_EDEDUPE_KEY) rather than built with an empty
 * segment, since an empty segment would merge distinct events. Values from PII-classed fields
 * are replaced by keyed pseudonyms so keys never carry a phone number or an e-mail address.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/words.h"
#include "cx/dedupe_store.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "schema/access.h"

/* The value a path points at, or NULL when a message on the way or the value is unset. */
typedef struct {
    const ProtobufCFieldDescriptor *fd;
    const cx_field_meta_t *fm;
    const void *value;
} resolved_t;

static int resolve(const cx_msg_meta_t *meta, const ProtobufCMessage *msg,
                   const cx_field_path_t *path, resolved_t *out)
{
    for (uint8_t i = 0; i < path->len; i++) {
        const ProtobufCFieldDescriptor *fd = &meta->desc->fields[path->index[i]];
        const cx_field_meta_t *fm = &meta->fields[path->index[i]];
        if (cx__in_oneof(fd) && !cx__oneof_active(msg, fd))
            return 0;
        const void *p = cx__field_ptr(msg, fd);
        if (i + 1 < path->len) {
            msg = *(const ProtobufCMessage *const *)p;
            meta = fm->msg;
            if (msg == NULL || meta == NULL)
                return 0;
            continue;
        }
        if (fm->flags & CX_F_TIMESTAMP) {
            if (*(const void *const *)p == NULL)
                return 0;
        } else if (!cx__in_oneof(fd) && cx__value_is_default(fd, p)) {
            return 0;
        } else if (cx__in_oneof(fd) && fd->type == PROTOBUF_C_TYPE_STRING &&
                   cx__value_is_default(fd, p)) {
            return 0; /* an active but empty string is still an empty segment */
        }
        out->fd = fd;
        out->fm = fm;
        out->value = p;
        return 1;
    }
    return 0;
}

/* "MessageStatusKind" + "MESSAGE_STATUS_KIND_READ" -> "read" (into out, lower case). */
static void enum_suffix(const ProtobufCEnumDescriptor *ed, const char *value, char *out,
                        size_t cap)
{
    char prefix[128];
    size_t n = 0;
    for (const char *c = ed->short_name; *c && n + 3 < sizeof prefix; c++) {
        if (*c >= 'A' && *c <= 'Z' && n > 0)
            prefix[n++] = '_';
        prefix[n++] = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    }
    prefix[n++] = '_';
    prefix[n] = '\0';
    if (strncmp(value, prefix, n) == 0)
        value += n;
    size_t i = 0;
    for (; value[i] && i + 1 < cap; i++)
        out[i] = (char)(value[i] >= 'A' && value[i] <= 'Z' ? value[i] + 32 : value[i]);
    out[i] = '\0';
}

/* Renders a resolved value as text (before escaping) into tmp, or points *text at a string. */
static size_t render(const resolved_t *r, uint32_t bucket, char *tmp, size_t cap,
                     const char **text)
{
    const void *p = r->value;
    *text = tmp;
    if (r->fm->flags & CX_F_TIMESTAMP) {
        const Google__Protobuf__Timestamp *ts = *(const Google__Protobuf__Timestamp *const *)p;
        int64_t s = ts->seconds;
        if (bucket) {
            int64_t b = (int64_t)bucket;
            s = (s >= 0 ? s / b : -((-s + b - 1) / b)) * b;
            return (size_t)snprintf(tmp, cap, "%" PRId64, s);
        }
        if (ts->nanos == 0)
            return (size_t)snprintf(tmp, cap, "%" PRId64, s);
        int n = snprintf(tmp, cap, "%" PRId64 ".%09" PRId32, s, ts->nanos);
        while (n > 0 && tmp[n - 1] == '0')
            tmp[--n] = '\0';
        return (size_t)n;
    }
    switch (r->fd->type) {
    case PROTOBUF_C_TYPE_STRING:
        *text = *(const char *const *)p;
        return strlen(*text);
    case PROTOBUF_C_TYPE_BOOL:
        return (size_t)snprintf(tmp, cap, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = r->fd->descriptor;
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
        if (ev == NULL)
            return (size_t)snprintf(tmp, cap, "%" PRId32, v);
        enum_suffix(ed, ev->name, tmp, cap);
        return strlen(tmp);
    }
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return (size_t)snprintf(tmp, cap, "%" PRId32, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return (size_t)snprintf(tmp, cap, "%" PRIu32, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return (size_t)snprintf(tmp, cap, "%" PRId64, *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return (size_t)snprintf(tmp, cap, "%" PRIu64, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return (size_t)snprintf(tmp, cap, "%.9g", (double)*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return (size_t)snprintf(tmp, cap, "%.17g", *(const double *)p);
    default: /* bytes and messages are refused by the schema lint */
        tmp[0] = '\0';
        return 0;
    }
}

/* The offset of the first ':' or '%' in s[0..n), or n. */
static size_t plain_prefix(const char *s, size_t n)
{
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        w = cx__word(s + i);
        if (cx__word_has(w, ':') | cx__word_has(w, '%'))
            break;
    }
    while (i < n && s[i] != ':' && s[i] != '%')
        i++;
    return i;
}

/* A key being built: at most CX_DEDUPE_KEY_MAX bytes (what every store accepts), on the
 * stack, appended to the caller's buffer once it is complete. */
typedef struct {
    char b[CX_DEDUPE_KEY_MAX];
    size_t len;
    int over; /* something did not fit */
} keybuf_t;

static void key_put(keybuf_t *k, const char *s, size_t n)
{
    if (n > sizeof k->b - k->len) {
        k->over = 1;
        return;
    }
    memcpy(k->b + k->len, s, n);
    k->len += n;
}

/* Appends text with ':' and '%' percent-escaped, so a value cannot forge a segment. */
static void key_put_escaped(keybuf_t *k, const char *s, size_t n)
{
    size_t start = 0;
    /* Ids rarely hold either: the scan skips to the first, and most values are one copy. */
    for (size_t i = plain_prefix(s, n); i < n; i++) {
        if (s[i] == ':' || s[i] == '%') {
            key_put(k, s + start, i - start);
            key_put(k, s[i] == ':' ? "%3A" : "%25", 3);
            start = i + 1;
        }
    }
    key_put(k, s + start, n - start);
}

/* "channel.account_id" for error messages, from the descriptors along the path. */
static void path_name(const cx_msg_meta_t *meta, const cx_field_path_t *path, char *out,
                      size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (uint8_t i = 0; i < path->len && meta; i++) {
        const char *name = meta->desc->fields[path->index[i]].name;
        int w = snprintf(out + n, cap - n, "%s%s", i ? "." : "", name);
        if (w < 0 || (size_t)w >= cap - n)
            return;
        n += (size_t)w;
        meta = meta->fields[path->index[i]].msg;
    }
}

int cx_dedupe_key(const cx_msg_meta_t *meta, const ProtobufCMessage *msg,
                  const cx_keyring_t *keyring, cx_buf_t *out, cx_error_t *err)
{
    if (meta == NULL || msg == NULL || out == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "meta, msg and out are required");
    if (meta->key == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "%s has no dedupe-key template",
                            meta->full_name);
    keybuf_t k;
    k.len = 0;
    k.over = 0;
    for (uint8_t s = 0; s < meta->n_key; s++) {
        const cx_key_segment_t *seg = &meta->key[s];
        if (seg->literal) {
            key_put(&k, seg->literal, strlen(seg->literal));
            continue;
        }
        resolved_t r;
        uint8_t a = 0;
        while (a < seg->n_alt && !resolve(meta, msg, &seg->alt[a], &r))
            a++;
        if (a == seg->n_alt) {
            char name[128];
            path_name(meta, &seg->alt[0], name, sizeof name);
            return cx_error_set(err, CX_EDEDUPE_KEY, name,
                                "dedupe key of %s: '%s'%s is empty", meta->full_name, name,
                                seg->n_alt > 1 ? " and its alternatives" : "");
        }
        char tmp[64];
        const char *text;
        size_t n = render(&r, seg->bucket_seconds, tmp, sizeof tmp, &text);
        if (r.fm->pii != CX_PII_NONE && r.fm->pii != CX_PII_UNSPECIFIED) {
            char pseudo[17];
            int rc = cx_pseudonym(keyring, text, n, pseudo);
            if (rc != 0) {
                char name[128];
                path_name(meta, &seg->alt[a], name, sizeof name);
                return cx_error_set(err, rc, name,
                                    "'%s' is personal data: its key segment needs a keyring",
                                    name);
            }
            key_put(&k, pseudo, 16);
        } else {
            key_put_escaped(&k, text, n);
        }
    }
    if (k.over)
        return cx_error_set(err, CX_ELIMIT, NULL,
                            "dedupe key of %s is longer than %d bytes", meta->full_name,
                            CX_DEDUPE_KEY_MAX);
    size_t start = out->len;
    cx_buf_append(out, k.b, k.len);
    int rc = cx_buf_error(out);
    if (rc != 0) {
        cx_buf_truncate(out, start);
        return cx_error_set(err, rc, NULL, "dedupe key does not fit the output buffer");
    }
    return 0;
}
