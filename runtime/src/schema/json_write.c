/* The proto3 JSON writer: cx_to_json and its redacting twin cx_to_json_redacted.
 *
 * Output follows Google's json_format byte for byte where the mapping is defined: json names,
 * fields in field-number order (protobuf-c's order of desc->fields), defaults omitted except
 * for the active oneof member, 64-bit integers as quoted decimals, 32-bit ones as numbers,
 * floating point as the shortest text that reads back to the same bits ("NaN", "Infinity" and
 * "-Infinity" quoted), enums by value name (unknown numbers as numbers), bytes as padded
 * standard base64 and Timestamps as RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits.
 *
 * One writer serves both entry points. Redaction is a mode of it, not a second walk: when the
 * mode is set, every value of a PII-classed field goes through put_redacted() instead of being
 * written as is. Message-typed fields are recursed into and their own fields' classes decide
 * (a field's class on a submessage only summarises what is inside).
 *
 * Speed: the writer stages output in a 4 KiB buffer on the stack and hands it to cx_buf_t in
 * large appends, so the many one- and two-byte pieces of a JSON document cost a store each
 * rather than a call. Strings are escaped in runs found with a lookup table.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "schema/access.h"

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range RFC 3339 (and protobuf) allow. */
#define TS_MIN_SECONDS INT64_C(-62135596800)
#define TS_MAX_SECONDS INT64_C(253402300799)

typedef struct {
    cx_buf_t *out;
    char *p;   /* next free byte of stage */
    char *end; /* one past stage */
    int mode;  /* 0, CX_REDACT_MASK or CX_REDACT_PSEUDONYMIZE */
    const cx_keyring_t *keyring;
    int err; /* first error that is not the buffer's own (CX_ERANGE, CX_EINVAL, CX_ECRYPTO) */
    char stage[4096];
} writer_t;

static void flush(writer_t *w)
{
    if (w->p != w->stage) {
        cx_buf_append(w->out, w->stage, (size_t)(w->p - w->stage));
        w->p = w->stage;
    }
}

static void put(writer_t *w, const char *s, size_t n)
{
    if (n > (size_t)(w->end - w->p)) {
        flush(w);
        if (n >= sizeof w->stage) {
            cx_buf_append(w->out, s, n);
            return;
        }
    }
    memcpy(w->p, s, n);
    w->p += n;
}

static void put_c(writer_t *w, char c)
{
    if (w->p == w->end)
        flush(w);
    *w->p++ = c;
}

/* Static ASCII names (json names, enum value names): copied without a strlen first. */
static void put_z(writer_t *w, const char *s)
{
    while (*s)
        put_c(w, *s++);
}

static void set_err(writer_t *w, int code)
{
    if (w->err == 0)
        w->err = code;
}

/* ---- Strings ---------------------------------------------------------------------------- */

/* 1 for bytes JSON requires to be escaped: controls, '"' and '\\'. UTF-8 passes through. */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

static void put_escaped(writer_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && !needs_escape[(unsigned char)s[j]])
            j++;
        put(w, s + i, j - i);
        if (j == n)
            return;
        unsigned char c = (unsigned char)s[j];
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t en = 2;
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            en = 6;
        }
        put(w, e, en);
        i = j + 1;
    }
}

static void put_string(writer_t *w, const char *s, size_t n)
{
    put_c(w, '"');
    put_escaped(w, s, n);
    put_c(w, '"');
}

/* ---- Numbers ---------------------------------------------------------------------------- */

static void put_u64(writer_t *w, uint64_t v, int neg)
{
    char tmp[21];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg)
        tmp[--i] = '-';
    put(w, tmp + i, sizeof tmp - i);
}

static void put_i64(writer_t *w, int64_t v)
{
    /* The magnitude of INT64_MIN does not fit int64_t; compute it in uint64_t. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    put_u64(w, mag, v < 0);
}

/* printf follows the locale's decimal point; JSON does not. */
static void fix_decimal_point(char *s)
{
    for (; *s; s++)
        if (*s == ',')
            *s = '.';
}

/* The shortest %g text reading back to the same value: the first precision that round-trips
 * wins (15 digits always do when any shorter text does; 17 always round-trip a double). */
static void put_double(writer_t *w, double d)
{
    if (isnan(d)) {
        put(w, "\"NaN\"", 5);
        return;
    }
    if (isinf(d)) {
        if (d > 0)
            put(w, "\"Infinity\"", 10);
        else
            put(w, "\"-Infinity\"", 11);
        return;
    }
    if (d == 0 && signbit(d)) {
        /* "-0" is an integer to many JSON parsers (Python's json among them), which drops the
         * sign; json_format itself writes -0.0. */
        put(w, "-0.0", 4);
        return;
    }
    char buf[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    fix_decimal_point(buf);
    put(w, buf, (size_t)n);
}

/* Floats as json_format's ToShortestFloat: the fewest digits (from 6) whose double, narrowed to
 * float, gives back the value. The reader narrows the same way, so this round-trips. */
static void put_float(writer_t *w, float f)
{
    if (isnan(f) || isinf(f) || f == 0) {
        put_double(w, (double)f);
        return;
    }
    char buf[40];
    int n = 0;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (prec == 9 || (float)strtod(buf, NULL) == f)
            break;
    }
    fix_decimal_point(buf);
    put(w, buf, (size_t)n);
}

/* ---- Bytes and Timestamps --------------------------------------------------------------- */

static void put_base64(writer_t *w, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    put_c(w, '"');
    char chunk[256];
    size_t k = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        chunk[k++] = tab[v >> 18];
        chunk[k++] = tab[(v >> 12) & 63];
        chunk[k++] = tab[(v >> 6) & 63];
        chunk[k++] = tab[v & 63];
        if (k == sizeof chunk) {
            put(w, chunk, k);
            k = 0;
        }
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        chunk[k++] = tab[v >> 18];
        chunk[k++] = tab[(v >> 12) & 63];
        chunk[k++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        chunk[k++] = '=';
    }
    put(w, chunk, k);
    put_c(w, '"');
}

/* Civil date of a day count since 1970-01-01 (proleptic Gregorian; Howard Hinnant's
 * algorithm, exact for every int64 day count we accept). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Timestamps outside 0001..9999 or with nanos outside [0, 1e9) have no JSON form: CX_ERANGE,
 * as json_format refuses them too. */
static void put_timestamp(writer_t *w, const Google__Protobuf__Timestamp *ts)
{
    int64_t s = ts->seconds;
    int32_t nanos = ts->nanos;
    if (s < TS_MIN_SECONDS || s > TS_MAX_SECONDS || nanos < 0 || nanos > 999999999) {
        set_err(w, CX_ERANGE);
        put(w, "null", 4);
        return;
    }
    int64_t days = s / 86400;
    int64_t rem = s % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char buf[40];
    buf[0] = '"';
    put_digits(buf + 1, (unsigned)y, 4);
    buf[5] = '-';
    put_digits(buf + 6, m, 2);
    buf[8] = '-';
    put_digits(buf + 9, d, 2);
    buf[11] = 'T';
    put_digits(buf + 12, (unsigned)(rem / 3600), 2);
    buf[14] = ':';
    put_digits(buf + 15, (unsigned)(rem / 60 % 60), 2);
    buf[17] = ':';
    put_digits(buf + 18, (unsigned)(rem % 60), 2);
    size_t n = 20;
    if (nanos != 0) {
        buf[n++] = '.';
        if (nanos % 1000000 == 0) {
            put_digits(buf + n, (unsigned)(nanos / 1000000), 3);
            n += 3;
        } else if (nanos % 1000 == 0) {
            put_digits(buf + n, (unsigned)(nanos / 1000), 6);
            n += 6;
        } else {
            put_digits(buf + n, (unsigned)nanos, 9);
            n += 9;
        }
    }
    buf[n++] = 'Z';
    buf[n++] = '"';
    put(w, buf, n);
}

/* ---- Values ----------------------------------------------------------------------------- */

static void write_message(writer_t *w, const cx_msg_meta_t *meta, const ProtobufCMessage *msg);

/* One value of fd's type at p, unredacted. */
static void write_plain(writer_t *w, const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm,
                        const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        put_i64(w, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        put_u64(w, *(const uint32_t *)p, 0);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        put_c(w, '"');
        put_i64(w, *(const int64_t *)p);
        put_c(w, '"');
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        put_c(w, '"');
        put_u64(w, *(const uint64_t *)p, 0);
        put_c(w, '"');
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_float(w, *(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_double(w, *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if (*(const protobuf_c_boolean *)p)
            put(w, "true", 4);
        else
            put(w, "false", 5);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);
        if (ev != NULL) {
            put_c(w, '"');
            put_z(w, ev->name);
            put_c(w, '"');
        } else {
            put_i64(w, v);
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        put_string(w, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        put_base64(w, b->data, b->data ? b->len : 0);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
        if (m == NULL) {
            /* Only reachable through a NULL element of a repeated field. */
            set_err(w, CX_EINVAL);
            put(w, "null", 4);
        } else if (fm->flags & CX_F_TIMESTAMP) {
            put_timestamp(w, (const Google__Protobuf__Timestamp *)m);
        } else if (fm->msg != NULL) {
            write_message(w, fm->msg, m);
        } else {
            set_err(w, CX_EINVAL); /* a message type the generated tables do not describe */
            put(w, "null", 4);
        }
        break;
    }
    }
}

/* The bounded redacted forms (all but a masked e-mail with a domain) into out; its length. */
static size_t redact_small(writer_t *w, uint8_t pii, const char *s, size_t n, char out[32])
{
    if (w->mode == CX_REDACT_PSEUDONYMIZE) {
        memcpy(out, "pii:", 4);
        int rc = cx_pseudonym(w->keyring, s, n, out + 4);
        if (rc != 0) {
            set_err(w, rc);
            memcpy(out + 4, "error", 5);
            return 9;
        }
        return 20;
    }
    if (pii == CX_PII_PHONE) {
        /* The last four digits, as a support agent would read them back. */
        char last[4];
        int k = 0;
        for (size_t i = n; i > 0 && k < 4; i--)
            if (s[i - 1] >= '0' && s[i - 1] <= '9')
                last[k++] = s[i - 1];
        memcpy(out, "***", 3);
        for (int i = 0; i < k; i++)
            out[3 + i] = last[k - 1 - i];
        return 3 + (size_t)k;
    }
    if (pii == CX_PII_EMAIL) {
        memcpy(out, "***", 3);
        return 3;
    }
    memcpy(out, "[redacted]", 10);
    return 10;
}

/* The length of the UTF-8 sequence starting s[0], at most n (1 for stray bytes). */
static size_t utf8_seq_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t k = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return k < n ? k : n;
}

/* Writes text s[0..n) of a pii-classed value as its redacted JSON string. */
static void put_redacted(writer_t *w, uint8_t pii, const char *s, size_t n)
{
    if (w->mode == CX_REDACT_MASK && pii == CX_PII_EMAIL) {
        size_t at = n;
        while (at > 0 && s[at - 1] != '@')
            at--;
        if (at > 0) {
            /* at is one past the last '@': first character, ***@, the domain. */
            put_c(w, '"');
            if (at > 1)
                put_escaped(w, s, utf8_seq_len(s, at - 1));
            put(w, "***@", 4);
            put_escaped(w, s + at, n - at);
            put_c(w, '"');
            return;
        }
    }
    char small[32];
    size_t k = redact_small(w, pii, s, n, small);
    put_c(w, '"');
    put(w, small, k);
    put_c(w, '"');
}

static int pii_redacted(uint8_t pii)
{
    /* UNSPECIFIED cannot pass the schema lint; if it ever appears, treat it as personal. */
    return pii != CX_PII_NONE;
}

static void write_value(writer_t *w, const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm,
                        const void *p)
{
    int scalar = fd->type != PROTOBUF_C_TYPE_MESSAGE || (fm->flags & CX_F_TIMESTAMP);
    if (w->mode == 0 || !scalar || !pii_redacted(fm->pii)) {
        write_plain(w, fd, fm, p);
        return;
    }
    if (fd->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(const char *const *)p;
        put_redacted(w, fm->pii, s ? s : "", s ? strlen(s) : 0);
        return;
    }
    /* Other types are redacted through their JSON text: write it, read it back from the
     * buffer, replace it. Their text never holds '@' or escapes, so the bounded forms do. */
    flush(w);
    cx_buf_t *out = w->out;
    size_t mark = out->len;
    write_plain(w, fd, fm, p);
    flush(w);
    if (cx_buf_error(out))
        return;
    const char *text = out->data + mark;
    size_t n = out->len - mark;
    if (n >= 2 && text[0] == '"') {
        text++;
        n -= 2;
    }
    char small[32];
    size_t k = redact_small(w, fm->pii, text, n, small);
    cx_buf_truncate(out, mark);
    put_c(w, '"');
    put(w, small, k);
    put_c(w, '"');
}

static void put_key(writer_t *w, const char *json_name, int *first)
{
    if (!*first)
        put_c(w, ',');
    *first = 0;
    put_c(w, '"');
    put_z(w, json_name);
    put(w, "\":", 2);
}

static void write_message(writer_t *w, const cx_msg_meta_t *meta, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = meta->desc;
    int first = 1;
    put_c(w, '{');
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        const cx_field_meta_t *fm = &meta->fields[i];
        const void *p = cx__field_ptr(msg, fd);
        if (cx__is_repeated(fd)) {
            size_t n = cx__repeated_count(msg, fd);
            if (n == 0)
                continue;
            put_key(w, fm->json_name, &first);
            put_c(w, '[');
            size_t size = cx__value_size(fd->type);
            const char *base = *(const char *const *)p;
            for (size_t k = 0; k < n; k++) {
                if (k)
                    put_c(w, ',');
                write_value(w, fd, fm, base + k * size);
            }
            put_c(w, ']');
            continue;
        }
        if (cx__in_oneof(fd)) {
            if (!cx__oneof_active(msg, fd))
                continue;
            /* As protobuf-c's pack: an active member with a NULL (or, for strings, the
             * shared default) pointer is absent, so JSON and binary agree. */
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING) {
                const void *v = *(const void *const *)p;
                if (v == NULL || v == fd->default_value)
                    continue;
            }
        } else if (cx__value_is_default(fd, p)) {
            continue;
        }
        put_key(w, fm->json_name, &first);
        write_value(w, fd, fm, p);
    }
    put_c(w, '}');
}

static int write_json(const cx_msg_meta_t *meta, const ProtobufCMessage *msg, int mode,
                      const cx_keyring_t *keyring, cx_buf_t *out)
{
    if (meta == NULL || msg == NULL || out == NULL || msg->descriptor != meta->desc)
        return CX_EINVAL;
    writer_t w;
    w.out = out;
    w.p = w.stage;
    w.end = w.stage + sizeof w.stage;
    w.mode = mode;
    w.keyring = keyring;
    w.err = 0;
    size_t start = out->len;
    write_message(&w, meta, msg);
    flush(&w);
    int rc = cx_buf_error(out);
    if (rc == 0)
        rc = w.err;
    if (rc != 0)
        cx_buf_truncate(out, start); /* no half document */
    return rc;
}

int cx_to_json(const cx_msg_meta_t *meta, const ProtobufCMessage *msg, cx_buf_t *out)
{
    return write_json(meta, msg, 0, NULL, out);
}

int cx_to_json_redacted(const cx_msg_meta_t *meta, const ProtobufCMessage *msg,
                        cx_redact_mode_t mode, const cx_keyring_t *keyring, cx_buf_t *out)
{
    if (mode != CX_REDACT_MASK && mode != CX_REDACT_PSEUDONYMIZE)
        return CX_EINVAL;
    if (mode == CX_REDACT_PSEUDONYMIZE &&
        (keyring == NULL || keyring->key == NULL || keyring->key_len == 0))
        return CX_EINVAL;
    return write_json(meta, msg, (int)mode, keyring, out);
}
