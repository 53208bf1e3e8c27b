/* Structured JSON logs (cx/log.h).
 *
 * A line is rendered into a stack buffer of CX_LOG_LINE_MAX bytes and handed to the sink in one
 * call, so the default sink can write it with one write(). Nothing is allocated per line.
 *
 * Bounded lines that stay valid JSON: keys are written in a fixed order, and before each key the
 * writer keeps back enough room for every required key still to come (its name plus the
 * longest non-string value, 32 bytes) and for the closing `,"truncated":true}\n`. A string value
 * gets whatever room is left after that reservation and is cut on a whole escape or UTF-8
 * sequence, so however long the values are, the line closes with every key present. Extra keys
 * are all-or-nothing: one that does not fit is left out and the line is marked truncated.
 *
 * PII is masked while the line is written, from the caller's borrowed string: the unmasked value
 * is never copied anywhere, not even to the stack.
 *
 * A line costs a few thousand instructions, and services log one per item: nothing on the line
 * path goes through printf. Keys are constant text copied with their length, numbers and the
 * timestamp are written digit by digit (format_ms reproduces "%.3f" exactly, see there), runs
 * of plain bytes in a value are found eight at a time and copied at once, and the part of the
 * line that depends on the logger alone (service, version) is rendered when it is created.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/words.h"
#include "cx/cx.h"
#include "cx/log.h"

/* A fixed piece of line text and its length: copied with one memcpy, never measured. */
typedef struct {
    const char *text;
    size_t len;
} text_t;
/* clang-format off */
#define TEXT(lit) {lit, sizeof(lit) - 1}
/* clang-format on */

/* The part of every line that depends on the logger alone, `,"service":"...","version":"..."`,
 * rendered once by cx_logger_new: both names are under CX_LOG_NAME_MAX bytes, so escaped
 * (6 bytes a byte at most) this is its bound. */
#define HEAD_MAX (2 * (sizeof ",\"version\":\"\"" - 1 + 6 * (CX_LOG_NAME_MAX - 1)))

struct cx_logger_s {
    cx_allocator_t alloc;
    atomic_int level;
    cx_log_sink_fn sink;
    void *sink_ud;
    cx_log_flush_fn flush;
    cx_log_clock_fn clock;
    void *clock_ud;
    char service[CX_LOG_NAME_MAX];
    char version[CX_LOG_NAME_MAX];
    size_t head_len;
    char head[HEAD_MAX];
};

static void render_head(cx_logger_t *lg);

/* ---- Levels ------------------------------------------------------------------------------- */

/* Indexed by cx_log_level_t; CX_LOG_DEFAULT means info. */
#define LEVEL_MAP(X) X(info) X(debug) X(info) X(warn) X(error) X(off)

static const char *const LEVEL_NAMES[] = {
#define L_NAME(name) #name,
    LEVEL_MAP(L_NAME)
#undef L_NAME
};

/* The same names as JSON strings, for the line writer. */
static const text_t LEVEL_VALUES[] = {
#define L_VALUE(name) TEXT("\"" #name "\""),
    LEVEL_MAP(L_VALUE)
#undef L_VALUE
};

const char *cx_log_level_name(cx_log_level_t level)
{
    if ((int)level < CX_LOG_DEBUG || (int)level > CX_LOG_OFF)
        return "unknown";
    return LEVEL_NAMES[level];
}

static int ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        if (x != *b)
            return 0;
    }
    return *a == *b;
}

int cx_log_level_parse(const char *name, cx_log_level_t *out)
{
    if (name == NULL || out == NULL)
        return CX_EINVAL;
    for (int l = CX_LOG_DEBUG; l <= CX_LOG_OFF; l++) {
        if (ascii_ieq(name, LEVEL_NAMES[l])) {
            *out = (cx_log_level_t)l;
            return 0;
        }
    }
    if (ascii_ieq(name, "warning")) {
        *out = CX_LOG_WARN;
        return 0;
    }
    return CX_EINVAL;
}

/* ---- Logger ------------------------------------------------------------------------------- */

static int valid_level(int level)
{
    return level >= CX_LOG_DEFAULT && level <= CX_LOG_OFF;
}

int cx_logger_new(const cx_logger_config_t *cfg, cx_logger_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL || cfg->service == NULL || cfg->service[0] == '\0' ||
        !valid_level((int)cfg->level))
        return CX_EINVAL;
    const char *version = cfg->version ? cfg->version : cx_version_string();
    if (strlen(cfg->service) >= CX_LOG_NAME_MAX || strlen(version) >= CX_LOG_NAME_MAX)
        return CX_EINVAL;

    cx_allocator_t alloc = *cx_allocator_default();
    if (cfg->allocator != NULL) {
        if (cfg->allocator->alloc == NULL || cfg->allocator->free == NULL)
            return CX_EINVAL;
        alloc = *cfg->allocator;
    }
    cx_logger_t *lg = alloc.alloc(alloc.ud, sizeof *lg);
    if (lg == NULL)
        return CX_ENOMEM;
    memset(lg, 0, sizeof *lg);
    lg->alloc = alloc;
    atomic_init(&lg->level, cfg->level == CX_LOG_DEFAULT ? CX_LOG_INFO : (int)cfg->level);
    lg->sink = cfg->sink ? cfg->sink : cx_log_stderr_sink;
    lg->sink_ud = cfg->sink_ud;
    lg->flush = cfg->flush;
    lg->clock = cfg->clock;
    lg->clock_ud = cfg->clock_ud;
    memcpy(lg->service, cfg->service, strlen(cfg->service) + 1);
    memcpy(lg->version, version, strlen(version) + 1);
    render_head(lg);
    *out = lg;
    return 0;
}

void cx_logger_free(cx_logger_t *lg)
{
    if (lg == NULL)
        return;
    cx_logger_flush(lg);
    cx_allocator_t alloc = lg->alloc;
    alloc.free(alloc.ud, lg);
}

int cx_logger_set_level(cx_logger_t *lg, cx_log_level_t level)
{
    if (lg == NULL || !valid_level((int)level))
        return CX_EINVAL;
    atomic_store_explicit(&lg->level, level == CX_LOG_DEFAULT ? CX_LOG_INFO : (int)level,
                          memory_order_relaxed);
    return 0;
}

cx_log_level_t cx_logger_level(const cx_logger_t *lg)
{
    if (lg == NULL)
        return CX_LOG_OFF;
    /* atomic_load takes a non-const pointer in C11; the cast only drops const. */
    return (cx_log_level_t)atomic_load_explicit((atomic_int *)&lg->level, memory_order_relaxed);
}

int cx_log_enabled(const cx_logger_t *lg, cx_log_level_t level)
{
    if (lg == NULL || level < CX_LOG_DEBUG || level >= CX_LOG_OFF)
        return 0;
    return (int)level >= (int)cx_logger_level(lg);
}

int cx_logger_flush(cx_logger_t *lg)
{
    if (lg == NULL)
        return CX_EINVAL;
    /* The fd sinks write straight to the kernel: nothing to flush for them. */
    if (lg->flush != NULL)
        lg->flush(lg->sink_ud);
    return 0;
}

/* ---- Record setters ----------------------------------------------------------------------- */

int cx_log_begin(cx_log_record_t *rec, const cx_logger_t *lg, cx_log_level_t level)
{
    if (rec == NULL)
        return 0;
    if (!cx_log_enabled(lg, level)) {
        rec->enabled = 0;
        return 0;
    }
    memset(rec, 0, sizeof *rec);
    rec->logger = lg;
    rec->level = (int)level;
    rec->enabled = 1;
    rec->dedupe_hit = -1;
    return 1;
}

static void set_str(cx_log_record_t *rec, int field, const char *value)
{
    if (rec != NULL && rec->enabled)
        rec->str[field] = value;
}

void cx_log_set_connector(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__CONNECTOR, value);
}

void cx_log_set_correlation_id(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__CORRELATION_ID, value);
}

void cx_log_set_request_id(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__REQUEST_ID, value);
}

void cx_log_set_tenant_id(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__TENANT_ID, value);
}

void cx_log_set_integration_id(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__INTEGRATION_ID, value);
}

void cx_log_set_capability(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__CAPABILITY, value);
}

void cx_log_set_event_type(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__EVENT_TYPE, value);
}

void cx_log_set_dedupe_key(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__DEDUPE_KEY, value);
}

void cx_log_set_outcome(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__OUTCOME, value);
}

void cx_log_set_error_code(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__ERROR_CODE, value);
}

void cx_log_set_error_class(cx_log_record_t *rec, const char *value)
{
    set_str(rec, CX_LOG__ERROR_CLASS, value);
}

void cx_log_set_error(cx_log_record_t *rec, int code)
{
    set_str(rec, CX_LOG__ERROR_CODE, code ? cx_err_name(code) : NULL);
    set_str(rec, CX_LOG__ERROR_CLASS, code ? cx_err_class(code) : NULL);
}

void cx_log_set_msg(cx_log_record_t *rec, const char *msg)
{
    set_str(rec, CX_LOG__MSG, msg);
}

void cx_log_set_dedupe_hit(cx_log_record_t *rec, int hit)
{
    if (rec != NULL && rec->enabled)
        rec->dedupe_hit = hit ? 1 : 0;
}

void cx_log_set_latency_ms(cx_log_record_t *rec, double ms)
{
    if (rec != NULL && rec->enabled) {
        rec->latency_ms = ms;
        rec->has_latency = 1;
    }
}

void cx_log_set_attempt(cx_log_record_t *rec, int64_t attempt)
{
    if (rec != NULL && rec->enabled) {
        rec->attempt = attempt;
        rec->has_attempt = 1;
    }
}

void cx_log_set_upstream_status(cx_log_record_t *rec, int status)
{
    if (rec != NULL && rec->enabled) {
        rec->upstream_status = status;
        rec->has_upstream = 1;
    }
}

/* The standard keys, in output order; msg comes last, after the extra keys. X(key, string field
 * of the record or -1). */
#define STD_KEY_MAP(X)                                                                             \
    X(ts, -1)                                                                                      \
    X(level, -1)                                                                                   \
    X(service, -1)                                                                                 \
    X(version, -1)                                                                                 \
    X(connector, CX_LOG__CONNECTOR)                                                                \
    X(correlation_id, CX_LOG__CORRELATION_ID)                                                      \
    X(request_id, CX_LOG__REQUEST_ID)                                                              \
    X(tenant_id, CX_LOG__TENANT_ID)                                                                \
    X(integration_id, CX_LOG__INTEGRATION_ID)                                                      \
    X(capability, CX_LOG__CAPABILITY)                                                              \
    X(event_type, CX_LOG__EVENT_TYPE)                                                              \
    X(dedupe_key, CX_LOG__DEDUPE_KEY)                                                              \
    X(dedupe_hit, -1)                                                                              \
    X(outcome, CX_LOG__OUTCOME)                                                                    \
    X(latency_ms, -1)                                                                              \
    X(attempt, -1)                                                                                 \
    X(error_code, CX_LOG__ERROR_CODE)                                                              \
    X(error_class, CX_LOG__ERROR_CLASS)                                                            \
    X(upstream_status, -1)

enum {
#define K_ENUM(key, field) K_##key,
    STD_KEY_MAP(K_ENUM)
#undef K_ENUM
        N_STD_KEYS
};

/* Each key as the line spells it, `,"key":` (the first key drops the comma); the name alone is
 * text + 2. */
#define KEY_TEXT(name) TEXT(",\"" name "\":")
#define KEY_NAME_LEN(k) ((k).len - 4)

static const text_t STD_KEYS[N_STD_KEYS] = {
#define K_TEXT(key, field) KEY_TEXT(#key),
    STD_KEY_MAP(K_TEXT)
#undef K_TEXT
};

static const text_t MSG_KEY = KEY_TEXT("msg");
static const text_t TRUNCATED_KEY = KEY_TEXT("truncated");

static const int STR_OF_KEY[N_STD_KEYS] = {
#define K_FIELD(key, field) field,
    STD_KEY_MAP(K_FIELD)
#undef K_FIELD
};

static int same_name(const char *key, size_t n, const text_t *k)
{
    return k->text[2] == key[0] && KEY_NAME_LEN(*k) == n && memcmp(key, k->text + 2, n) == 0;
}

static int valid_extra_key(const cx_log_record_t *rec, const char *key)
{
    if (key == NULL || !(key[0] >= 'a' && key[0] <= 'z'))
        return 0;
    size_t n = 0;
    for (const char *p = key; *p; p++, n++) {
        char c = *p;
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    /* Names with another first byte or length are skipped without a compare. */
    for (int i = 0; i < N_STD_KEYS; i++) {
        if (same_name(key, n, &STD_KEYS[i]))
            return 0;
    }
    if (same_name(key, n, &MSG_KEY) || same_name(key, n, &TRUNCATED_KEY))
        return 0;
    for (int i = 0; i < rec->n_extra; i++) {
        if (strcmp(key, rec->extra[i].key) == 0)
            return 0;
    }
    return 1;
}

static int add_extra(cx_log_record_t *rec, const char *key, const char *value, int64_t num, int pii)
{
    if (rec == NULL)
        return CX_EINVAL;
    if (!rec->enabled)
        return 0;
    if (!valid_extra_key(rec, key))
        return CX_EINVAL;
    if (rec->n_extra >= CX_LOG_MAX_EXTRA)
        return CX_ENOSPC;
    rec->extra[rec->n_extra].key = key;
    rec->extra[rec->n_extra].value = value;
    rec->extra[rec->n_extra].num = num;
    rec->extra[rec->n_extra].pii = pii;
    rec->n_extra++;
    return 0;
}

int cx_log_set_pii(cx_log_record_t *rec, const char *key, const char *value, cx_pii_t pii)
{
    return add_extra(rec, key, value, 0, (int)pii);
}

/* pii = -1 marks an integer extra. */
int cx_log_set_int(cx_log_record_t *rec, const char *key, int64_t value)
{
    return add_extra(rec, key, NULL, value, -1);
}

/* ---- Line writer -------------------------------------------------------------------------- */

#define TAIL_TRUNCATED ",\"truncated\":true"
#define TAIL_CLOSE "}\n"
/* Room kept for each required key still to come: `,"key":` plus this much value. Enough for
 * the timestamp, the level, true/false/null, "" and every number the writer prints. */
#define VALUE_RESERVE 32
/* Kept back for msg, the last required key, and for all of them. */
#define RESERVE_MSG (sizeof ",\"msg\":" - 1 + VALUE_RESERVE)
#define K_RESERVE(key, field) +(sizeof ",\"" #key "\":" - 1 + VALUE_RESERVE)
#define RESERVE_ALL (RESERVE_MSG STD_KEY_MAP(K_RESERVE))
/* The reservations for every required key come to under 1 KiB; the limit must leave room. */
_Static_assert(CX_LOG_LINE_MAX >= 2048, "CX_LOG_LINE_MAX too small for the required keys");
/* The line opens with `{"ts":"...","level":"..."` (under 64 bytes) and the logger's head, under
 * no budget: with every reservation still kept back after them, they must always fit whole. */
_Static_assert(64 + HEAD_MAX + RESERVE_ALL + sizeof TAIL_TRUNCATED + sizeof TAIL_CLOSE <=
                   CX_LOG_LINE_MAX,
               "CX_LOG_LINE_MAX too small for the head of a line");

typedef struct {
    char *p;
    size_t len;
    size_t limit; /* content may not pass this: the closing tail is kept back */
    int truncated;
} lw_t;

/* Appends n bytes if they fit under budget; returns 0 or -1 (nothing written). */
static int lw_put(lw_t *w, size_t budget, const char *s, size_t n)
{
    if (budget > w->limit)
        budget = w->limit;
    if (w->len > budget || n > budget - w->len)
        return -1;
    memcpy(w->p + w->len, s, n);
    w->len += n;
    return 0;
}

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c == 0xE0) {
        len = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        len = 3;
    } else if (c == 0xED) {
        len = 3;
        hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c == 0xF0) {
        len = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        len = 4;
    } else if (c == 0xF4) {
        len = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

/* The JSON form of the character at s into out[6]; *used = input bytes it covers. */
static size_t escape_one(const unsigned char *s, size_t n, char out[6], size_t *used)
{
    static const char HEX[] = "0123456789abcdef";
    unsigned c = s[0];
    *used = 1;
    switch (c) {
    case '"':
        memcpy(out, "\\\"", 2);
        return 2;
    case '\\':
        memcpy(out, "\\\\", 2);
        return 2;
    case '\n':
        memcpy(out, "\\n", 2);
        return 2;
    case '\r':
        memcpy(out, "\\r", 2);
        return 2;
    case '\t':
        memcpy(out, "\\t", 2);
        return 2;
    case '\b':
        memcpy(out, "\\b", 2);
        return 2;
    case '\f':
        memcpy(out, "\\f", 2);
        return 2;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7F) {
        memcpy(out, "\\u00", 4);
        out[4] = HEX[c >> 4];
        out[5] = HEX[c & 15];
        return 6;
    }
    size_t len = utf8_seq(s, n);
    if (len == 0) {
        memcpy(out, "\\ufffd", 6);
        return 6;
    }
    memcpy(out, s, len);
    *used = len;
    return len;
}

/* Bytes that go into a JSON string as they are: printable ASCII but the quote and backslash. */
static int is_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
}

/* Nonzero when a byte of x is not plain. */
static uint64_t word_has_special(uint64_t x)
{
    return cx__word_has(x, '"') | cx__word_has(x, '\\') | cx__word_has(x, 0x7F) |
           cx__word_has_below(x, 0x20) | (x & CX__HIGHS);
}

/* The number of plain bytes at the start of s (n bytes): most values are plain throughout, so
 * they are measured eight bytes at a time and copied in one memcpy. */
static size_t plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (n - i >= 8 && !word_has_special(cx__word(s + i)))
        i += 8;
    /* Fewer than 8 bytes left: the word that ends the string covers them (and bytes already
     * known plain). */
    if (n - i < 8 && n >= 8 && !word_has_special(cx__word(s + n - 8)))
        return n;
    while (i < n && is_plain(s[i]))
        i++;
    return i;
}

/* Writes "s" (its first max_in bytes at most) under budget, cutting on a whole character when
 * room runs out; NULL writes null. The caller's reservation guarantees room for `""`/null. */
static void lw_string(lw_t *w, size_t budget, const char *s, size_t n, size_t max_in)
{
    if (s == NULL) {
        lw_put(w, budget, "null", 4);
        return;
    }
    if (n > max_in) {
        n = max_in;
        w->truncated = 1;
    }
    if (budget > w->limit)
        budget = w->limit;
    if (w->len >= budget)
        return; /* not even the opening quote fits */
    w->p[w->len++] = '"';
    /* Keep one byte back for the closing quote. */
    size_t inner = budget - 1;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* A run of plain bytes is cut where room runs out: every byte is a whole character. */
        size_t run = plain_run(u + i, n - i);
        if (run > 0) {
            size_t room = w->len < inner ? inner - w->len : 0;
            int cut = run > room;
            if (cut)
                run = room;
            memcpy(w->p + w->len, u + i, run);
            w->len += run;
            i += run;
            if (cut) {
                w->truncated = 1;
                break;
            }
            if (i == n)
                break;
        }
        char rep[6];
        size_t used;
        size_t r = escape_one(u + i, n - i, rep, &used);
        if (lw_put(w, inner, rep, r) != 0) {
            w->truncated = 1;
            break;
        }
        i += used;
    }
    if (w->len < budget)
        w->p[w->len++] = '"';
}

static void render_head(cx_logger_t *lg)
{
    lw_t w = {lg->head, 0, sizeof lg->head, 0};
    lw_put(&w, w.limit, STD_KEYS[K_service].text, STD_KEYS[K_service].len);
    lw_string(&w, w.limit, lg->service, strlen(lg->service), CX_LOG_NAME_MAX);
    lw_put(&w, w.limit, STD_KEYS[K_version].text, STD_KEYS[K_version].len);
    lw_string(&w, w.limit, lg->version, strlen(lg->version), CX_LOG_NAME_MAX);
    lg->head_len = w.len;
}

/* `,"key":` for an extra key (at most 32 bytes, checked when it was set), all or nothing. */
static int lw_extra_key(lw_t *w, size_t budget, const char *key)
{
    char tmp[48];
    size_t n = strlen(key);
    memcpy(tmp, ",\"", 2);
    memcpy(tmp + 2, key, n);
    memcpy(tmp + 2 + n, "\":", 2);
    return lw_put(w, budget, tmp, n + 4);
}

/* v in decimal into out; returns the length (20 at most, "-9223372036854775808"). */
static size_t format_int(int64_t v, char out[24])
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char tmp[20];
    size_t k = sizeof tmp, n = 0;
    do {
        tmp[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        out[n++] = '-';
    memcpy(out + n, tmp + k, sizeof tmp - k);
    return n + sizeof tmp - k;
}

/* ---- Masking ------------------------------------------------------------------------------ */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_local_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static int is_domain_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '-';
}

/* "***" + the last 4 digits of s into out[8]; "***" alone when there are 4 digits or fewer, as
 * those would be the whole number. */
static size_t mask_phone(const char *s, size_t n, char out[8])
{
    char last[4];
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_digit((unsigned char)s[i]))
            last[digits++ % 4] = s[i];
    }
    memcpy(out, "***", 3);
    if (digits <= 4)
        return 3;
    for (size_t k = 0; k < 4; k++)
        out[3 + k] = last[(digits + k) % 4];
    return 7;
}

/* first character + "***@" + domain into out (cap bytes); "[redacted]" when s is not an
 * address. */
static size_t mask_email(const char *s, size_t n, char *out, size_t cap)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '@')
            at = s + i;
    }
    size_t dlen = at ? n - (size_t)(at + 1 - s) : 0;
    if (at == NULL || at == s || dlen == 0 || dlen + 5 > cap) {
        memcpy(out, "[redacted]", 10);
        return 10;
    }
    size_t k = 0;
    /* Only an ASCII first character: a lone byte of a multi-byte one would be invalid UTF-8. */
    if ((unsigned char)s[0] < 0x80 && (unsigned char)s[0] >= 0x20)
        out[k++] = s[0];
    memcpy(out + k, "***@", 4);
    k += 4;
    memcpy(out + k, at + 1, dlen);
    return k + dlen;
}

/* msg with e-mail addresses and runs of 7+ digits masked, into out (cap bytes). */
static size_t scrub_msg(const char *s, char *out, size_t cap, int *truncated)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (u[i] != '\0') {
        unsigned char prev = i ? u[i - 1] : ' ';
        char rep[CX_LOG_VALUE_MAX + 8];
        size_t rlen = 0, next = i + 1;
        int masked = 0;
        if (is_local_char(u[i]) && !is_local_char(prev)) {
            size_t j = i;
            while (is_local_char(u[j]))
                j++;
            if (u[j] == '@' && is_domain_char(u[j + 1])) {
                size_t e = j + 1;
                int dot = 0;
                while (is_domain_char(u[e])) {
                    dot |= u[e] == '.' && e > j + 1 && is_alnum(u[e + 1]);
                    e++;
                }
                if (dot) {
                    rlen = mask_email(s + i, e - i, rep, sizeof rep);
                    next = e;
                    masked = 1;
                }
            }
        }
        if (!masked && !is_alnum(prev) && (is_digit(u[i]) || (u[i] == '+' && is_digit(u[i + 1])))) {
            size_t j = u[i] == '+' ? i + 1 : i;
            while (is_digit(u[j]))
                j++;
            if (j - i - (u[i] == '+') >= 7) {
                rlen = mask_phone(s + i, j - i, rep);
                next = j;
                masked = 1;
            }
        }
        if (!masked) {
            rep[0] = (char)u[i];
            rlen = 1;
        }
        if (rlen > cap - k) {
            *truncated = 1;
            break;
        }
        memcpy(out + k, rep, rlen);
        k += rlen;
        i = next;
    }
    return k;
}

/* Writes the value of an extra key, masked by class. */
static void lw_extra(lw_t *w, size_t budget, const char *value, int64_t num, int pii)
{
    char tmp[CX_LOG_VALUE_MAX + 8];
    size_t n;
    if (pii < 0) {
        n = format_int(num, tmp);
        lw_put(w, budget, tmp, n);
        return;
    }
    if (value == NULL) {
        lw_put(w, budget, "null", 4);
        return;
    }
    switch (pii) {
    case CX_PII_NONE:
        lw_string(w, budget, value, strnlen(value, CX_LOG_VALUE_MAX + 1), CX_LOG_VALUE_MAX);
        return;
    case CX_PII_PHONE:
        n = mask_phone(value, strlen(value), tmp);
        break;
    case CX_PII_EMAIL:
        n = mask_email(value, strlen(value), tmp, sizeof tmp);
        break;
    default: /* name, content, secret, unspecified, unknown: fail closed */
        memcpy(tmp, "[redacted]", 10);
        n = 10;
        break;
    }
    lw_string(w, budget, tmp, n, sizeof tmp);
}

/* ---- Emit --------------------------------------------------------------------------------- */

static int64_t now_ms(const cx_logger_t *lg)
{
    if (lg->clock != NULL)
        return lg->clock(lg->clock_ud);
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* RFC 3339 UTC with milliseconds, quoted: `"YYYY-MM-DDTHH:MM:SS.mmmZ"`, 26 bytes. Days-to-civil
 * from H. Hinnant's algorithm and digits written by hand, so no gmtime_r, no locale or TZ
 * lookups and no printf on the hot path; the divisions are by constants (multiplications),
 * cheaper than keeping a per-second cache that threads would have to share. */
#define TS_QUOTED_LEN 26
static void format_ts(int64_t ms, char out[TS_QUOTED_LEN])
{
    const int64_t max_ms = INT64_C(253402300799999); /* 9999-12-31T23:59:59.999Z */
    if (ms < 0)
        ms = 0;
    if (ms > max_ms)
        ms = max_ms;
    int64_t secs = ms / 1000, days = secs / 86400, sod = secs % 86400;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    /* The clamp above keeps the year in 1970..9999: always four digits. */
    unsigned y = (unsigned)(yoe + era * 400 + (m <= 2));
    unsigned msec = (unsigned)(ms % 1000);
    memcpy(out, "\"0000-00-00T00:00:00.000Z\"", TS_QUOTED_LEN);
    put2(out + 1, y / 100);
    put2(out + 3, y % 100);
    put2(out + 6, m);
    put2(out + 9, d);
    put2(out + 12, (unsigned)(sod / 3600));
    put2(out + 15, (unsigned)(sod / 60 % 60));
    put2(out + 18, (unsigned)(sod % 60));
    out[21] = (char)('0' + msec / 100);
    put2(out + 22, msec % 100);
}

/* Up to 3 decimals, trailing zeros dropped: 3.25, 12, 0.001 (v finite).
 *
 * The digits are printf's "%.3f": v * 1000 rounded to the nearest integer, ties to even, computed
 * exactly on v's binary value. v is m * 2^e with a 53-bit integer m; m * 1000 < 2^63 fits in 64
 * bits, and for 0.0005 <= |v| <= 1e12 (smaller values print as 0, larger ones are clamped) the
 * exponent is in -63..-13, so round(v * 1000) is one shift and a look at the bits shifted out.
 * This is printf's output in the default rounding mode (the runtime never changes it); in a
 * thread that an application switched to another mode, printf would follow that mode and the
 * line does not: a latency reads the same whichever thread logs it. */
static size_t format_ms(double v, char out[32])
{
    if (v > 1e12)
        v = 1e12;
    if (v < -1e12)
        v = -1e12;
    if (v > -0.0005 && v < 0.0005)
        v = 0;
    size_t n = 0;
    if (v < 0) {
        out[n++] = '-';
        v = -v;
    }
    uint64_t q = 0; /* round(v * 1000) */
    if (v != 0) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        unsigned shift = 1075u - (unsigned)(bits >> 52); /* -e */
        uint64_t x = ((bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52)) * 1000;
        uint64_t rest = x & ((UINT64_C(1) << shift) - 1), half = UINT64_C(1) << (shift - 1);
        q = x >> shift;
        if (rest > half || (rest == half && (q & 1)))
            q++;
    }
    n += format_int((int64_t)(q / 1000), out + n);
    unsigned frac = (unsigned)(q % 1000);
    if (frac != 0) {
        out[n++] = '.';
        out[n++] = (char)('0' + frac / 100);
        if (frac % 100 != 0) {
            out[n++] = (char)('0' + frac / 10 % 10);
            if (frac % 10 != 0)
                out[n++] = (char)('0' + frac % 10);
        }
    }
    return n;
}

void cx_log_emit(cx_log_record_t *rec)
{
    if (rec == NULL || !rec->enabled)
        return;
    rec->enabled = 0;
    const cx_logger_t *lg = rec->logger;

    char line[CX_LOG_LINE_MAX];
    lw_t w = {line, 0, sizeof line - 1 - (sizeof TAIL_TRUNCATED - 1) - (sizeof TAIL_CLOSE - 1), 0};

    /* The head, ts to version, always fits whole (asserted above): no budget to check. */
    char num[32];
    lw_put(&w, w.limit, "{", 1);
    lw_put(&w, w.limit, STD_KEYS[K_ts].text + 1, STD_KEYS[K_ts].len - 1);
    format_ts(now_ms(lg), num);
    lw_put(&w, w.limit, num, TS_QUOTED_LEN);
    lw_put(&w, w.limit, STD_KEYS[K_level].text, STD_KEYS[K_level].len);
    lw_put(&w, w.limit, LEVEL_VALUES[rec->level].text, LEVEL_VALUES[rec->level].len);
    lw_put(&w, w.limit, lg->head, lg->head_len);

    /* reserve: room kept back for the required keys after key i (msg included); each key gives
     * its share back as it comes. */
    size_t reserve = RESERVE_ALL;
    for (int i = 0; i < K_connector; i++)
        reserve -= STD_KEYS[i].len + VALUE_RESERVE;
    for (int i = K_connector; i < N_STD_KEYS; i++) {
        reserve -= STD_KEYS[i].len + VALUE_RESERVE;
        size_t budget = w.limit - reserve;
        size_t n;
        lw_put(&w, budget, STD_KEYS[i].text, STD_KEYS[i].len);
        if (STR_OF_KEY[i] >= 0) {
            const char *s = rec->str[STR_OF_KEY[i]];
            lw_string(&w, budget, s, s ? strnlen(s, CX_LOG_VALUE_MAX + 1) : 0, CX_LOG_VALUE_MAX);
            continue;
        }
        switch (i) {
        case K_dedupe_hit:
            if (rec->dedupe_hit < 0)
                lw_put(&w, budget, "null", 4);
            else
                lw_put(&w, budget, rec->dedupe_hit ? "true" : "false", rec->dedupe_hit ? 4 : 5);
            break;
        case K_latency_ms:
            if (rec->has_latency && isfinite(rec->latency_ms)) {
                n = format_ms(rec->latency_ms, num);
                lw_put(&w, budget, num, n);
            } else {
                lw_put(&w, budget, "null", 4);
            }
            break;
        case K_attempt:
        case K_upstream_status:
            if ((i == K_attempt && rec->has_attempt) ||
                (i == K_upstream_status && rec->has_upstream)) {
                n = format_int(i == K_attempt ? rec->attempt : rec->upstream_status, num);
                lw_put(&w, budget, num, n);
            } else {
                lw_put(&w, budget, "null", 4);
            }
            break;
        default:
            lw_put(&w, budget, "null", 4);
            break;
        }
    }

    for (int i = 0; i < rec->n_extra; i++) {
        size_t budget = w.limit - RESERVE_MSG;
        size_t mark = w.len;
        int truncated_before = w.truncated;
        w.truncated = 0;
        int ok = lw_extra_key(&w, budget, rec->extra[i].key) == 0;
        size_t after_key = w.len;
        if (ok)
            lw_extra(&w, budget, rec->extra[i].value, rec->extra[i].num, rec->extra[i].pii);
        /* A key whose value did not fit whole is left out whole. */
        if (!ok || w.len == after_key || w.truncated) {
            w.len = mark;
            w.truncated = 1;
        }
        w.truncated |= truncated_before;
    }

    lw_put(&w, w.limit, MSG_KEY.text, MSG_KEY.len);
    const char *msg = rec->str[CX_LOG__MSG];
    if (msg == NULL) {
        lw_put(&w, w.limit, "null", 4);
    } else if (strpbrk(msg, "@0123456789") == NULL) {
        /* Nothing to mask (no address without an '@', no number without a digit): the text
         * goes in as it is, cut where scrub_msg would cut it. */
        lw_string(&w, w.limit, msg, strnlen(msg, CX_LOG_LINE_MAX + 1), CX_LOG_LINE_MAX);
    } else {
        char scrubbed[CX_LOG_LINE_MAX];
        size_t n = scrub_msg(msg, scrubbed, sizeof scrubbed, &w.truncated);
        lw_string(&w, w.limit, scrubbed, n, n);
    }

    /* The tail was kept back from w.limit, so these always fit. */
    if (w.truncated) {
        memcpy(line + w.len, TAIL_TRUNCATED, sizeof TAIL_TRUNCATED - 1);
        w.len += sizeof TAIL_TRUNCATED - 1;
    }
    memcpy(line + w.len, TAIL_CLOSE, sizeof TAIL_CLOSE - 1);
    w.len += sizeof TAIL_CLOSE - 1;
    line[w.len] = '\0';
    lg->sink(lg->sink_ud, line, w.len);
}

/* ---- Sinks -------------------------------------------------------------------------------- */

static void write_all(int fd, const char *line, size_t len)
{
    /* One write() for the whole line: atomic below PIPE_BUF. Short writes only happen above
     * it (or on a full disk); the rest is written rather than lost. */
    while (len > 0) {
        ssize_t n = write(fd, line, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        line += n;
        len -= (size_t)n;
    }
}

void cx_log_stderr_sink(void *ud, const char *line, size_t len)
{
    (void)ud;
    write_all(STDERR_FILENO, line, len);
}

void cx_log_fd_sink(void *ud, const char *line, size_t len)
{
    write_all(ud ? *(const int *)ud : STDERR_FILENO, line, len);
}

struct cx_log_capture_s {
    pthread_mutex_t mu;
    char **lines;
    size_t n, cap, max, dropped;
};

int cx_log_capture_new(size_t max_lines, cx_log_capture_t **out)
{
    if (out == NULL)
        return CX_EINVAL;
    *out = NULL;
    cx_log_capture_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return CX_ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return CX_ENOMEM;
    }
    c->max = max_lines;
    *out = c;
    return 0;
}

static void capture_forget(cx_log_capture_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->lines[i]);
    free(c->lines);
    c->lines = NULL;
    c->n = c->cap = c->dropped = 0;
}

void cx_log_capture_free(cx_log_capture_t *cap)
{
    if (cap == NULL)
        return;
    capture_forget(cap);
    pthread_mutex_destroy(&cap->mu);
    free(cap);
}

void cx_log_capture_sink(void *ud, const char *line, size_t len)
{
    cx_log_capture_t *c = ud;
    if (c == NULL)
        return;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    char *copy = malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, line, len);
        copy[len] = '\0';
    }
    pthread_mutex_lock(&c->mu);
    int kept = 0;
    if (copy != NULL && (c->max == 0 || c->n < c->max)) {
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            char **grown = realloc(c->lines, ncap * sizeof *grown);
            if (grown != NULL) {
                c->lines = grown;
                c->cap = ncap;
            }
        }
        if (c->n < c->cap) {
            c->lines[c->n++] = copy;
            kept = 1;
        }
    }
    if (!kept)
        c->dropped++;
    pthread_mutex_unlock(&c->mu);
    if (!kept)
        free(copy);
}

size_t cx_log_capture_count(cx_log_capture_t *cap)
{
    if (cap == NULL)
        return 0;
    pthread_mutex_lock(&cap->mu);
    size_t n = cap->n;
    pthread_mutex_unlock(&cap->mu);
    return n;
}

size_t cx_log_capture_dropped(cx_log_capture_t *cap)
{
    if (cap == NULL)
        return 0;
    pthread_mutex_lock(&cap->mu);
    size_t n = cap->dropped;
    pthread_mutex_unlock(&cap->mu);
    return n;
}

const char *cx_log_capture_line(cx_log_capture_t *cap, size_t i)
{
    if (cap == NULL)
        return NULL;
    pthread_mutex_lock(&cap->mu);
    const char *s = i < cap->n ? cap->lines[i] : NULL;
    pthread_mutex_unlock(&cap->mu);
    return s;
}

int cx_log_capture_contains(cx_log_capture_t *cap, const char *needle)
{
    if (cap == NULL || needle == NULL)
        return 0;
    int found = 0;
    pthread_mutex_lock(&cap->mu);
    for (size_t i = 0; i < cap->n && !found; i++)
        found = strstr(cap->lines[i], needle) != NULL;
    pthread_mutex_unlock(&cap->mu);
    return found;
}

void cx_log_capture_clear(cx_log_capture_t *cap)
{
    if (cap == NULL)
        return;
    pthread_mutex_lock(&cap->mu);
    capture_forget(cap);
    pthread_mutex_unlock(&cap->mu);
}
