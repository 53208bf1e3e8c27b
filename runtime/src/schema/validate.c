/* Validation: walks a message with its generated field table and reports every broken rule.
 *
 * Every violation is reported, not just the first, so a connector author fixing a mapping sees
 * all of them at once. The walk never allocates and, on a valid message, never builds a string:
 * the path to the value being checked is a chain of (field, list index) frames on the walk's
 * own C stack, rendered (`attendees[2].email`) only into a violation being stored. Violations
 * go to caller storage, counted past its capacity. Fields that carry no rule (a plain number
 * or flag, a list of them) are passed over.
 *
 * Presence follows proto3. A singular string or bytes field that is empty is absent: only
 * `required` looks at it, so an optional field left empty never fails a length or format rule.
 * A list item or an active oneof member is present even when empty, so length rules apply to
 * it; format rules only ever apply to non-empty strings. Numeric rules apply to every value,
 * zero included, as protovalidate does: `gte: 1` on a count means zero is wrong.
 *
 * The string formats are checked by small hand-written recognisers below (no regex engine),
 * each following the grammar named in schemas/cx/options/v1/options.proto.
 *
 * Violation messages name limits and formats, never the offending value: values may be PII.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/words.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "schema/access.h"

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range RFC 3339 and proto3 JSON allow. */
#define CX_TS_MIN_SECONDS INT64_C(-62135596800)
#define CX_TS_MAX_SECONDS INT64_C(253402300799)

/* Length of a rendered path, the terminating NUL included. */
#define CX_PATH_SIZE sizeof(((cx_violation_t *)0)->path)

/* list_index of a frame that is not a list item. */
#define CX_NO_INDEX SIZE_MAX

/* One step of the path from the root message down to the value being checked: a field and,
 * for a list item, its index. Each lives on the C stack of the call checking that field and
 * points up to the enclosing step; NULL stands for the root message. A singular field gets its
 * frame only when it is reported or has a value to check: most have neither. */
typedef struct frame_s {
    const struct frame_s *up;
    const ProtobufCFieldDescriptor *fd;
    size_t list_index; /* CX_NO_INDEX unless the value is a list item */
} frame_t;

typedef struct {
    cx_violations_t *v;
    size_t count;
} vctx_t;

/* ---- Paths and reporting ---------------------------------------------------------------- */

/* Paths are only rendered when a violation is stored; the walk itself keeps frames and never
 * touches a string. A path longer than the buffer is truncated: the violation is still
 * reported, with the start of its path. */

/* Appends raw text at path[len], cut to what fits; returns the new length. */
static size_t path_append(char *path, size_t len, const char *s, size_t n)
{
    size_t room = CX_PATH_SIZE - 1 - len;
    if (n > room)
        n = room;
    memcpy(path + len, s, n);
    return len + n;
}

/* Renders the frames from the root down to at into path (`attendees[2].email`) and returns its
 * length. Recurses once per frame, no deeper than the walk that built the frames. */
static size_t path_render(const frame_t *at, char *path)
{
    if (at == NULL)
        return 0;
    size_t len = path_render(at->up, path);
    if (len)
        len = path_append(path, len, ".", 1);
    const char *name = at->fd->name;
    len = path_append(path, len, name, strlen(name));
    if (at->list_index != CX_NO_INDEX) {
        char tmp[24];
        size_t n = sizeof tmp;
        size_t i = at->list_index;
        tmp[--n] = ']';
        do {
            tmp[--n] = (char)('0' + i % 10);
            i /= 10;
        } while (i);
        tmp[--n] = '[';
        len = path_append(path, len, tmp + n, sizeof tmp - n);
    }
    return len;
}

static void report(vctx_t *c, const frame_t *at, const char *rule, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static void report(vctx_t *c, const frame_t *at, const char *rule, const char *fmt, ...)
{
    size_t i = c->count++;
    if (c->v == NULL || c->v->items == NULL || i >= c->v->cap)
        return;
    cx_violation_t *out = &c->v->items[i];
    out->path[path_render(at, out->path)] = '\0';
    out->rule = rule;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

/* ---- Character classes ------------------------------------------------------------------ */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_alnum(int c)
{
    return is_digit(c) || is_alpha(c);
}

static int is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_lower_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

/* Any byte of a multi-byte UTF-8 sequence; strings reach the format checks already
 * UTF-8-validated, so these bytes always form whole characters. */
static int is_utf8_byte(int c)
{
    return c >= 0x80;
}

static int to_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int ascii_caseeq(const char *a, size_t n, const char *b)
{
    size_t i = 0;
    for (; i < n && b[i]; i++)
        if (to_lower((unsigned char)a[i]) != to_lower((unsigned char)b[i]))
            return 0;
    return i == n && b[i] == '\0';
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Counts code points; 0 on malformed input (overlong forms, surrogates, > U+10FFFF, truncated
 * sequences), as RFC 3629 requires. */
static int utf8_count(const unsigned char *s, size_t n, size_t *out)
{
    size_t i = 0, trailing = 0; /* continuation bytes, which start no code point */
    while (i < n) {
        /* ASCII, the common case: eight bytes at a time, then byte by byte. */
        for (; n - i >= 8; i += 8)
            if (cx__word(s + i) & CX__HIGHS)
                break;
        while (i < n && s[i] < 0x80)
            i++;
        if (i == n)
            break;
        unsigned c = s[i];
        size_t extra;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (extra > n - i - 1)
            return 0;
        for (size_t k = 1; k <= extra; k++) {
            unsigned b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
                return 0;
        }
        i += extra + 1;
        trailing += extra;
    }
    *out = n - trailing;
    return 1;
}

/* The length of a NUL-terminated string in bytes (*len) and in code points (*cps); 0 when it is
 * not valid UTF-8. Most values are short ASCII (ids, names, channel names): their first bytes
 * are scanned here one by one up to the NUL, two instructions a byte once unrolled, cheaper than
 * a call to strlen() for them. A longer value, or one with a byte that is not ASCII, goes on
 * with strlen() and utf8_count(), eight bytes at a time, from where the scan stopped. */
static inline int utf8_measure(const char *s, size_t *len, size_t *cps)
{
    const signed char *b = (const signed char *)s; /* bytes >= 0x80 are negative */
    size_t i = 0;
    while (i < 16 && b[i] > 0)
        i++;
    if (i < 16 && b[i] == 0) {
        *len = *cps = i;
        return 1;
    }
    size_t rest = strlen(s + i), n;
    if (!utf8_count((const unsigned char *)s + i, rest, &n))
        return 0;
    *len = i + rest;
    *cps = i + n;
    return 1;
}

/* ---- Formats ---------------------------------------------------------------------------- */

/* RFC 5322 atext, extended with UTF-8 by RFC 6532 so internationalised addresses pass. */
static int is_atext(int c)
{
    return is_alnum(c) || is_utf8_byte(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5322 dot-atom-text: atext runs separated by single dots. */
static int dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.')
                return 0;
        } else if (!is_atext(c)) {
            return 0;
        }
    }
    return 1;
}

/* DNS labels (RFC 1123): 1 to 63 letters, digits and hyphens, no hyphen at either end, and the
 * last label not all digits so a dotted IPv4 address is not taken for a name. utf8 admits
 * U-labels (internationalised domains in e-mail addresses). */
static int dns_labels(const char *s, size_t n, int utf8)
{
    if (n == 0 || n > 253)
        return 0;
    size_t start = 0;
    int all_digits = 1;
    for (size_t i = 0;; i++) {
        if (i == n || s[i] == '.') {
            size_t len = i - start;
            if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
                return 0;
            if (i == n)
                return !all_digits;
            start = i + 1;
            all_digits = 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && c != '-' && !(utf8 && is_utf8_byte(c)))
            return 0;
        if (!is_digit(c))
            all_digits = 0;
    }
}

/* An addr-spec local@domain without display name, comments or quoted local parts: the forms
 * providers actually send. Limits are RFC 5321's (64-octet local part, 254-octet path). */
static int fmt_email(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (at == NULL || n > 254)
        return 0;
    size_t local = (size_t)(at - s);
    if (local == 0 || local > 64 || !dot_atom(s, local))
        return 0;
    return dns_labels(at + 1, n - local - 1, 1);
}

/* E.164: '+', then 8 to 15 digits, the country code not starting with 0. */
static int fmt_e164(const char *s, size_t n)
{
    if (n < 9 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (size_t i = 2; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_unreserved(int c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int is_sub_delim(int c)
{
    return c != 0 && strchr("!$&'()*+,;=", c) != NULL;
}

/* Consumes one RFC 3986 character of a class (unreserved / pct-encoded / sub-delims plus the
 * characters in extra) at s[*i]; 0 when there is none. */
static int uri_char(const char *s, size_t n, size_t *i, const char *extra)
{
    unsigned char c = (unsigned char)s[*i];
    if (is_unreserved(c) || is_sub_delim(c) || (c != 0 && strchr(extra, c) != NULL)) {
        (*i)++;
        return 1;
    }
    if (c == '%' && *i + 2 < n && is_hex((unsigned char)s[*i + 1]) &&
        is_hex((unsigned char)s[*i + 2])) {
        *i += 3;
        return 1;
    }
    return 0;
}

/* RFC 3986 dec-octet "." dec-octet "." dec-octet "." dec-octet (no leading zeros). */
static int ipv4(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit((unsigned char)s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && s[start] == '0'))
            return 0;
    }
    return i == n;
}

/* RFC 4291 text form: eight 16-bit groups, one "::" standing for a run of zero groups, the
 * last 32 bits optionally written as IPv4. */
static int ipv6(const char *s, size_t n)
{
    size_t i = 0;
    int groups = 0, elided = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        elided = 1;
        i = 2;
        if (i == n)
            return 1;
    } else if (n == 0 || s[0] == ':') {
        return 0;
    }
    for (;;) {
        size_t start = i;
        while (i < n && is_hex((unsigned char)s[i]) && i - start < 5)
            i++;
        if (i < n && s[i] == '.') {
            if (!ipv4(s + start, n - start))
                return 0;
            groups += 2;
            break;
        }
        size_t h = i - start;
        if (h == 0 || h > 4)
            return 0;
        groups++;
        if (i == n)
            break;
        if (s[i] != ':')
            return 0;
        i++;
        if (i < n && s[i] == ':') {
            if (elided)
                return 0;
            elided = 1;
            i++;
            if (i == n)
                break;
        } else if (i == n) {
            return 0; /* a single trailing colon */
        }
    }
    return elided ? groups <= 7 : groups == 8;
}

/* IP-literal inside the brackets: IPv6address / IPvFuture. */
static int ip_literal(const char *s, size_t n)
{
    if (n > 0 && (s[0] == 'v' || s[0] == 'V')) {
        size_t i = 1;
        while (i < n && is_hex((unsigned char)s[i]))
            i++;
        if (i == 1 || i >= n || s[i] != '.')
            return 0;
        i++;
        if (i == n)
            return 0;
        for (; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!is_unreserved(c) && !is_sub_delim(c) && c != ':')
                return 0;
        }
        return 1;
    }
    return ipv6(s, n);
}

/* authority = [ userinfo "@" ] host [ ":" port ] */
static int uri_authority(const char *s, size_t n)
{
    size_t i = 0;
    const char *at = memchr(s, '@', n);
    if (at != NULL) {
        size_t end = (size_t)(at - s);
        while (i < end)
            if (!uri_char(s, end, &i, ":"))
                return 0;
        i = end + 1;
    }
    if (i < n && s[i] == '[') {
        const char *close = memchr(s + i, ']', n - i);
        if (close == NULL || !ip_literal(s + i + 1, (size_t)(close - s) - i - 1))
            return 0;
        i = (size_t)(close - s) + 1;
    } else {
        /* reg-name, which also covers IPv4address; may be empty (file:///etc/hosts). */
        while (i < n && s[i] != ':')
            if (!uri_char(s, n, &i, ""))
                return 0;
    }
    if (i == n)
        return 1;
    if (s[i] != ':')
        return 0;
    for (i++; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* An absolute URI (RFC 3986 section 4.3 plus a fragment): scheme ":" hier-part [ "?" query ]
 * [ "#" fragment ]. ASCII only: an IRI must be percent-encoded first. */
static int fmt_uri(const char *s, size_t n)
{
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= n || s[i] != ':')
        return 0;
    i++;
    if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        i += 2;
        size_t end = i;
        while (end < n && s[end] != '/' && s[end] != '?' && s[end] != '#')
            end++;
        if (!uri_authority(s + i, end - i))
            return 0;
        i = end;
    }
    while (i < n && s[i] != '?' && s[i] != '#')
        if (!uri_char(s, n, &i, ":@/"))
            return 0;
    if (i < n && s[i] == '?') {
        i++;
        while (i < n && s[i] != '#')
            if (!uri_char(s, n, &i, ":@/?"))
                return 0;
    }
    if (i < n && s[i] == '#') {
        i++;
        while (i < n)
            if (!uri_char(s, n, &i, ":@/?"))
                return 0;
    }
    return 1;
}

/* 8-4-4-4-12 hex digits, either case, any version. */
static int fmt_uuid(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!is_hex((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* RFC 5322 msg-id: "<" dot-atom-text "@" ( dot-atom-text / "[" *dtext "]" ) ">". */
static int fmt_message_id(const char *s, size_t n)
{
    if (n < 5 || s[0] != '<' || s[n - 1] != '>')
        return 0;
    const char *in = s + 1;
    size_t len = n - 2;
    const char *at = memchr(in, '@', len);
    if (at == NULL)
        return 0;
    size_t left = (size_t)(at - in);
    if (!dot_atom(in, left))
        return 0;
    const char *r = at + 1;
    size_t rn = len - left - 1;
    if (rn >= 2 && r[0] == '[' && r[rn - 1] == ']') {
        for (size_t i = 1; i + 1 < rn; i++) {
            unsigned char c = (unsigned char)r[i];
            /* dtext: printable ASCII except "[", "]" and "\" */
            if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\')
                return 0;
        }
        return 1;
    }
    return dot_atom(r, rn);
}

/* A DNS host name, ASCII only, optionally fully qualified with a trailing dot. */
static int fmt_hostname(const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    return dns_labels(s, n, 0);
}

/* Lower-case letters, digits, '_', '-' and '.', starting with a letter or digit. */
static int fmt_identifier(const char *s, size_t n)
{
    if (n == 0 || !(is_digit((unsigned char)s[0]) || (s[0] >= 'a' && s[0] <= 'z')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || is_digit((unsigned char)c) || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* The shape of an IANA tz database name (tz-link theory.html): '/'-separated components of 1
 * to 14 characters, each starting with a letter, then letters, '.', '-', '_', and the digits
 * and '+' of legacy names (Etc/GMT+5, EST5EDT). Whether the zone exists needs the tz database,
 * which a validator without I/O does not have. */
static int fmt_time_zone(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0 || len > 14 || !is_alpha((unsigned char)s[start]))
            return 0;
        for (size_t k = start + 1; k < i; k++) {
            unsigned char c = (unsigned char)s[k];
            if (!is_alnum(c) && c != '.' && c != '-' && c != '_' && c != '+')
                return 0;
        }
        start = i + 1;
    }
    return 1;
}

/* RFC 9110 tchar. */
static int is_tchar(int c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t token_len(const char *s, size_t n, size_t i)
{
    size_t start = i;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    return i - start;
}

static size_t skip_ows(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* RFC 9110 media-type: type "/" subtype *( OWS ";" OWS [ token "=" ( token / quoted-string ) ] ) */
static int fmt_mime_type(const char *s, size_t n)
{
    size_t i = token_len(s, n, 0);
    if (i == 0 || i >= n || s[i] != '/')
        return 0;
    size_t t = token_len(s, n, i + 1);
    if (t == 0)
        return 0;
    i += 1 + t;
    while (i < n) {
        i = skip_ows(s, n, i);
        if (i >= n || s[i] != ';')
            return 0;
        i = skip_ows(s, n, i + 1);
        size_t name = token_len(s, n, i);
        if (name == 0)
            continue; /* an empty parameter ("text/plain;") is allowed */
        i += name;
        if (i >= n || s[i] != '=')
            return 0;
        i++;
        if (i < n && s[i] == '"') {
            for (i++;; i++) {
                if (i >= n)
                    return 0;
                unsigned char c = (unsigned char)s[i];
                if (c == '"')
                    break;
                if (c == '\\') {
                    i++;
                    if (i >= n)
                        return 0;
                    c = (unsigned char)s[i];
                    if (c != '\t' && (c < 0x20 || c == 0x7F))
                        return 0;
                } else if (c != '\t' && (c < 0x20 || c == 0x7F)) {
                    return 0;
                }
            }
            i++;
        } else {
            size_t v = token_len(s, n, i);
            if (v == 0)
                return 0;
            i += v;
        }
    }
    return 1;
}

/* The next '-'-separated subtag of a language tag, 1 to 8 ASCII letters and digits. Returns 1
 * with *sub and *len set, 0 at the end, -1 when malformed. */
static int next_subtag(const char *s, size_t n, size_t *pos, const char **sub, size_t *len)
{
    if (*pos > n)
        return 0;
    size_t i = *pos, start = i;
    while (i < n && s[i] != '-') {
        if (!is_alnum((unsigned char)s[i]))
            return -1;
        i++;
    }
    if (i == start || i - start > 8)
        return -1;
    *sub = s + start;
    *len = i - start;
    *pos = i + 1; /* past the '-', or n + 1 at the end */
    return 1;
}

static int all_of(const char *s, size_t n, int (*pred)(int))
{
    for (size_t i = 0; i < n; i++)
        if (!pred((unsigned char)s[i]))
            return 0;
    return 1;
}

/* A well-formed BCP 47 tag (RFC 5646 section 2.1): langtag, private use, or grandfathered. */
static int fmt_language_tag(const char *s, size_t n)
{
    /* Irregular grandfathered tags do not fit the langtag grammar; the regular ones do. */
    static const char *const irregular[] = {
        "en-GB-oed", "i-ami", "i-bnn",     "i-default", "i-enochian", "i-hak",
        "i-klingon", "i-lux", "i-mingo",   "i-navajo",  "i-pwn",      "i-tao",
        "i-tay",     "i-tsu", "sgn-BE-FR", "sgn-BE-NL", "sgn-CH-DE"};
    for (size_t k = 0; k < sizeof irregular / sizeof irregular[0]; k++)
        if (ascii_caseeq(s, n, irregular[k]))
            return 1;

    enum { LANGUAGE, EXTLANG, SCRIPT, REGION, VARIANT, EXTENSION };
    size_t pos = 0, len, lang_len = 0;
    const char *sub;
    if (n == 0 || next_subtag(s, n, &pos, &sub, &len) != 1)
        return 0;
    int privateuse = len == 1 && (sub[0] == 'x' || sub[0] == 'X');
    if (!privateuse) {
        if (!all_of(sub, len, is_alpha) || len < 2)
            return 0;
        lang_len = len;
    }
    int stage = LANGUAGE, extlangs = 0, r = 0;
    while (!privateuse && (r = next_subtag(s, n, &pos, &sub, &len)) == 1) {
        if (len == 1) {
            if (sub[0] == 'x' || sub[0] == 'X') {
                privateuse = 1;
                break;
            }
            /* An extension: a singleton then one or more subtags of 2 to 8 characters. */
            int parts = 0;
            size_t save = pos;
            while ((r = next_subtag(s, n, &pos, &sub, &len)) == 1 && len >= 2) {
                parts++;
                save = pos;
            }
            if (r < 0 || parts == 0)
                return 0;
            pos = save;
            stage = EXTENSION;
            continue;
        }
        if (stage <= EXTLANG && lang_len <= 3 && len == 3 && all_of(sub, len, is_alpha) &&
            extlangs < 3) {
            extlangs++;
            stage = EXTLANG;
        } else if (stage < SCRIPT && len == 4 && all_of(sub, len, is_alpha)) {
            stage = SCRIPT;
        } else if (stage < REGION && ((len == 2 && all_of(sub, len, is_alpha)) ||
                                      (len == 3 && all_of(sub, len, is_digit)))) {
            stage = REGION;
        } else if (stage <= VARIANT &&
                   (len >= 5 || (len == 4 && is_digit((unsigned char)sub[0])))) {
            stage = VARIANT;
        } else {
            return 0;
        }
    }
    if (!privateuse)
        return r == 0;
    /* "x" then one or more subtags of 1 to 8 characters, to the end. */
    int parts = 0;
    while ((r = next_subtag(s, n, &pos, &sub, &len)) == 1)
        parts++;
    return r == 0 && parts > 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return 29;
    return days[month - 1];
}

/* A calendar date YYYY-MM-DD that exists (leap years included), years 0001 to 9999 as for
 * Timestamps. */
static int fmt_date(const char *s, size_t n)
{
    if (n != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (i != 4 && i != 7 && !is_digit((unsigned char)s[i]))
            return 0;
    int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int month = (s[5] - '0') * 10 + (s[6] - '0');
    int day = (s[8] - '0') * 10 + (s[9] - '0');
    return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month);
}

/* Three upper-case ASCII letters (the ISO 4217 shape; the list itself changes yearly). */
static int fmt_currency(const char *s, size_t n)
{
    return n == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' &&
           s[2] <= 'Z';
}

static int lower_hex_run(const char *s, size_t n, int *all_zero)
{
    *all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex((unsigned char)s[i]))
            return 0;
        if (s[i] != '0')
            *all_zero = 0;
    }
    return 1;
}

/* W3C Trace Context traceparent: version-traceid-parentid-flags in lower-case hex. Version ff
 * and all-zero ids are invalid; a future version may append "-..." fields, version 00 not. */
static int fmt_traceparent(const char *s, size_t n)
{
    int zero;
    if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    if (!lower_hex_run(s, 2, &zero) || (s[0] == 'f' && s[1] == 'f'))
        return 0;
    if (!lower_hex_run(s + 3, 32, &zero) || zero)
        return 0;
    if (!lower_hex_run(s + 36, 16, &zero) || zero)
        return 0;
    if (!lower_hex_run(s + 53, 2, &zero))
        return 0;
    if (s[0] == '0' && s[1] == '0')
        return n == 55;
    return n == 55 || s[55] == '-';
}

typedef struct {
    const char *rule;
    const char *message;
    int (*check)(const char *s, size_t n);
} format_t;

/* Indexed by cx_format_t. */
static const format_t formats[] = {
    {NULL, NULL, NULL},
    {"string.email", "must be an e-mail address (local@domain)", fmt_email},
    {"string.e164", "must be an E.164 phone number (+ and 8 to 15 digits)", fmt_e164},
    {"string.uri", "must be an absolute URI", fmt_uri},
    {"string.uuid", "must be a UUID (8-4-4-4-12 hex digits)", fmt_uuid},
    {"string.message_id", "must be a message id <left@right>", fmt_message_id},
    {"string.hostname", "must be a host name", fmt_hostname},
    {"string.identifier", "must be an identifier (a-z, 0-9, '_', '-', '.')", fmt_identifier},
    {"string.time_zone", "must be an IANA time zone name", fmt_time_zone},
    {"string.mime_type", "must be a MIME type (type/subtype)", fmt_mime_type},
    {"string.language_tag", "must be a BCP 47 language tag", fmt_language_tag},
    {"string.date", "must be a date YYYY-MM-DD", fmt_date},
    {"string.currency", "must be an ISO 4217 currency code", fmt_currency},
    {"string.traceparent", "must be a W3C traceparent", fmt_traceparent},
};

/* ---- Values ----------------------------------------------------------------------------- */

/* Rule ids of the integer bounds, per protobuf-c type. */
static void int_rules(ProtobufCType t, const char **gte, const char **lte)
{
    switch (t) {
#define CX__INT_RULES(T, name)                                                                     \
    case PROTOBUF_C_TYPE_##T:                                                                      \
        *gte = name ".gte";                                                                        \
        *lte = name ".lte";                                                                        \
        return;
        CX__INT_RULES(INT32, "int32")
        CX__INT_RULES(SINT32, "sint32")
        CX__INT_RULES(SFIXED32, "sfixed32")
        CX__INT_RULES(INT64, "int64")
        CX__INT_RULES(SINT64, "sint64")
        CX__INT_RULES(SFIXED64, "sfixed64")
        CX__INT_RULES(UINT32, "uint32")
        CX__INT_RULES(FIXED32, "fixed32")
        CX__INT_RULES(UINT64, "uint64")
        CX__INT_RULES(FIXED64, "fixed64")
#undef CX__INT_RULES
    default:
        *gte = "int.gte";
        *lte = "int.lte";
        return;
    }
}

/* s: a present value (NULL reads as ""): a non-empty singular string, a list item or an active
 * oneof member. */
static inline void check_string(vctx_t *c, const frame_t *at, const cx_field_meta_t *fm,
                                const char *s)
{
    size_t len = 0, cps = 0;
    if (s != NULL && !utf8_measure(s, &len, &cps)) {
        report(c, at, "string.utf8", "must be valid UTF-8");
        return;
    }
    if (cps < fm->min_len)
        report(c, at, "string.min_len", "must be at least %" PRIu32 " characters", fm->min_len);
    if (fm->max_len && cps > fm->max_len)
        report(c, at, "string.max_len", "must be at most %" PRIu32 " characters", fm->max_len);
    if (len > 0 && (unsigned)fm->format - 1u < sizeof formats / sizeof formats[0] - 1u) {
        const format_t *f = &formats[fm->format];
        if (!f->check(s, len))
            report(c, at, f->rule, "%s", f->message);
    }
}

static void check_int(vctx_t *c, const frame_t *at, const ProtobufCFieldDescriptor *fd,
                      const cx_field_meta_t *fm, const void *p)
{
    if (!(fm->flags & (CX_F_HAS_GTE | CX_F_HAS_LTE)))
        return;
    const char *gte_rule, *lte_rule;
    int_rules(fd->type, &gte_rule, &lte_rule);
    int below, above;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        int64_t v = *(const uint32_t *)p;
        below = v < fm->gte;
        above = v > fm->lte;
        break;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        /* Compare without converting values above INT64_MAX to a negative number. */
        uint64_t v = *(const uint64_t *)p;
        below = fm->gte > 0 && v < (uint64_t)fm->gte;
        above = fm->lte < 0 || v > (uint64_t)fm->lte;
        break;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v = *(const int64_t *)p;
        below = v < fm->gte;
        above = v > fm->lte;
        break;
    }
    default: {
        int64_t v = *(const int32_t *)p;
        below = v < fm->gte;
        above = v > fm->lte;
        break;
    }
    }
    if ((fm->flags & CX_F_HAS_GTE) && below)
        report(c, at, gte_rule, "must be greater than or equal to %" PRId64, fm->gte);
    if ((fm->flags & CX_F_HAS_LTE) && above)
        report(c, at, lte_rule, "must be less than or equal to %" PRId64, fm->lte);
}

static void check_float(vctx_t *c, const frame_t *at, const ProtobufCFieldDescriptor *fd,
                        const cx_field_meta_t *fm, const void *p)
{
    int is_float = fd->type == PROTOBUF_C_TYPE_FLOAT;
    double d = is_float ? (double)*(const float *)p : *(const double *)p;
    if ((fm->flags & CX_F_FINITE) && !isfinite(d)) {
        /* Infinity would also break the bounds; one violation says it. */
        report(c, at, is_float ? "float.finite" : "double.finite", "must be finite");
        return;
    }
    /* NaN fails the bounds, as in protovalidate: it is not >= or <= anything. */
    if ((fm->flags & CX_F_HAS_GTE_D) && (isnan(d) || d < fm->gte_d))
        report(c, at, is_float ? "float.gte" : "double.gte", "must be greater than or equal to %g",
               fm->gte_d);
    if ((fm->flags & CX_F_HAS_LTE_D) && (isnan(d) || d > fm->lte_d))
        report(c, at, is_float ? "float.lte" : "double.lte", "must be less than or equal to %g",
               fm->lte_d);
}

static void check_bytes(vctx_t *c, const frame_t *at, const cx_field_meta_t *fm, size_t len)
{
    if (len < fm->min_len)
        report(c, at, "bytes.min_len", "must be at least %" PRIu32 " bytes", fm->min_len);
    if (fm->max_len && len > fm->max_len)
        report(c, at, "bytes.max_len", "must be at most %" PRIu32 " bytes", fm->max_len);
}

/* Whether v is a number of the enum. protobuf-c describes the numbers as ascending runs of
 * consecutive values (value_ranges, closed by a sentinel whose orig_index is n_values); most
 * enums are a single run, so scanning the runs is cheaper than the binary search of
 * protobuf_c_enum_descriptor_get_value(), with the same answer. */
static int enum_defined(const ProtobufCEnumDescriptor *ed, int32_t v)
{
    const ProtobufCIntRange *r = ed->value_ranges;
    for (unsigned k = 0; k < ed->n_value_ranges && v >= r[k].start_value; k++)
        if ((int64_t)v - r[k].start_value < (int64_t)(r[k + 1].orig_index - r[k].orig_index))
            return 1;
    return 0;
}

static void check_message(vctx_t *c, const frame_t *at, const cx_msg_meta_t *meta,
                          const ProtobufCMessage *msg);

/* A present submessage: a Timestamp's range, or the submessage's own rules. */
static void check_submessage(vctx_t *c, const frame_t *at, const cx_field_meta_t *fm,
                             const ProtobufCMessage *sub)
{
    if (fm->flags & CX_F_TIMESTAMP) {
        const Google__Protobuf__Timestamp *ts = (const Google__Protobuf__Timestamp *)sub;
        if (ts->seconds < CX_TS_MIN_SECONDS || ts->seconds > CX_TS_MAX_SECONDS || ts->nanos < 0 ||
            ts->nanos > 999999999)
            report(c, at, "timestamp.valid",
                   "must be between 0001-01-01 and 9999-12-31 with nanos in [0, 1e9)");
    } else if (fm->msg != NULL) {
        check_message(c, at, fm->msg, sub);
    }
}

/* One present value of a list or oneof field (a list item, the active member), which counts as
 * given even when empty. Singular fields are checked in check_message(). */
static void check_value(vctx_t *c, const frame_t *at, const ProtobufCFieldDescriptor *fd,
                        const cx_field_meta_t *fm, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING:
        check_string(c, at, fm, *(const char *const *)p);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        check_bytes(c, at, fm, ((const ProtobufCBinaryData *)p)->len);
        return;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        if (sub != NULL)
            check_submessage(c, at, fm, sub);
        return;
    }
    case PROTOBUF_C_TYPE_ENUM:
        if ((fm->flags & CX_F_DEFINED_ONLY) && !enum_defined(fd->descriptor, *(const int32_t *)p))
            report(c, at, "enum.defined_only", "must be one of the defined enum values");
        return;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        check_float(c, at, fd, fm, p);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        return;
    default:
        check_int(c, at, fd, fm, p);
        return;
    }
}

/* Whether check_value() can report anything about one value of this field: strings are
 * always checked for UTF-8, other kinds only when the field carries a rule for them. */
static int has_value_rules(const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING:
        return 1;
    case PROTOBUF_C_TYPE_BYTES:
        return fm->min_len != 0 || fm->max_len != 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return (fm->flags & CX_F_TIMESTAMP) != 0 || fm->msg != NULL;
    case PROTOBUF_C_TYPE_ENUM:
        return (fm->flags & CX_F_DEFINED_ONLY) != 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return (fm->flags & (CX_F_FINITE | CX_F_HAS_GTE_D | CX_F_HAS_LTE_D)) != 0;
    case PROTOBUF_C_TYPE_BOOL:
        return 0;
    default:
        return (fm->flags & (CX_F_HAS_GTE | CX_F_HAS_LTE)) != 0;
    }
}

static void report_required(vctx_t *c, const frame_t *up, const ProtobufCFieldDescriptor *fd)
{
    frame_t f = {up, fd, CX_NO_INDEX};
    report(c, &f, "required", "is required");
}

/* A list, or a oneof member. up: the frame of the message holding the field. */
static void check_list_or_member(vctx_t *c, const frame_t *up, const ProtobufCMessage *msg,
                                 const ProtobufCFieldDescriptor *fd, const cx_field_meta_t *fm)
{
    int required = (fm->flags & CX_F_REQUIRED) != 0;
    frame_t f = {up, fd, CX_NO_INDEX};
    if (!cx__is_repeated(fd)) {
        /* Only the active member's bytes are meaningful: the others share its storage. */
        if (cx__oneof_active(msg, fd))
            check_value(c, &f, fd, fm, cx__field_ptr(msg, fd));
        else if (required)
            report(c, &f, "required", "is required");
        return;
    }
    int rules = has_value_rules(fd, fm);
    if (!required && !rules && !fm->min_items && !fm->max_items)
        return;
    size_t n = cx__repeated_count(msg, fd);
    if (required && n == 0) {
        report(c, &f, "required", "is required");
    } else if (fm->min_items && n < fm->min_items) {
        report(c, &f, "repeated.min_items", "must have at least %" PRIu32 " items", fm->min_items);
    }
    if (fm->max_items && n > fm->max_items)
        report(c, &f, "repeated.max_items", "must have at most %" PRIu32 " items", fm->max_items);
    if (!rules)
        return;
    for (size_t i = 0; i < n; i++) {
        f.list_index = i;
        check_value(c, &f, fd, fm, cx__repeated_at(msg, fd, i));
    }
}

/* Whether required_if's condition holds: `when` equals `equals`, or is set when equals is
 * NULL. A oneof member that is not active equals nothing. */
static int condition_holds(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *fd,
                           const cx_required_if_t *ri)
{
    const char *eq = ri->equals;
    if (eq == NULL || cx__is_repeated(fd) || fd->type == PROTOBUF_C_TYPE_MESSAGE)
        return cx__field_is_set(msg, fd);
    if (cx__in_oneof(fd) && !cx__oneof_active(msg, fd))
        return 0;
    const void *p = cx__field_ptr(msg, fd);
    switch (fd->type) {
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int32_t *)p == ri->equals_enum;
    case PROTOBUF_C_TYPE_BOOL:
        return (*(const protobuf_c_boolean *)p != 0) == (strcmp(eq, "true") == 0);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return strcmp(s ? s : "", eq) == 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return b->len == strlen(eq) && (b->len == 0 || memcmp(b->data, eq, b->len) == 0);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return (double)*(const float *)p == strtod(eq, NULL);
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == strtod(eq, NULL);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)p == strtoull(eq, NULL, 10);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == strtoull(eq, NULL, 10);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return *(const int64_t *)p == strtoll(eq, NULL, 10);
    default:
        return *(const int32_t *)p == strtoll(eq, NULL, 10);
    }
}

/* The rules of a message rather than of one field: at_least_one_of and required_if. */
static void check_message_rules(vctx_t *c, const frame_t *at, const cx_msg_meta_t *meta,
                                const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = meta->desc;
    for (uint8_t g = 0; g < meta->n_at_least_one_of; g++) {
        const cx_field_group_t *grp = &meta->at_least_one_of[g];
        int any = 0;
        for (uint8_t k = 0; k < grp->n && !any; k++)
            any = cx__field_is_set(msg, &desc->fields[grp->index[k]]);
        if (!any)
            report(c, at, "message.at_least_one_of", "needs one of: %s", grp->names);
    }

    /* Rules often test one enum field against several values in a row (content_type decides
     * which field a message needs): read its value once for all of them. */
    unsigned enum_when = UINT_MAX; /* the field index enum_value was read from */
    int32_t enum_value = 0;
    for (const cx_required_if_t *ri = meta->required_if, *end = ri + meta->n_required_if; ri < end;
         ri++) {
        if (ri->when == enum_when && ri->equals != NULL) {
            if (enum_value != ri->equals_enum)
                continue;
        } else {
            const ProtobufCFieldDescriptor *when = &desc->fields[ri->when];
            int holds = condition_holds(msg, when, ri);
            if (when->type == PROTOBUF_C_TYPE_ENUM && !cx__is_repeated(when) &&
                (!cx__in_oneof(when) || cx__oneof_active(msg, when))) {
                enum_when = ri->when;
                enum_value = *(const int32_t *)cx__field_ptr(msg, when);
            }
            if (!holds)
                continue;
        }
        const ProtobufCFieldDescriptor *target = &desc->fields[ri->field];
        if (cx__field_is_set(msg, target))
            continue;
        const ProtobufCFieldDescriptor *when = &desc->fields[ri->when];
        frame_t f = {at, target, CX_NO_INDEX};
        if (ri->equals)
            report(c, &f, "message.required_if", "is required when %s is %s", when->name,
                   ri->equals);
        else
            report(c, &f, "message.required_if", "is required when %s is set", when->name);
    }
}

/* at: the frame of the field holding msg (NULL for the root message). */
static void check_message(vctx_t *c, const frame_t *at, const cx_msg_meta_t *meta,
                          const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = meta->desc;
    const cx_field_meta_t *fm = meta->fields;
    for (const ProtobufCFieldDescriptor *fd = desc->fields, *end = fd + desc->n_fields; fd < end;
         fd++, fm++) {
        if (fd->label == PROTOBUF_C_LABEL_REPEATED || (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
            check_list_or_member(c, at, msg, fd, fm);
            continue;
        }
        /* A singular field, the common case, checked here. Most are left unset and carry no
         * rule that could fire: they cost the loads of their type, value and flags, strings and
         * messages (the most common types) without a switch. A string, bytes or message left
         * empty is absent: only `required` looks at it. A number is checked even when zero. */
        const void *p = (const char *)msg + fd->offset;
        ProtobufCType type = fd->type;
        if (type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(const char *const *)p;
            if (s != NULL && s[0] != '\0') {
                frame_t f = {at, fd, CX_NO_INDEX};
                check_string(c, &f, fm, s);
            } else if (fm->flags & CX_F_REQUIRED) {
                report_required(c, at, fd);
            }
        } else if (type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
            if (sub != NULL) {
                frame_t f = {at, fd, CX_NO_INDEX};
                check_submessage(c, &f, fm, sub);
            } else if (fm->flags & CX_F_REQUIRED) {
                report_required(c, at, fd);
            }
        } else if ((fm->flags & CX_F_REQUIRED) && cx__value_is_default(fd, p)) {
            report_required(c, at, fd);
        } else if (type == PROTOBUF_C_TYPE_ENUM) {
            if ((fm->flags & CX_F_DEFINED_ONLY) &&
                !enum_defined(fd->descriptor, *(const int32_t *)p)) {
                frame_t f = {at, fd, CX_NO_INDEX};
                report(c, &f, "enum.defined_only", "must be one of the defined enum values");
            }
        } else if (type == PROTOBUF_C_TYPE_BYTES) {
            size_t len = ((const ProtobufCBinaryData *)p)->len;
            if (len != 0) {
                frame_t f = {at, fd, CX_NO_INDEX};
                check_bytes(c, &f, fm, len);
            }
        } else if (has_value_rules(fd, fm)) {
            frame_t f = {at, fd, CX_NO_INDEX};
            check_value(c, &f, fd, fm, p);
        }
    }
    if (meta->n_at_least_one_of || meta->n_required_if)
        check_message_rules(c, at, meta, msg);
}

int cx_validate(const cx_msg_meta_t *meta, const ProtobufCMessage *msg, cx_violations_t *v)
{
    if (v != NULL)
        v->count = 0;
    /* A message of another type would be read through the wrong offsets. */
    if (meta == NULL || msg == NULL || msg->descriptor != meta->desc)
        return CX_EINVAL;
    vctx_t c;
    c.v = v;
    c.count = 0;
    check_message(&c, NULL, meta, msg);
    if (v != NULL)
        v->count = c.count;
    return c.count ? CX_EVALIDATION : 0;
}
