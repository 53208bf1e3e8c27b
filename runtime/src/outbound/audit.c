/* The audit chain (cx/audit.h): records, MACs, checkpoints, verification, retention and the
 * `cx audit` command.
 *
 * The stores only keep bytes; everything that needs the key is here. An append is:
 *
 *   head = cached head of the tenant's chain (or the store's, on a miss)
 *   loop: build the records on top of head (seq, prev_mac, key_id, mac, proto3 JSON),
 *         sign the new head checkpoint,
 *         store->append(expect = head, records, checkpoint)   -- compare-and-set
 *         CX_ECONFLICT: another process appended; head = the head it reported; again.
 *
 * so the store's compare-and-set, not this process, decides the order: two processes can
 * never both link to the same record.
 *
 * Why the protobuf encoding is the canonical form: it is what the schema defines (the JSON
 * form allows many spellings of one record: escapes, key order, whitespace), and protobuf-c
 * writes fields in field-number order, so the bytes are a function of the record's values.
 * A stored line is decoded strictly (unknown fields refused) and re-encoded to be checked,
 * so a field added to a stored line is a malformed record, not an unchecked one.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cx/arena.h"
#include "cx/audit.h"
#include "cx/automation/v1/automation.cx.h"
#include "cx/buf.h"
#include "cx/signature.h"
#include "outbound/audit_internal.h"

#define RECORD_LABEL "cx.audit.record.v1"
#define CHECKPOINT_LABEL "cx.audit.checkpoint.v1"
#define KEY_ID_LABEL "cx.audit.key-id"
#define KEY_MAX 1024
#define MIN_KEY 16
#define CACHE_SLOTS 64
#define MAX_RACES 64 /* compare-and-set failures in a row before giving up */

typedef struct key_s {
    char id[CX_AUDIT_KEY_ID_SIZE];
    unsigned char key[KEY_MAX];
    size_t len;
} key_t_;

typedef struct cache_s {
    char tenant[CX_AUDIT_TENANT_SIZE];
    cx_audit_head_t head;
} cache_t;

struct cx_audit_s {
    cx_audit_store_t *store;
    key_t_ keys[CX_AUDIT_MAX_KEYS];
    size_t n_keys;
    cx_clock_t clock;
    int has_clock;
    uint32_t checkpoint_every;
    pthread_mutex_t mu; /* appends of this process, and the head cache */
    cache_t cache[CACHE_SLOTS];
};

/* ---- Small helpers -------------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int cx__audit_mac_ok(const char *s)
{
    if (s == NULL)
        return 0;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= 64 || hexv(s[i]) < 0)
            return 0;
    return i == 64;
}

static void mac_raw(const char *hex, unsigned char out[32])
{
    for (int i = 0; i < 32; i++)
        out[i] = (unsigned char)(hexv(hex[2 * i]) << 4 | hexv(hex[2 * i + 1]));
}

int cx__audit_tenant_ok(const char *t)
{
    if (t == NULL || t[0] == '\0')
        return 0;
    size_t n = strlen(t);
    if (n > CX_AUDIT_TENANT_SIZE - 1)
        return 0;
    if (!((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= '0' && t[0] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static int64_t now_ms(const cx_audit_t *a)
{
    if (a->has_clock)
        return cx_clock_now(&a->clock) * 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const key_t_ *find_key(const cx_audit_t *a, const char *id)
{
    for (size_t i = 0; i < a->n_keys; i++)
        if (strcmp(a->keys[i].id, id) == 0)
            return &a->keys[i];
    return NULL;
}

static int equal_hex(const char *x, const char *y)
{
    size_t n = strlen(x);
    return n == strlen(y) && CRYPTO_memcmp(x, y, n) == 0;
}

/* ---- MACs ----------------------------------------------------------------------------------- */

/* mac = HMAC(key, RECORD_LABEL 0x00 || raw(prev_mac) || pack(record with mac cleared)).
 * r->mac must be "" (the caller clears it). */
static int record_mac(const key_t_ *k, const Cx__Automation__V1__AuditRecord *r,
                      char out[CX_AUDIT_MAC_SIZE])
{
    size_t packed = protobuf_c_message_get_packed_size(&r->base);
    size_t lab = sizeof RECORD_LABEL; /* with its NUL: the 0x00 separator */
    size_t plen = r->prev_mac && r->prev_mac[0] ? 32 : 0;
    size_t total = lab + plen + packed;
    unsigned char stackbuf[4096], *buf = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (buf == NULL)
        return CX_ENOMEM;
    memcpy(buf, RECORD_LABEL, lab);
    if (plen)
        mac_raw(r->prev_mac, buf + lab);
    protobuf_c_message_pack(&r->base, buf + lab + plen);
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    int rc = cx_hmac_sha256(k->key, k->len, buf, total, mac);
    if (buf != stackbuf)
        free(buf);
    if (rc != 0)
        return CX_ECRYPTO;
    to_hex(mac, sizeof mac, out);
    return 0;
}

static const char *cp_kind_name(cx_audit_cp_kind_t k)
{
    return k == CX_AUDIT_CP_GENESIS ? "genesis" : "head";
}

static int checkpoint_sig(const key_t_ *k, const cx_audit_checkpoint_t *cp,
                          char out[CX_AUDIT_MAC_SIZE])
{
    char data[512];
    int n = snprintf(data, sizeof data, "%s%c%s%c%s%c%" PRIu64 "%c%s%c%" PRId64 "%c%s",
                     CHECKPOINT_LABEL, 0, cp_kind_name(cp->kind), 0, cp->tenant_id, 0, cp->seq, 0,
                     cp->mac, 0, cp->at_ms, 0, cp->key_id);
    if (n < 0 || (size_t)n >= sizeof data)
        return CX_EINVAL;
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    if (cx_hmac_sha256(k->key, k->len, data, (size_t)n, mac) != 0)
        return CX_ECRYPTO;
    to_hex(mac, sizeof mac, out);
    return 0;
}

static int sign_checkpoint(const cx_audit_t *a, cx_audit_cp_kind_t kind, const char *tenant,
                           const cx_audit_head_t *h, cx_audit_checkpoint_t *cp)
{
    memset(cp, 0, sizeof *cp);
    cp->kind = kind;
    snprintf(cp->tenant_id, sizeof cp->tenant_id, "%s", tenant);
    cp->seq = h->seq;
    snprintf(cp->mac, sizeof cp->mac, "%s", h->mac);
    cp->at_ms = now_ms(a);
    snprintf(cp->key_id, sizeof cp->key_id, "%s", a->keys[0].id);
    return checkpoint_sig(&a->keys[0], cp, cp->sig);
}

/* 0 when cp is signed by one of our keys for this tenant and kind. */
static int checkpoint_ok(const cx_audit_t *a, const char *tenant, cx_audit_cp_kind_t kind,
                         const cx_audit_checkpoint_t *cp)
{
    if (cp->kind != kind || strcmp(cp->tenant_id, tenant) != 0)
        return CX_EAUDIT_TAMPERED;
    if (cp->seq > 0 ? !cx__audit_mac_ok(cp->mac) : cp->mac[0] != '\0')
        return CX_EAUDIT_TAMPERED;
    const key_t_ *k = find_key(a, cp->key_id);
    char sig[CX_AUDIT_MAC_SIZE];
    if (k == NULL || checkpoint_sig(k, cp, sig) != 0 || !equal_hex(sig, cp->sig))
        return CX_EAUDIT_TAMPERED;
    return 0;
}

/* ---- Checkpoint text (the file store's format) ---------------------------------------------- */

long cx__audit_cp_format(const cx_audit_checkpoint_t *cp, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "{\"v\":1,\"kind\":\"%s\",\"tenant_id\":\"%s\",\"seq\":%" PRIu64
                     ",\"mac\":\"%s\",\"at_ms\":%" PRId64 ",\"key_id\":\"%s\",\"sig\":\"%s\"}",
                     cp_kind_name(cp->kind), cp->tenant_id, cp->seq, cp->mac, cp->at_ms, cp->key_id,
                     cp->sig);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Reads "<key>":"<value>" or "<key>":<digits> at *p, exactly; advances *p. */
static int cp_field(const char **p, const char *end, const char *key, int quoted, char *out,
                    size_t cap)
{
    size_t kl = strlen(key);
    if ((size_t)(end - *p) < kl + 3 || (*p)[0] != '"' || memcmp(*p + 1, key, kl) != 0 ||
        (*p)[kl + 1] != '"' || (*p)[kl + 2] != ':')
        return -1;
    *p += kl + 3;
    size_t n = 0;
    if (quoted) {
        if (*p >= end || **p != '"')
            return -1;
        (*p)++;
        while (*p < end && **p != '"') {
            char c = **p;
            if (c == '\\' || (unsigned char)c < 0x20 || n + 1 >= cap)
                return -1;
            out[n++] = c;
            (*p)++;
        }
        if (*p >= end)
            return -1;
        (*p)++;
    } else {
        while (*p < end && ((**p >= '0' && **p <= '9') || (**p == '-' && n == 0))) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = **p;
            (*p)++;
        }
        if (n == 0)
            return -1;
    }
    out[n] = '\0';
    if (*p < end && (**p == ',' || **p == '}'))
        (*p)++;
    else
        return -1;
    return 0;
}

int cx__audit_cp_parse(const char *s, size_t len, cx_audit_checkpoint_t *cp)
{
    memset(cp, 0, sizeof *cp);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    const char *p = s, *end = s + len;
    char v[8], kind[16], seq[24], at[24];
    if (p >= end || *p++ != '{')
        return CX_EAUDIT_TAMPERED;
    if (cp_field(&p, end, "v", 0, v, sizeof v) || strcmp(v, "1") != 0 ||
        cp_field(&p, end, "kind", 1, kind, sizeof kind) ||
        cp_field(&p, end, "tenant_id", 1, cp->tenant_id, sizeof cp->tenant_id) ||
        cp_field(&p, end, "seq", 0, seq, sizeof seq) ||
        cp_field(&p, end, "mac", 1, cp->mac, sizeof cp->mac) ||
        cp_field(&p, end, "at_ms", 0, at, sizeof at) ||
        cp_field(&p, end, "key_id", 1, cp->key_id, sizeof cp->key_id) ||
        cp_field(&p, end, "sig", 1, cp->sig, sizeof cp->sig) || p != end)
        return CX_EAUDIT_TAMPERED;
    if (strcmp(kind, "head") == 0)
        cp->kind = CX_AUDIT_CP_HEAD;
    else if (strcmp(kind, "genesis") == 0)
        cp->kind = CX_AUDIT_CP_GENESIS;
    else
        return CX_EAUDIT_TAMPERED;
    if (seq[0] == '-')
        return CX_EAUDIT_TAMPERED;
    errno = 0;
    cp->seq = strtoull(seq, NULL, 10);
    cp->at_ms = strtoll(at, NULL, 10);
    return errno ? CX_EAUDIT_TAMPERED : 0;
}

/* ---- Records -------------------------------------------------------------------------------- */

static int parse_record(cx_arena_t *arena, const char *json, size_t len,
                        Cx__Automation__V1__AuditRecord **out)
{
    ProtobufCMessage *m = NULL;
    cx_error_t e = {0};
    if (len == 0 || len > CX_AUDIT_LINE_MAX ||
        cx_from_json(&cx_automation_audit_record_meta, json, len, arena, NULL, &m, &e) != 0)
        return CX_EAUDIT_TAMPERED;
    *out = (Cx__Automation__V1__AuditRecord *)m;
    return 0;
}

int cx__audit_line_head(const char *json, size_t len, cx_audit_head_t *out)
{
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 4 * CX_AUDIT_LINE_MAX);
    Cx__Automation__V1__AuditRecord *r;
    int rc = parse_record(&arena, json, len, &r);
    if (rc == 0 && (r->seq == 0 || !cx__audit_mac_ok(r->mac)))
        rc = CX_EAUDIT_TAMPERED;
    if (rc == 0) {
        out->seq = r->seq;
        memcpy(out->mac, r->mac, CX_AUDIT_MAC_SIZE);
    }
    cx_arena_release(&arena);
    return rc;
}

/* One record built for an append. */
typedef struct built_s {
    cx_buf_t json;
    char mac[CX_AUDIT_MAC_SIZE];
    uint64_t seq;
} built_t;

static char *str_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

static int build_record(const cx_audit_t *a, const cx_audit_entry_t *e, int64_t at_ms, uint64_t seq,
                        const char *prev_mac, size_t index, int batch, built_t *b, cx_error_t *err)
{
    Cx__Common__V1__ActorRef actor = CX__COMMON__V1__ACTOR_REF__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Cx__Automation__V1__AuditRecord r = CX__AUTOMATION__V1__AUDIT_RECORD__INIT;
    char where[32] = "";
    if (batch)
        snprintf(where, sizeof where, "entries[%zu].", index);
    actor.id = str_or_empty(e->actor_id ? e->actor_id : "system");
    actor.kind = e->actor_kind ? (Cx__Common__V1__ActorKind)e->actor_kind
                               : CX__COMMON__V1__ACTOR_KIND__ACTOR_KIND_SYSTEM;
    ts.seconds = at_ms >= 0 ? at_ms / 1000 : -((-at_ms + 999) / 1000);
    ts.nanos = (int32_t)((at_ms - ts.seconds * 1000) * 1000000);
    r.seq = seq;
    r.actor = &actor;
    r.tenant_id = str_or_empty(e->tenant_id);
    r.action = str_or_empty(e->action);
    r.target = str_or_empty(e->target);
    r.correlation_id = str_or_empty(e->correlation_id);
    r.dedupe_key = str_or_empty(e->dedupe_key);
    r.capability = (Cx__Options__V1__CapabilityId)e->capability;
    r.outcome = (Cx__Automation__V1__AuditOutcome)e->outcome;
    r.error_code = str_or_empty(e->error_code);
    r.recorded_at = &ts;
    r.key_id = (char *)a->keys[0].id;
    r.prev_mac = (char *)prev_mac;
    r.mac = "";
    int rc = record_mac(&a->keys[0], &r, b->mac);
    if (rc != 0)
        return cx_error_set(err, rc, NULL, "audit: cannot compute the record MAC");
    r.mac = b->mac;
    cx_violation_t viol[1];
    cx_violations_t v = {viol, 1, 0};
    if (cx_validate(&cx_automation_audit_record_meta, &r.base, &v) != 0) {
        char path[192];
        snprintf(path, sizeof path, "%s%s", where, v.count ? viol[0].path : "");
        return cx_error_set(err, CX_EVALIDATION, path, "audit record: %s",
                            v.count ? viol[0].message : "invalid");
    }
    b->seq = seq;
    cx_buf_init(&b->json, CX_AUDIT_LINE_MAX);
    rc = cx_to_json(&cx_automation_audit_record_meta, &r.base, &b->json);
    if (rc == 0)
        rc = cx_buf_error(&b->json);
    if (rc != 0)
        return cx_error_set(err, rc == CX_ENOSPC ? CX_EINVAL : rc, where[0] ? where : NULL,
                            "audit record longer than %d bytes", CX_AUDIT_LINE_MAX);
    return 0;
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

static void derive_key_id(const unsigned char *key, size_t len, char out[CX_AUDIT_KEY_ID_SIZE])
{
    unsigned char mac[CX_HMAC_SHA256_SIZE];
    if (cx_hmac_sha256(key, len, KEY_ID_LABEL, sizeof KEY_ID_LABEL - 1, mac) != 0)
        memset(mac, 0, sizeof mac);
    to_hex(mac, 8, out);
}

int cx_audit_new(const cx_audit_config_t *cfg, cx_audit_t **out, cx_error_t *err)
{
    if (out == NULL || cfg == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit: NULL config or out");
    *out = NULL;
    if (cfg->store == NULL || cfg->store->ops == NULL)
        return cx_error_set(err, CX_EINVAL, "store", "audit: no store");
    if (cfg->keys == NULL || cfg->n_keys == 0 || cfg->n_keys > CX_AUDIT_MAX_KEYS)
        return cx_error_set(err, CX_EINVAL, "keys", "audit: 1 to %d keys needed",
                            CX_AUDIT_MAX_KEYS);
    cx_audit_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "audit: out of memory");
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const cx_audit_key_t *k = &cfg->keys[i];
        if (k->key == NULL || k->key_len < MIN_KEY || k->key_len > KEY_MAX ||
            (k->id && (k->id[0] == '\0' || strlen(k->id) >= CX_AUDIT_KEY_ID_SIZE))) {
            OPENSSL_cleanse(a, sizeof *a);
            free(a);
            return cx_error_set(err, CX_EINVAL, "keys",
                                "audit: key %zu: 16 to %d bytes, id up "
                                "to 64 characters",
                                i, KEY_MAX);
        }
        memcpy(a->keys[i].key, k->key, k->key_len);
        a->keys[i].len = k->key_len;
        if (k->id)
            snprintf(a->keys[i].id, sizeof a->keys[i].id, "%s", k->id);
        else
            derive_key_id(k->key, k->key_len, a->keys[i].id);
    }
    a->n_keys = cfg->n_keys;
    a->store = cfg->store;
    if (cfg->clock && cfg->clock->now) {
        a->clock = *cfg->clock;
        a->has_clock = 1;
    }
    a->checkpoint_every = cfg->checkpoint_every;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return 0;
}

void cx_audit_free(cx_audit_t *a)
{
    if (a == NULL)
        return;
    pthread_mutex_destroy(&a->mu);
    OPENSSL_cleanse(a, sizeof *a); /* keys do not linger in freed memory */
    free(a);
}

void cx_audit_store_destroy(cx_audit_store_t *s)
{
    if (s)
        s->ops->destroy(s);
}

static long read_small(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            close(fd);
            return -2;
        }
    }
    close(fd);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    return (long)n;
}

int cx_audit_keys_load(const char *secrets_dir, cx_audit_key_t keys[2], unsigned char buf[2048],
                       size_t *n, cx_error_t *err)
{
    if (secrets_dir == NULL || keys == NULL || buf == NULL || n == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit key: no secrets directory");
    *n = 0;
    char path[4096];
    const char *names[2] = {"audit_key", "audit_key.previous"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/runtime/%s", secrets_dir, names[i]);
        long len = read_small(path, buf + i * 1024, 1024);
        if (len == -1 && i == 1)
            break;
        if (len == -1)
            return cx_error_set(err, CX_ENOTFOUND, NULL,
                                "audit key: runtime/audit_key missing in the secrets directory");
        if (len < MIN_KEY)
            return cx_error_set(err, CX_ECONFIG, NULL,
                                "audit key: runtime/%s must hold 16 to "
                                "1023 bytes",
                                names[i]);
        keys[i].id = NULL;
        keys[i].key = buf + i * 1024;
        keys[i].key_len = (size_t)len;
        *n = (size_t)i + 1;
    }
    return 0;
}

/* ---- Appends -------------------------------------------------------------------------------- */

static cache_t *cache_slot(cx_audit_t *a, const char *tenant)
{
    uint32_t h = 2166136261u;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &a->cache[h % CACHE_SLOTS];
}

static int entry_check(const cx_audit_entry_t *e, const char *tenant, size_t i, int batch,
                       cx_error_t *err)
{
    char path[64];
    snprintf(path, sizeof path, batch ? "entries[%zu].tenant_id" : "tenant_id", i);
    if (e->tenant_id == NULL || !cx__audit_tenant_ok(e->tenant_id))
        return cx_error_set(err, CX_EVALIDATION, path,
                            "audit: tenant_id must be an identifier of 1 to 128 characters");
    if (tenant && strcmp(e->tenant_id, tenant) != 0)
        return cx_error_set(err, CX_EINVAL, path, "audit: a batch holds one tenant's records");
    return 0;
}

static int append_locked(cx_audit_t *a, const cx_audit_entry_t *entries, size_t n,
                         uint64_t *last_seq, cx_error_t *err)
{
    const char *tenant = entries[0].tenant_id;
    built_t *b = calloc(n, sizeof *b);
    cx_audit_line_t *lines = calloc(n, sizeof *lines);
    int64_t *at = calloc(n, sizeof *at);
    int rc = 0;
    if (b == NULL || lines == NULL || at == NULL) {
        rc = cx_error_set(err, CX_ENOMEM, NULL, "audit: out of memory");
        goto done;
    }
    int64_t now = now_ms(a);
    for (size_t i = 0; i < n; i++)
        at[i] = entries[i].recorded_at_ms ? entries[i].recorded_at_ms : now;

    cache_t *c = cache_slot(a, tenant);
    cx_audit_head_t head;
    if (strcmp(c->tenant, tenant) == 0) {
        head = c->head;
    } else {
        rc = a->store->ops->head(a->store, tenant, &head, err);
        if (rc != 0)
            goto done;
    }
    for (int race = 0;; race++) {
        if (head.seq == UINT64_MAX || (head.seq > 0 && !cx__audit_mac_ok(head.mac))) {
            rc = cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                              "audit %s: the log's last entry is unreadable; run cx audit verify",
                              tenant);
            goto done;
        }
        const char *prev = head.mac;
        for (size_t i = 0; i < n; i++) {
            cx_buf_free(&b[i].json);
            rc = build_record(a, &entries[i], at[i], head.seq + 1 + i, prev, i, n > 1, &b[i], err);
            if (rc != 0)
                goto done;
            prev = b[i].mac;
            lines[i] = (cx_audit_line_t){b[i].seq, b[i].mac, b[i].json.data, b[i].json.len, NULL};
        }
        cx_audit_head_t next = {head.seq + n, ""};
        memcpy(next.mac, b[n - 1].mac, CX_AUDIT_MAC_SIZE);
        cx_audit_checkpoint_t cp, *cpp = NULL;
        uint64_t every = a->checkpoint_every;
        /* The first record of a chain always gets one: a log with records and no checkpoint
         * is then a sign of tampering, not of a fresh chain. */
        if (every == 0 || head.seq == 0 || next.seq / every != head.seq / every) {
            rc = sign_checkpoint(a, CX_AUDIT_CP_HEAD, tenant, &next, &cp);
            if (rc != 0) {
                rc = cx_error_set(err, rc, NULL, "audit: cannot sign the checkpoint");
                goto done;
            }
            cpp = &cp;
        }
        cx_audit_head_t actual = {0, ""};
        rc = a->store->ops->append(a->store, tenant, &head, lines, n, cpp, &actual, err);
        if (rc == 0) {
            snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
            c->head = next;
            if (last_seq)
                *last_seq = next.seq;
            break;
        }
        c->tenant[0] = '\0';
        if (rc != CX_ECONFLICT)
            goto done;
        if (race + 1 >= MAX_RACES) {
            rc = cx_error_set(err, CX_ECONFLICT, NULL,
                              "audit: lost %d appends in a row to other writers", MAX_RACES);
            goto done;
        }
        head = actual; /* another writer appended: relink on top of its head */
        rc = 0;
    }
done:
    if (b)
        for (size_t i = 0; i < n; i++)
            cx_buf_free(&b[i].json);
    free(b);
    free(lines);
    free(at);
    return rc;
}

int cx_audit_append_batch(cx_audit_t *a, const cx_audit_entry_t *entries, size_t n,
                          uint64_t *last_seq, cx_error_t *err)
{
    if (a == NULL || entries == NULL || n == 0 || n > 10000)
        return cx_error_set(err, CX_EINVAL, NULL, "audit: 1 to 10000 entries needed");
    for (size_t i = 0; i < n; i++) {
        int rc = entry_check(&entries[i], entries[0].tenant_id, i, n > 1, err);
        if (rc != 0)
            return rc;
    }
    pthread_mutex_lock(&a->mu);
    int rc = append_locked(a, entries, n, last_seq, err);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int cx_audit_append(cx_audit_t *a, const cx_audit_entry_t *e, uint64_t *seq, cx_error_t *err)
{
    return cx_audit_append_batch(a, e, e ? 1 : 0, seq, err);
}

int cx_audit_secret_rotated(cx_audit_t *a, const char *tenant_id, const char *actor_id,
                            const char *connector, const char *secret_name,
                            const char *correlation_id, cx_error_t *err)
{
    if (connector == NULL || secret_name == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit: connector and secret name needed");
    char target[256];
    snprintf(target, sizeof target, "%s/%s", connector, secret_name);
    cx_audit_entry_t e = {.tenant_id = tenant_id,
                          .action = "secret.rotated",
                          .actor_id = actor_id,
                          .actor_kind = actor_id ? 1 : 0,
                          .target = target,
                          .correlation_id = correlation_id,
                          .outcome = CX_AUDIT_SUCCEEDED};
    return cx_audit_append(a, &e, NULL, err);
}

int cx_audit_integration_changed(cx_audit_t *a, const char *tenant_id, const char *actor_id,
                                 const char *integration_id, const char *change,
                                 cx_audit_outcome_t outcome, const char *error_code,
                                 const char *correlation_id, cx_error_t *err)
{
    if (integration_id == NULL || change == NULL || strlen(change) > 64)
        return cx_error_set(err, CX_EINVAL, NULL, "audit: integration id and change needed");
    char action[96];
    snprintf(action, sizeof action, "integration.%s", change);
    cx_audit_entry_t e = {.tenant_id = tenant_id,
                          .action = action,
                          .actor_id = actor_id,
                          .actor_kind = actor_id ? 1 : 0,
                          .target = integration_id,
                          .correlation_id = correlation_id,
                          .outcome = outcome,
                          .error_code = error_code};
    return cx_audit_append(a, &e, NULL, err);
}

int cx_audit_checkpoint(cx_audit_t *a, const char *tenant_id, cx_error_t *err)
{
    if (a == NULL || !cx__audit_tenant_ok(tenant_id))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    cx_audit_head_t h;
    int rc = a->store->ops->head(a->store, tenant_id, &h, err);
    if (rc != 0 || h.seq == 0)
        return rc;
    cx_audit_checkpoint_t cp;
    if ((rc = sign_checkpoint(a, CX_AUDIT_CP_HEAD, tenant_id, &h, &cp)) != 0)
        return cx_error_set(err, rc, NULL, "audit: cannot sign the checkpoint");
    return a->store->ops->checkpoint_put(a->store, tenant_id, &cp, err);
}

int cx_audit_checkpoint_get(cx_audit_t *a, const char *tenant_id, cx_audit_cp_kind_t kind,
                            cx_audit_checkpoint_t *out, cx_error_t *err)
{
    if (a == NULL || out == NULL || !cx__audit_tenant_ok(tenant_id))
        return cx_error_set(err, CX_EINVAL, NULL, "audit: bad arguments");
    int rc = a->store->ops->checkpoint_get(a->store, tenant_id, kind, out, err);
    if (rc != 0)
        return rc;
    if (checkpoint_ok(a, tenant_id, kind, out) != 0)
        return cx_error_set(err, CX_EAUDIT_TAMPERED, "checkpoint",
                            "audit %s: the %s checkpoint's signature does not verify", tenant_id,
                            cp_kind_name(kind));
    return 0;
}

/* ---- Verification --------------------------------------------------------------------------- */

const char *cx_audit_problem_str(cx_audit_problem_t p)
{
    switch (p) {
    case CX_AUDIT_OK:
        return "intact";
    case CX_AUDIT_MALFORMED:
        return "malformed record";
    case CX_AUDIT_MAC_MISMATCH:
        return "record edited or forged (MAC mismatch)";
    case CX_AUDIT_REMOVED:
        return "record removed (seq gap)";
    case CX_AUDIT_REORDERED:
        return "records reordered";
    case CX_AUDIT_LINK_BROKEN:
        return "chain link broken (prev_mac)";
    case CX_AUDIT_WRONG_TENANT:
        return "record of another tenant";
    case CX_AUDIT_UNKNOWN_KEY:
        return "record signed by an unknown key";
    case CX_AUDIT_TRUNCATED:
        return "log truncated (ends before the head checkpoint)";
    case CX_AUDIT_CHECKPOINT_INVALID:
        return "checkpoint signature invalid";
    case CX_AUDIT_CHECKPOINT_MISSING:
        return "records without a head checkpoint";
    case CX_AUDIT_CHECKPOINT_MISMATCH:
        return "record differs from its checkpoint";
    case CX_AUDIT_ANCHOR_MISMATCH:
        return "log contradicts the trusted anchor";
    }
    return "unknown problem";
}

typedef struct vstate_s {
    cx_audit_t *a;
    const char *tenant;
    const cx_audit_verify_options_t *opts;
    cx_audit_report_t *rep;
    cx_audit_head_t g; /* genesis */
    int have_cp;
    cx_audit_checkpoint_t cp;     /* head checkpoint */
    uint64_t expected;            /* next seq */
    char prev[CX_AUDIT_MAC_SIZE]; /* mac of the last good record (or the genesis) */
    int past_genesis;             /* a record after the genesis was seen */
    int diagnosing;               /* after a seq gap: does the missing seq come later? */
    uint64_t line_no;
    /* retention scan */
    int retention;
    int64_t cutoff_ms;
    cx_audit_head_t drop;
    cx_arena_t arena;
} vstate_t;

static int fail(vstate_t *st, cx_audit_problem_t p, uint64_t seq, const cx_audit_line_t *l)
{
    st->rep->problem = p;
    st->rep->bad_seq = seq;
    if (l && l->pos)
        snprintf(st->rep->bad_pos, sizeof st->rep->bad_pos, "%s", l->pos);
    else if (l)
        snprintf(st->rep->bad_pos, sizeof st->rep->bad_pos, "record %" PRIu64, st->line_no);
    return 1;
}

static int verify_line(void *ud, const cx_audit_line_t *l)
{
    vstate_t *st = ud;
    st->line_no++;
    cx_arena_release(&st->arena);
    Cx__Automation__V1__AuditRecord *r;
    if (parse_record(&st->arena, l->json, l->len, &r) != 0) {
        if (st->diagnosing)
            return 0;
        return fail(st, CX_AUDIT_MALFORMED, st->expected, l);
    }
    if (st->diagnosing) {
        if (r->seq == st->rep->bad_seq) {
            st->rep->problem = CX_AUDIT_REORDERED;
            return 1;
        }
        return 0;
    }
    if (strcmp(r->tenant_id, st->tenant) != 0)
        return fail(st, CX_AUDIT_WRONG_TENANT, r->seq, l);
    if ((l->seq && l->seq != r->seq) || (l->mac && strcmp(l->mac, r->mac) != 0))
        return fail(st, CX_AUDIT_MALFORMED, r->seq, l); /* the store's copies disagree */
    if (r->seq <= st->g.seq) {
        /* Covered by the genesis: retention crashed before removing it. Skipped, but it must
         * come first and the last one must be the genesis record itself. */
        if (st->past_genesis)
            return fail(st, CX_AUDIT_REORDERED, r->seq, l);
        if (r->seq == st->g.seq && !equal_hex(r->mac, st->g.mac))
            return fail(st, CX_AUDIT_CHECKPOINT_MISMATCH, r->seq, l);
        return 0;
    }
    st->past_genesis = 1;
    if (r->seq != st->expected) {
        if (r->seq < st->expected)
            return fail(st, CX_AUDIT_REORDERED, r->seq, l);
        /* A gap: removed, unless the missing record shows up later (reordered). */
        fail(st, CX_AUDIT_REMOVED, st->expected, l);
        st->diagnosing = 1;
        return 0;
    }
    const key_t_ *k = find_key(st->a, r->key_id);
    if (k == NULL)
        return fail(st, CX_AUDIT_UNKNOWN_KEY, r->seq, l);
    if (!cx__audit_mac_ok(r->mac) || (r->prev_mac[0] && !cx__audit_mac_ok(r->prev_mac)))
        return fail(st, CX_AUDIT_MALFORMED, r->seq, l);
    char mac[CX_AUDIT_MAC_SIZE], *stored = r->mac;
    r->mac = "";
    int rc = record_mac(k, r, mac);
    r->mac = stored;
    if (rc != 0)
        return rc;
    if (!equal_hex(mac, stored))
        return fail(st, CX_AUDIT_MAC_MISMATCH, r->seq, l);
    if (strcmp(r->prev_mac, st->prev) != 0)
        return fail(st, CX_AUDIT_LINK_BROKEN, r->seq, l);
    if (st->have_cp && r->seq == st->cp.seq && !equal_hex(r->mac, st->cp.mac))
        return fail(st, CX_AUDIT_CHECKPOINT_MISMATCH, r->seq, l);
    const cx_audit_checkpoint_t *an = st->opts ? st->opts->anchor : NULL;
    if (an && r->seq == an->seq && !equal_hex(r->mac, an->mac))
        return fail(st, CX_AUDIT_ANCHOR_MISMATCH, r->seq, l);

    cx_audit_report_t *rep = st->rep;
    if (rep->records++ == 0)
        rep->first_seq = r->seq;
    rep->last_seq = r->seq;
    memcpy(st->prev, r->mac, CX_AUDIT_MAC_SIZE);
    st->expected = r->seq + 1;
    if (st->retention) {
        int64_t at = r->recorded_at
                         ? r->recorded_at->seconds * 1000 + r->recorded_at->nanos / 1000000
                         : INT64_MAX;
        if (at >= st->cutoff_ms)
            st->retention = 2; /* the rest is kept; keep verifying to the end */
        else if (st->retention == 1) {
            st->drop.seq = r->seq;
            memcpy(st->drop.mac, r->mac, CX_AUDIT_MAC_SIZE);
        }
    }
    if (st->opts && st->opts->on_record &&
        (st->opts->correlation_id == NULL ||
         strcmp(st->opts->correlation_id, r->correlation_id) == 0)) {
        rep->matched++;
        st->opts->on_record(st->opts->ud, l->json, l->len);
    }
    return 0;
}

static int verify_run(cx_audit_t *a, const char *tenant, const cx_audit_verify_options_t *opts,
                      vstate_t *st, cx_audit_report_t *rep, cx_error_t *err)
{
    memset(rep, 0, sizeof *rep);
    st->a = a;
    st->tenant = tenant;
    st->opts = opts;
    st->rep = rep;
    cx_audit_store_t *s = a->store;
    cx_audit_checkpoint_t gcp;
    cx_error_t e2 = {0};
    int rc = s->ops->checkpoint_get(s, tenant, CX_AUDIT_CP_GENESIS, &gcp, &e2);
    if (rc == 0) {
        if (checkpoint_ok(a, tenant, CX_AUDIT_CP_GENESIS, &gcp) != 0) {
            fail(st, CX_AUDIT_CHECKPOINT_INVALID, gcp.seq, NULL);
            snprintf(rep->bad_pos, sizeof rep->bad_pos, "genesis checkpoint");
            return CX_EAUDIT_TAMPERED;
        }
        st->g.seq = gcp.seq;
        memcpy(st->g.mac, gcp.mac, CX_AUDIT_MAC_SIZE);
    } else if (rc == CX_EAUDIT_TAMPERED) {
        fail(st, CX_AUDIT_CHECKPOINT_INVALID, 0, NULL);
        snprintf(rep->bad_pos, sizeof rep->bad_pos, "genesis checkpoint");
        return CX_EAUDIT_TAMPERED;
    } else if (rc != CX_ENOTFOUND) {
        return cx_error_set(err, rc, NULL, "%s", e2.message);
    }
    rep->genesis_seq = st->g.seq;
    cx_error_clear(&e2);
    rc = s->ops->checkpoint_get(s, tenant, CX_AUDIT_CP_HEAD, &st->cp, &e2);
    if (rc == 0) {
        if (checkpoint_ok(a, tenant, CX_AUDIT_CP_HEAD, &st->cp) != 0) {
            fail(st, CX_AUDIT_CHECKPOINT_INVALID, st->cp.seq, NULL);
            snprintf(rep->bad_pos, sizeof rep->bad_pos, "head checkpoint");
            return CX_EAUDIT_TAMPERED;
        }
        st->have_cp = 1;
        rep->checkpoint_seq = st->cp.seq;
    } else if (rc == CX_EAUDIT_TAMPERED) {
        fail(st, CX_AUDIT_CHECKPOINT_INVALID, 0, NULL);
        snprintf(rep->bad_pos, sizeof rep->bad_pos, "head checkpoint");
        return CX_EAUDIT_TAMPERED;
    } else if (rc != CX_ENOTFOUND) {
        return cx_error_set(err, rc, NULL, "%s", e2.message);
    }
    const cx_audit_checkpoint_t *an = opts ? opts->anchor : NULL;
    if (an && checkpoint_ok(a, tenant, CX_AUDIT_CP_HEAD, an) != 0) {
        fail(st, CX_AUDIT_CHECKPOINT_INVALID, an->seq, NULL);
        snprintf(rep->bad_pos, sizeof rep->bad_pos, "anchor");
        return CX_EAUDIT_TAMPERED;
    }

    st->expected = st->g.seq + 1;
    memcpy(st->prev, st->g.mac, CX_AUDIT_MAC_SIZE);
    rep->last_seq = st->g.seq;
    cx_arena_init(&st->arena, NULL, 4 * CX_AUDIT_LINE_MAX);
    rc = s->ops->scan(s, tenant, verify_line, st, err);
    cx_arena_release(&st->arena);
    if (rc < 0)
        return rc;
    if (rep->problem != CX_AUDIT_OK)
        return CX_EAUDIT_TAMPERED;

    /* The end of the log against the checkpoints. */
    if (st->have_cp) {
        if (st->cp.seq > rep->last_seq) {
            fail(st, CX_AUDIT_TRUNCATED, rep->last_seq + 1, NULL);
            snprintf(rep->bad_pos, sizeof rep->bad_pos, "end of log");
            return CX_EAUDIT_TAMPERED;
        }
        if (st->cp.seq == st->g.seq && st->cp.seq > 0 && !equal_hex(st->cp.mac, st->g.mac)) {
            fail(st, CX_AUDIT_CHECKPOINT_MISMATCH, st->cp.seq, NULL);
            snprintf(rep->bad_pos, sizeof rep->bad_pos, "head checkpoint");
            return CX_EAUDIT_TAMPERED;
        }
        uint64_t anchored = st->cp.seq > st->g.seq ? st->cp.seq : st->g.seq;
        rep->unanchored = rep->last_seq - anchored;
    } else if (rep->records > 0) {
        fail(st, CX_AUDIT_CHECKPOINT_MISSING, rep->first_seq, NULL);
        snprintf(rep->bad_pos, sizeof rep->bad_pos, "head checkpoint");
        return CX_EAUDIT_TAMPERED;
    }
    if (an && an->seq > rep->last_seq) {
        fail(st, CX_AUDIT_TRUNCATED, rep->last_seq + 1, NULL);
        snprintf(rep->bad_pos, sizeof rep->bad_pos, "end of log (anchor)");
        return CX_EAUDIT_TAMPERED;
    }
    return 0;
}

int cx_audit_verify(cx_audit_t *a, const char *tenant_id, const cx_audit_verify_options_t *opts,
                    cx_audit_report_t *rep, cx_error_t *err)
{
    cx_audit_report_t local;
    if (rep == NULL)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (a == NULL || !cx__audit_tenant_ok(tenant_id))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    vstate_t st;
    memset(&st, 0, sizeof st);
    int rc = verify_run(a, tenant_id, opts, &st, rep, err);
    if (rc == CX_EAUDIT_TAMPERED && (opts == NULL || opts->on_record == NULL)) {
        /* A retention run in another process between reading the genesis and scanning looks
         * like a removed prefix; tampering reproduces, that race does not. (Not with a
         * callback: it has seen records already.) */
        memset(&st, 0, sizeof st);
        rc = verify_run(a, tenant_id, opts, &st, rep, err);
    }
    if (rc == CX_EAUDIT_TAMPERED)
        cx_error_set(err, rc, NULL, "audit %s: %s at seq %" PRIu64, tenant_id,
                     cx_audit_problem_str(rep->problem), rep->bad_seq);
    return rc;
}

int cx_audit_retain(cx_audit_t *a, const char *tenant_id, int64_t max_age_s, uint64_t *dropped,
                    cx_error_t *err)
{
    if (dropped)
        *dropped = 0;
    if (a == NULL || !cx__audit_tenant_ok(tenant_id) || max_age_s < 0)
        return cx_error_set(err, CX_EINVAL, NULL, "audit: bad tenant or age");
    /* Appends of this process wait: the chain must not move under the scan. Other processes
     * may append; records they add are newer than the cut anyway. */
    pthread_mutex_lock(&a->mu);
    vstate_t st;
    memset(&st, 0, sizeof st);
    st.retention = 1;
    st.cutoff_ms = now_ms(a) - max_age_s * 1000;
    cx_audit_report_t rep;
    int rc = verify_run(a, tenant_id, NULL, &st, &rep, err);
    if (rc == CX_EAUDIT_TAMPERED) {
        /* Never prune a broken chain: that would erase the evidence. */
        rc = cx_error_set(err, rc, NULL, "audit %s: not pruned: %s at seq %" PRIu64, tenant_id,
                          cx_audit_problem_str(rep.problem), rep.bad_seq);
    }
    uint64_t n = 0;
    if (rc == 0 && st.drop.seq > st.g.seq) {
        cx_audit_checkpoint_t g;
        rc = sign_checkpoint(a, CX_AUDIT_CP_GENESIS, tenant_id, &st.drop, &g);
        if (rc != 0)
            rc = cx_error_set(err, rc, NULL, "audit: cannot sign the genesis");
        else
            rc = a->store->ops->truncate(a->store, tenant_id, &g, &n, err);
        cache_slot(a, tenant_id)->tenant[0] = '\0';
        if (rc == 0) {
            char target[96];
            snprintf(target, sizeof target, "dropped %" PRIu64 " records up to seq %" PRIu64,
                     st.drop.seq - st.g.seq, st.drop.seq);
            cx_audit_entry_t e = {.tenant_id = tenant_id,
                                  .action = "audit.retention",
                                  .target = target,
                                  .outcome = CX_AUDIT_SUCCEEDED};
            rc = append_locked(a, &e, 1, NULL, err);
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (rc == 0 && dropped)
        *dropped = st.drop.seq > st.g.seq ? st.drop.seq - st.g.seq : 0;
    (void)n;
    return rc;
}

/* ---- cx audit ------------------------------------------------------------------------------- */

enum { EX_OK = 0, EX_BROKEN = 1, EX_USAGE = 2, EX_UNAVAIL = 69, EX_INTERNAL = 70, EX_CONFIG = 78 };

static const char CLI_USAGE[] =
    "usage: cx audit verify [--tenant T] STORE KEY\n"
    "       cx audit show --correlation-id ID [--tenant T] STORE KEY\n"
    "       cx audit retain --max-age DAYS [--tenant T] STORE KEY\n"
    "  STORE: --dir DIR [--checkpoint-dir DIR] | --redis HOST:PORT [--env ENV]\n"
    "         [--redis-password-file FILE]   (or CX_AUDIT_DIR, CX_REDIS, CX_ENV)\n"
    "  KEY:   --secrets DIR   (runtime/audit_key, audit_key.previous; or CX_SECRETS_DIR)\n"
    "verify checks every record's MAC, the chain links and the signed checkpoints, and prints\n"
    "one line per tenant; show prints the verified records of one correlation id as JSON\n"
    "lines; retain drops records older than DAYS, moving the genesis checkpoint.\n"
    "exit: 0 intact, 1 a chain is broken, 2 usage, 69 store unavailable, 78 configuration\n"
    "examples:\n"
    "  cx audit verify --dir /var/lib/cx/audit --secrets /run/secrets/cx\n"
    "  cx audit show --correlation-id 7f1c... --redis 10.0.0.5:6379 --env production "
    "--secrets /run/secrets/cx\n";

typedef struct cli_s {
    const char *cmd, *tenant, *correlation_id, *dir, *checkpoint_dir, *redis, *env, *secrets,
        *password_file, *max_age;
    cx_audit_t *a;
    int broken;
    int unavailable;
} cli_t;

static int cli_rc_of(int rc)
{
    switch (rc) {
    case CX_EUNAVAILABLE:
        return EX_UNAVAIL;
    case CX_EAUDIT_TAMPERED:
        return EX_BROKEN;
    case CX_ENOTFOUND:
    case CX_ECONFIG:
    case CX_EINVAL:
        return EX_CONFIG;
    default:
        return EX_INTERNAL;
    }
}

static void print_record(void *ud, const char *json, size_t len)
{
    (void)ud;
    fwrite(json, 1, len, stdout);
    fputc('\n', stdout);
}

static int cli_tenant(void *ud, const char *tenant)
{
    cli_t *c = ud;
    cx_error_t err = {0};
    cx_audit_report_t rep;
    int rc;
    if (strcmp(c->cmd, "retain") == 0) {
        char *end;
        long long days = strtoll(c->max_age, &end, 10);
        uint64_t n = 0;
        rc = cx_audit_retain(c->a, tenant, (int64_t)days * 86400, &n, &err);
        if (rc == 0)
            printf("%s: dropped %" PRIu64 " records older than %lld days\n", tenant, n, days);
        else if (rc == CX_EAUDIT_TAMPERED)
            printf("%s: BROKEN, not pruned: %s\n", tenant, err.message);
    } else {
        cx_audit_verify_options_t o = {0};
        if (strcmp(c->cmd, "show") == 0) {
            o.correlation_id = c->correlation_id;
            o.on_record = print_record;
        }
        rc = cx_audit_verify(c->a, tenant, &o, &rep, &err);
        if (rc == 0 && strcmp(c->cmd, "verify") == 0)
            printf("%s: ok, %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64
                   "), head checkpoint %" PRIu64 ", %" PRIu64 " dropped by retention, %" PRIu64
                   " after the checkpoint\n",
                   tenant, rep.records, rep.records ? rep.first_seq : 0, rep.last_seq,
                   rep.checkpoint_seq, rep.genesis_seq, rep.unanchored);
        if (rc == CX_EAUDIT_TAMPERED) {
            if (strcmp(c->cmd, "verify") == 0)
                printf("%s: BROKEN: %s at seq %" PRIu64 " (%s)\n", tenant,
                       cx_audit_problem_str(rep.problem), rep.bad_seq, rep.bad_pos);
            else
                fprintf(stderr,
                        "cx audit: %s: chain broken: %s at seq %" PRIu64 " (%s); records after "
                        "it were not shown\n",
                        tenant, cx_audit_problem_str(rep.problem), rep.bad_seq, rep.bad_pos);
        }
    }
    fflush(stdout);
    if (rc == CX_EAUDIT_TAMPERED) {
        c->broken = 1;
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "cx audit: %s: %s\n", tenant,
                err.message[0] ? err.message : cx_strerror(rc));
        return rc;
    }
    return 0;
}

static int cli_store(cli_t *c, cx_audit_store_t **st)
{
    cx_error_t err = {0};
    int rc;
    if (c->dir && c->redis) {
        fprintf(stderr, "cx audit: give either --dir or --redis, not both\n");
        return EX_USAGE;
    }
    if (c->dir) {
        cx_audit_file_options_t o = {.checkpoint_dir = c->checkpoint_dir};
        rc = cx_audit_store_file(c->dir, &o, st, &err);
    } else if (c->redis) {
        char host[256];
        const char *colon = strrchr(c->redis, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon == NULL || colon == c->redis || (size_t)(colon - c->redis) >= sizeof host ||
            *end != '\0' || port < 1 || port > 65535) {
            fprintf(stderr, "cx audit: --redis wants HOST:PORT\n");
            return EX_USAGE;
        }
        memcpy(host, c->redis, (size_t)(colon - c->redis));
        host[colon - c->redis] = '\0';
        char pw[512] = "";
        if (c->password_file) {
            long n = read_small(c->password_file, (unsigned char *)pw, sizeof pw - 1);
            if (n < 0) {
                fprintf(stderr, "cx audit: cannot read the Redis password file\n");
                return EX_CONFIG;
            }
            pw[n] = '\0';
        }
        cx_redis_options_t o = {.host = host, .port = (int)port, .password = pw[0] ? pw : NULL};
        rc = cx_audit_store_redis(c->env ? c->env : "development", &o, st, &err);
        OPENSSL_cleanse(pw, sizeof pw);
    } else {
        fprintf(stderr, "cx audit: no store: give --dir DIR or --redis HOST:PORT\n");
        return EX_CONFIG;
    }
    if (rc != 0) {
        fprintf(stderr, "cx audit: %s\n", err.message[0] ? err.message : cx_strerror(rc));
        return rc == CX_EINVAL ? EX_USAGE : cli_rc_of(rc);
    }
    return 0;
}

int cx_audit_cli(int argc, char **argv)
{
    cli_t c = {0};
    int i = 1;
    if (argc >= 1 && argv[0] && strcmp(argv[0], "audit") != 0 &&
        (strcmp(argv[0], "verify") == 0 || strcmp(argv[0], "show") == 0 ||
         strcmp(argv[0], "retain") == 0))
        i = 0; /* called with the subcommand first */
    if (argc <= i || argv[i] == NULL) {
        fputs(CLI_USAGE, stderr);
        return EX_USAGE;
    }
    c.cmd = argv[i++];
    if (strcmp(c.cmd, "--help") == 0 || strcmp(c.cmd, "-h") == 0 || strcmp(c.cmd, "help") == 0) {
        fputs(CLI_USAGE, stdout);
        return EX_OK;
    }
    if (strcmp(c.cmd, "verify") != 0 && strcmp(c.cmd, "show") != 0 &&
        strcmp(c.cmd, "retain") != 0) {
        fprintf(stderr, "cx audit: unknown subcommand '%.64s' (verify, show, retain)\n", c.cmd);
        return EX_USAGE;
    }
    struct {
        const char *name;
        const char **slot;
    } flags[] = {{"--tenant", &c.tenant},   {"--correlation-id", &c.correlation_id},
                 {"--dir", &c.dir},         {"--checkpoint-dir", &c.checkpoint_dir},
                 {"--redis", &c.redis},     {"--env", &c.env},
                 {"--secrets", &c.secrets}, {"--redis-password-file", &c.password_file},
                 {"--max-age", &c.max_age}};
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(CLI_USAGE, stdout);
            return EX_OK;
        }
        size_t f = 0;
        for (; f < sizeof flags / sizeof flags[0]; f++)
            if (strcmp(argv[i], flags[f].name) == 0)
                break;
        if (f == sizeof flags / sizeof flags[0]) {
            fprintf(stderr, "cx audit: unknown option '%.64s'\n", argv[i]);
            return EX_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cx audit: %s needs a value\n", flags[f].name);
            return EX_USAGE;
        }
        *flags[f].slot = argv[++i];
    }
    if (c.dir == NULL && c.redis == NULL) {
        c.dir = getenv("CX_AUDIT_DIR");
        if (c.dir == NULL || c.dir[0] == '\0')
            c.dir = NULL, c.redis = getenv("CX_REDIS");
    }
    if (c.env == NULL)
        c.env = getenv("CX_ENV");
    if (c.secrets == NULL)
        c.secrets = getenv("CX_SECRETS_DIR");
    if (strcmp(c.cmd, "show") == 0 && (c.correlation_id == NULL || c.correlation_id[0] == '\0')) {
        fprintf(stderr, "cx audit: show needs --correlation-id ID\n");
        return EX_USAGE;
    }
    if (strcmp(c.cmd, "retain") == 0) {
        char *end = NULL;
        long long d = c.max_age ? strtoll(c.max_age, &end, 10) : -1;
        if (c.max_age == NULL || *end != '\0' || d < 1 || d > 36500) {
            fprintf(stderr, "cx audit: retain needs --max-age DAYS (1 to 36500)\n");
            return EX_USAGE;
        }
    }
    if (c.tenant && !cx__audit_tenant_ok(c.tenant)) {
        fprintf(stderr, "cx audit: --tenant must be an identifier ([a-z0-9][a-z0-9_.-]*)\n");
        return EX_USAGE;
    }
    if (c.secrets == NULL || c.secrets[0] == '\0') {
        fprintf(stderr, "cx audit: no secrets directory: give --secrets DIR (runtime/audit_key)\n");
        return EX_CONFIG;
    }
    cx_error_t err = {0};
    unsigned char keybuf[2048];
    cx_audit_key_t keys[2];
    size_t nkeys = 0;
    int rc = cx_audit_keys_load(c.secrets, keys, keybuf, &nkeys, &err);
    if (rc != 0) {
        fprintf(stderr, "cx audit: %s\n", err.message);
        return EX_CONFIG;
    }
    cx_audit_store_t *st = NULL;
    int ex = cli_store(&c, &st);
    if (ex != 0) {
        OPENSSL_cleanse(keybuf, sizeof keybuf);
        return ex;
    }
    cx_audit_config_t cfg = {.store = st, .keys = keys, .n_keys = nkeys};
    rc = cx_audit_new(&cfg, &c.a, &err);
    OPENSSL_cleanse(keybuf, sizeof keybuf);
    if (rc != 0) {
        fprintf(stderr, "cx audit: %s\n", err.message);
        cx_audit_store_destroy(st);
        return EX_CONFIG;
    }
    if (c.tenant)
        rc = cli_tenant(&c, c.tenant);
    else
        rc = st->ops->tenants(st, cli_tenant, &c, &err);
    if (rc != 0 && err.message[0])
        fprintf(stderr, "cx audit: %s\n", err.message);
    cx_audit_free(c.a);
    cx_audit_store_destroy(st);
    if (rc != 0)
        return cli_rc_of(rc);
    return c.broken ? EX_BROKEN : EX_OK;
}

#ifndef CX_WITH_REDIS
/* Built without hiredis: the symbol exists so callers link in both configurations. */
int cx_audit_store_redis(const char *environment, const cx_redis_options_t *opts,
                         cx_audit_store_t **out, cx_error_t *err)
{
    (void)environment;
    (void)opts;
    if (out)
        *out = NULL;
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "libcx was built without Redis (CX_WITH_REDIS=OFF)");
}
#endif
