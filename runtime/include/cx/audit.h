/* The audit trail: append-only, HMAC-chained records with signed checkpoints.
 *
 * Every outbound side effect, secret rotation and integration change leaves one record, a
 * cx.automation.v1.AuditRecord (seq, actor, tenant_id, action, target, correlation_id,
 * dedupe_key, capability, outcome, error_code, recorded_at, key_id, prev_mac, mac). Records
 * of a tenant form one chain:
 *
 *   mac(n) = HMAC-SHA256(key, "cx.audit.record.v1" 0x00 || raw(prev_mac) || canonical(n))
 *
 * where prev_mac is mac(n-1) (nothing for the first record of a chain), raw() its 32 bytes,
 * and canonical(n) the record's protobuf encoding with `mac` cleared (prev_mac included).
 * A checkpoint is a signed statement "the chain of tenant T had N records, the last with mac
 * M", signed with the same key under another label ("cx.audit.checkpoint.v1"), kept apart from
 * the log (another file or Redis key). Two checkpoints exist per tenant: the head (moved by
 * every append) and the genesis (moved by retention: the records it covers were dropped on
 * purpose, and the first kept record must link to its mac).
 *
 * Verification walks the chain from the genesis and detects, with the first bad record named:
 *   - an edited record, or one forged without the key      -> its MAC does not match;
 *   - a removed record                                     -> a gap in seq / a broken link;
 *   - reordered records                                    -> seq out of order;
 *   - a record appended without the key                    -> its MAC does not match;
 *   - a truncated tail                                     -> the head checkpoint names a
 *                                                             record the log no longer has;
 *   - a chain recomputed under another key                 -> no MAC matches, and no
 *                                                             checkpoint signature either.
 * What it cannot detect alone: an attacker holding the key, or one who rolls BOTH the log and
 * the head checkpoint back to an older consistent state. Against the latter, ship checkpoints
 * elsewhere (cx_audit_checkpoint_get) and pass the newest one you trust as an anchor.
 *
 * Stores (the dedupe-store pattern: an ops struct, a file store and a Redis store):
 *   - file: JSON lines, one file per tenant, fsync per append call (a batch is one call);
 *   - Redis: one stream per tenant; a Lua script appends with compare-and-set on the previous
 *     MAC (XREVRANGE last, check, XADD) and moves the head checkpoint in the same step, so
 *     several processes append to one chain safely.
 * docs/audit.md has the formats, the failure cases and the `cx audit` command.
 *
 *     cx_audit_t *a; cx_audit_new(&cfg, &a, &err);
 *     cx_audit_entry_t e = {.tenant_id = "acme", .action = "email.send", .outcome =
 *                           CX_AUDIT_SUCCEEDED, .correlation_id = cid};
 *     if (cx_audit_append(a, &e, NULL, &err) != 0) ...;
 */
#ifndef CX_AUDIT_H
#define CX_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "cx/clock.h"
#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest stored record (a JSON line, newline excluded). */
#define CX_AUDIT_LINE_MAX 16384
/* Size of a MAC in hex plus NUL. */
#define CX_AUDIT_MAC_SIZE 65
/* Size of a key id plus NUL. */
#define CX_AUDIT_KEY_ID_SIZE 65
/* Size of a tenant id plus NUL (the schema's max_len is 128). */
#define CX_AUDIT_TENANT_SIZE 129
/* Keys accepted by one cx_audit_t (the current one and previous ones). */
#define CX_AUDIT_MAX_KEYS 8

/* cx.automation.v1.AuditOutcome */
typedef enum {
    CX_AUDIT_SUCCEEDED = 1, /* the action succeeded */
    CX_AUDIT_FAILED = 2,    /* it failed; error_code says why */
    CX_AUDIT_DENIED = 3,    /* refused before it ran (authorisation, isolation, validation) */
    CX_AUDIT_IN_DOUBT = 4,  /* outcome unknown (a timeout after sending) */
    CX_AUDIT_DEDUPED = 5    /* a duplicate of a completed action: nothing ran */
} cx_audit_outcome_t;

/* What to record. Strings are borrowed for the call. */
typedef struct cx_audit_entry_s {
    const char *tenant_id;      /* required: an identifier ([a-z0-9][a-z0-9_.-]*, <= 128) */
    const char *action;         /* required: "<domain>.<verb>", an identifier ("email.send") */
    const char *actor_id;       /* who acted; NULL = "system" */
    int actor_kind;             /* cx.common.v1.ActorKind number; 0 = SYSTEM (4) */
    const char *target;         /* what it was done to; may be NULL */
    const char *correlation_id; /* may be NULL */
    const char *dedupe_key;     /* may be NULL */
    int capability;             /* cx.options.v1.CapabilityId number; 0 = none */
    cx_audit_outcome_t outcome; /* required */
    const char *error_code;     /* when not succeeded ("RATE_LIMITED", cx_err_name(rc)) */
    int64_t recorded_at_ms;     /* 0 = now (the clock, else the real time) */
} cx_audit_entry_t;

/* The end of a chain, or of its dropped prefix: the seq and mac of one record. */
typedef struct cx_audit_head_s {
    uint64_t seq;                /* 0: an empty chain */
    char mac[CX_AUDIT_MAC_SIZE]; /* lower-case hex, "" when seq is 0 */
} cx_audit_head_t;

typedef enum { CX_AUDIT_CP_HEAD = 1, CX_AUDIT_CP_GENESIS = 2 } cx_audit_cp_kind_t;

/* A signed checkpoint: "tenant's chain had seq records, the last with mac". */
typedef struct cx_audit_checkpoint_s {
    cx_audit_cp_kind_t kind;
    char tenant_id[CX_AUDIT_TENANT_SIZE];
    uint64_t seq;
    char mac[CX_AUDIT_MAC_SIZE];
    int64_t at_ms;                     /* when it was signed */
    char key_id[CX_AUDIT_KEY_ID_SIZE]; /* the key that signed it */
    char sig[CX_AUDIT_MAC_SIZE];       /* HMAC-SHA256 hex under the checkpoint label */
} cx_audit_checkpoint_t;

/* One stored record as a store hands it over. */
typedef struct cx_audit_line_s {
    uint64_t seq;     /* the store's own copy of seq (Redis fields), 0 when it keeps none */
    const char *mac;  /* the store's own copy of mac, NULL when it keeps none */
    const char *json; /* the record: proto3 JSON of cx.automation.v1.AuditRecord */
    size_t len;
    const char *pos; /* where it is, for reports: "line 12", "1718000000000-0" */
} cx_audit_line_t;

/* Receives stored records in chain order; a non-zero return stops the scan and is returned. */
typedef int (*cx_audit_scan_fn)(void *ud, const cx_audit_line_t *line);
/* Receives tenant ids. */
typedef int (*cx_audit_tenant_fn)(void *ud, const char *tenant_id);

typedef struct cx_audit_store_s cx_audit_store_t;

/* A store keeps bytes; all cryptography happens in cx_audit_t. Implementations are
 * thread-safe and safe across processes sharing the files or the Redis. */
typedef struct cx_audit_store_ops_s {
    /* The tenant's head: seq and mac of its last record; when retention dropped every record,
     * those of its genesis checkpoint; {0, ""} for a chain never written. Returns 0,
     * CX_EUNAVAILABLE, CX_EIO, CX_EAUDIT_TAMPERED (the store's tail cannot be read). */
    int (*head)(cx_audit_store_t *s, const char *tenant, cx_audit_head_t *out, cx_error_t *err);
    /* Appends n records (lines[i].seq and .mac set) iff the tenant's head still equals
     * *expect (compare-and-set), then stores cp as the head checkpoint (cp may be NULL). On a
     * mismatch nothing is written: CX_ECONFLICT and *actual = the current head. Returns 0,
     * CX_ECONFLICT, CX_EUNAVAILABLE, CX_EIO, CX_ENOMEM. */
    int (*append)(cx_audit_store_t *s, const char *tenant, const cx_audit_head_t *expect,
                  const cx_audit_line_t *lines, size_t n, const cx_audit_checkpoint_t *cp,
                  cx_audit_head_t *actual, cx_error_t *err);
    /* Calls fn for every record of the tenant, in stored order. Returns 0, fn's non-zero
     * value, CX_EUNAVAILABLE, CX_EIO. */
    int (*scan)(cx_audit_store_t *s, const char *tenant, cx_audit_scan_fn fn, void *ud,
                cx_error_t *err);
    /* Reads a checkpoint as stored (unverified). Returns 0, CX_ENOTFOUND, CX_EUNAVAILABLE,
     * CX_EIO, CX_EAUDIT_TAMPERED (present but unreadable). */
    int (*checkpoint_get)(cx_audit_store_t *s, const char *tenant, cx_audit_cp_kind_t kind,
                          cx_audit_checkpoint_t *out, cx_error_t *err);
    /* Stores a head checkpoint unless a later one (higher seq) is stored. Returns 0 or as
     * above. */
    int (*checkpoint_put)(cx_audit_store_t *s, const char *tenant, const cx_audit_checkpoint_t *cp,
                          cx_error_t *err);
    /* Retention: stores genesis (unless a later one is stored), then removes every record
     * with seq <= genesis->seq. Crash-safe in that order: records the genesis covers that
     * survive a crash are skipped by verify. *dropped = records removed (may be NULL). */
    int (*truncate)(cx_audit_store_t *s, const char *tenant, const cx_audit_checkpoint_t *genesis,
                    uint64_t *dropped, cx_error_t *err);
    /* Calls fn for every tenant that has a chain. */
    int (*tenants)(cx_audit_store_t *s, cx_audit_tenant_fn fn, void *ud, cx_error_t *err);
    /* Frees the store. No call may be running on it. */
    void (*destroy)(cx_audit_store_t *s);
} cx_audit_store_ops_t;

struct cx_audit_store_s {
    const cx_audit_store_ops_t *ops; /* read-only */
};

/* When the file store calls fsync. */
typedef enum {
    CX_AUDIT_FSYNC_APPEND = 0, /* default: every append call (a batch call is one fsync) */
    CX_AUDIT_FSYNC_NONE = 1    /* leave it to the OS (tests, throwaway environments) */
} cx_audit_fsync_t;

typedef struct cx_audit_file_options_s {
    const char *checkpoint_dir; /* where checkpoints live; NULL = "<dir>/checkpoints". Put
                                 * it on another volume (or ship it) to keep it apart */
    cx_audit_fsync_t fsync;
} cx_audit_file_options_t;

/* The file store under dir (created if missing, mode 0700): per tenant, <tenant>.jsonl (the
 * records, one JSON line each), <tenant>.lock (flock: appends from several processes are
 * serialised), and in the checkpoint directory <tenant>.head.json and <tenant>.genesis.json
 * (replaced atomically: write, fsync, rename, fsync the directory). opts may be NULL; its
 * strings are copied. *out is the caller's; free it with cx_audit_store_destroy. Returns 0,
 * CX_EINVAL, CX_EIO (a directory cannot be created), CX_ENOMEM. Thread-safe.
 *
 *     cx_audit_store_t *st;
 *     if (cx_audit_store_file("/var/lib/cx/audit", NULL, &st, &err) != 0) ...;
 */
CX_API int cx_audit_store_file(const char *dir, const cx_audit_file_options_t *opts,
                               cx_audit_store_t **out, cx_error_t *err);

/* The Redis store: per tenant, the stream cx:<env>:audit:{<tenant>}:log (fields v, seq, mac,
 * rec), the hashes cx:<env>:audit:{<tenant>}:head and :genesis (the checkpoints), and the set
 * cx:<env>:audit:tenants. environment: 1 to 64 of [A-Za-z0-9._-]. Returns 0, CX_EINVAL,
 * CX_ENOMEM, CX_ENOT_IMPLEMENTED (built without Redis). Thread-safe.
 *
 *     cx_redis_options_t o = {.host = "127.0.0.1", .port = 6379};
 *     rc = cx_audit_store_redis("production", &o, &st, &err);
 */
CX_API int cx_audit_store_redis(const char *environment, const cx_redis_options_t *opts,
                                cx_audit_store_t **out, cx_error_t *err);

/* Frees s (may be NULL). */
CX_API void cx_audit_store_destroy(cx_audit_store_t *s);

/* ---- The chain -------------------------------------------------------------------------- */

/* An HMAC key. id NULL: derived from the key (16 hex digits of HMAC(key, "cx.audit.key-id"),
 * which tells nothing about the key). */
typedef struct cx_audit_key_s {
    const char *id;
    const unsigned char *key;
    size_t key_len; /* at least 16 bytes; 32 or more recommended */
} cx_audit_key_t;

typedef struct cx_audit_config_s {
    cx_audit_store_t *store;    /* required; borrowed, must outlive the cx_audit_t */
    const cx_audit_key_t *keys; /* keys[0] signs; every key verifies (rotation). Copied */
    size_t n_keys;              /* 1 .. CX_AUDIT_MAX_KEYS */
    const cx_clock_t *clock;    /* borrowed; NULL = real time (milliseconds) */
    uint32_t checkpoint_every;  /* the head checkpoint moves when an append crosses a
                                 * multiple of this many records; 0 = every append. Records
                                 * after the last checkpoint can be cut unnoticed: keep 0
                                 * unless the file store's extra fsyncs cost too much */
} cx_audit_config_t;

typedef struct cx_audit_s cx_audit_t;

/* Creates a chain writer and verifier. Returns 0, CX_EINVAL (no store, no key, a short key),
 * CX_ENOMEM. *out is the caller's; free with cx_audit_free. Thread-safe once created.
 *
 *     cx_audit_key_t k = {NULL, key, 32};
 *     cx_audit_config_t cfg = {.store = st, .keys = &k, .n_keys = 1};
 */
CX_API int cx_audit_new(const cx_audit_config_t *cfg, cx_audit_t **out, cx_error_t *err);
/* Frees a (may be NULL) and wipes its keys; the store stays the caller's. No call may be
 * running on it. */
CX_API void cx_audit_free(cx_audit_t *a);

/* Loads the audit keys from <secrets_dir>/runtime/audit_key (and audit_key.previous during
 * a rotation) into keys[0] (and keys[1]); key bytes are copied into buf (2 x 1024 bytes),
 * which must outlive keys. *n = 1 or 2. Returns 0, CX_ENOTFOUND (no key file), CX_ECONFIG
 * (shorter than 16 bytes), CX_EINVAL. Reentrant. The bytes are secrets: wipe buf after
 * cx_audit_new copied them.
 *
 *     unsigned char buf[2048]; cx_audit_key_t keys[2]; size_t n;
 *     rc = cx_audit_keys_load(dir, keys, buf, &n, &err);
 */
CX_API int cx_audit_keys_load(const char *secrets_dir, cx_audit_key_t keys[2],
                              unsigned char buf[2048], size_t *n, cx_error_t *err);

/* Appends one record to its tenant's chain: validates it (the generated AuditRecord rules),
 * links it to the head, MACs it, stores it (compare-and-set; on a concurrent append it relinks
 * and retries) and moves the head checkpoint. *seq receives its seq (may be NULL). Returns 0,
 * CX_EVALIDATION (err->path names the field), CX_EINVAL, CX_EUNAVAILABLE, CX_EIO, CX_ENOMEM,
 * CX_ECONFLICT (lost the race too many times in a row). Thread-safe.
 *
 *     cx_audit_entry_t e = {.tenant_id = "acme", .action = "whatsapp.send",
 *                           .outcome = CX_AUDIT_IN_DOUBT, .error_code = "CX_EIN_DOUBT"};
 *     rc = cx_audit_append(a, &e, NULL, &err);
 */
CX_API int cx_audit_append(cx_audit_t *a, const cx_audit_entry_t *e, uint64_t *seq,
                           cx_error_t *err);

/* Appends n records of ONE tenant in one store call (one fsync for the file store), all or
 * none. *last_seq receives the last seq (may be NULL). Same returns as cx_audit_append
 * (err->path "entries[i]..." on a validation error).
 *
 *     cx_audit_entry_t es[2] = {...};
 *     rc = cx_audit_append_batch(a, es, 2, NULL, &err);
 */
CX_API int cx_audit_append_batch(cx_audit_t *a, const cx_audit_entry_t *entries, size_t n,
                                 uint64_t *last_seq, cx_error_t *err);

/* Records a secret rotation: action "secret.rotated", target "<connector>/<name>" (never the
 * value), outcome SUCCEEDED. tenant_id: the tenant concerned ("system" for shared secrets).
 * actor_id may be NULL (the system). Returns as cx_audit_append.
 *
 *     cx_audit_secret_rotated(a, "system", "ops-jane", "whatsapp", "app_secret", cid, &err);
 */
CX_API int cx_audit_secret_rotated(cx_audit_t *a, const char *tenant_id, const char *actor_id,
                                   const char *connector, const char *secret_name,
                                   const char *correlation_id, cx_error_t *err);

/* Records an integration change: action "integration.<change>" (change: an identifier such as
 * "connected", "authorized", "unhealthy", "disconnected", "config_changed"), target the
 * integration id. error_code may be NULL (e.g. "invalid_grant" for "unhealthy"). Returns as
 * cx_audit_append.
 *
 *     cx_audit_integration_changed(a, "acme", NULL, "google:cal-1", "unhealthy",
 *                                  CX_AUDIT_FAILED, "invalid_grant", NULL, &err);
 */
CX_API int cx_audit_integration_changed(cx_audit_t *a, const char *tenant_id, const char *actor_id,
                                        const char *integration_id, const char *change,
                                        cx_audit_outcome_t outcome, const char *error_code,
                                        const char *correlation_id, cx_error_t *err);

/* Signs and stores a head checkpoint for the tenant's current head now (after appends made
 * with checkpoint_every > 0; at shutdown). Returns 0, CX_EINVAL, CX_EUNAVAILABLE, CX_EIO.
 * Thread-safe.
 *
 *     for each tenant written since the last checkpoint:
 *         cx_audit_checkpoint(a, tenant, &err);
 */
CX_API int cx_audit_checkpoint(cx_audit_t *a, const char *tenant_id, cx_error_t *err);

/* Reads a checkpoint and checks its signature. Returns 0, CX_ENOTFOUND, CX_EAUDIT_TAMPERED
 * (bad signature or unknown key), CX_EUNAVAILABLE, CX_EIO. Use it to ship head checkpoints
 * elsewhere (anchors for cx_audit_verify). Thread-safe.
 *
 *     cx_audit_checkpoint_t cp;
 *     if (cx_audit_checkpoint_get(a, "acme", CX_AUDIT_CP_HEAD, &cp, &err) == 0) ship(&cp);
 */
CX_API int cx_audit_checkpoint_get(cx_audit_t *a, const char *tenant_id, cx_audit_cp_kind_t kind,
                                   cx_audit_checkpoint_t *out, cx_error_t *err);

/* Why a verification failed: the first problem found. */
typedef enum {
    CX_AUDIT_OK = 0,
    CX_AUDIT_MALFORMED = 1,            /* a record that is not a valid AuditRecord JSON line */
    CX_AUDIT_MAC_MISMATCH = 2,         /* edited, or forged without the key */
    CX_AUDIT_REMOVED = 3,              /* seq gap: a record is missing */
    CX_AUDIT_REORDERED = 4,            /* seq out of order (the missing one comes later) */
    CX_AUDIT_LINK_BROKEN = 5,          /* prev_mac is not the previous record's mac */
    CX_AUDIT_WRONG_TENANT = 6,         /* a record of another tenant's chain */
    CX_AUDIT_UNKNOWN_KEY = 7,          /* key_id names no key we have */
    CX_AUDIT_TRUNCATED = 8,            /* the log ends before the head checkpoint */
    CX_AUDIT_CHECKPOINT_INVALID = 9,   /* a checkpoint's signature does not verify */
    CX_AUDIT_CHECKPOINT_MISSING = 10,  /* records without any head checkpoint */
    CX_AUDIT_CHECKPOINT_MISMATCH = 11, /* the record at a checkpoint's seq has another mac */
    CX_AUDIT_ANCHOR_MISMATCH = 12      /* the log contradicts the caller's trusted anchor */
} cx_audit_problem_t;

/* The outcome of a verification. */
typedef struct cx_audit_report_s {
    cx_audit_problem_t problem; /* CX_AUDIT_OK when the chain is intact */
    uint64_t records;           /* records checked (after the genesis) */
    uint64_t first_seq;         /* seq of the first record checked, 0 if none */
    uint64_t last_seq;          /* seq of the last good record (the genesis seq if none) */
    uint64_t genesis_seq;       /* records dropped by retention */
    uint64_t checkpoint_seq;    /* the head checkpoint's seq (0 when none) */
    uint64_t unanchored;        /* good records after the head checkpoint (normal: a crash
                                 * between append and checkpoint, or checkpoint_every > 0) */
    uint64_t bad_seq;           /* the seq expected or found where it failed */
    char bad_pos[64];           /* where it failed: "line 12", a stream id, "checkpoint" */
    uint64_t matched;           /* records passed to on_record (cx_audit_show) */
} cx_audit_report_t;

/* The text of a problem ("record edited or forged (MAC mismatch)"); never NULL. Thread-safe.
 *
 *     printf("%s at seq %llu\n", cx_audit_problem_str(rep.problem),
 *            (unsigned long long)rep.bad_seq);
 */
CX_API const char *cx_audit_problem_str(cx_audit_problem_t p);

/* Receives each verified record whose correlation id matched (the stored JSON line). */
typedef void (*cx_audit_record_fn)(void *ud, const char *json, size_t len);

typedef struct cx_audit_verify_options_s {
    const char *correlation_id;   /* show: only records with this id; NULL = all */
    cx_audit_record_fn on_record; /* show: called per matching verified record */
    void *ud;
    const cx_audit_checkpoint_t *anchor; /* a head checkpoint kept elsewhere: the log must
                                          * still hold its record with its mac */
} cx_audit_verify_options_t;

/* Verifies a tenant's chain from its genesis checkpoint to its end and against its head
 * checkpoint (see the header comment for what is detected). opts may be NULL. rep is filled
 * in every case. Records are passed to opts->on_record as they verify, so a caller sees the
 * ones before a break. Returns 0 (intact), CX_EAUDIT_TAMPERED (rep->problem says what and
 * rep->bad_seq / bad_pos where), CX_EUNAVAILABLE, CX_EIO, CX_ENOMEM. Thread-safe.
 *
 *     cx_audit_report_t rep;
 *     if (cx_audit_verify(a, "acme", NULL, &rep, &err) == CX_EAUDIT_TAMPERED) alarm(&rep);
 */
CX_API int cx_audit_verify(cx_audit_t *a, const char *tenant_id,
                           const cx_audit_verify_options_t *opts, cx_audit_report_t *rep,
                           cx_error_t *err);

/* Retention by age: verifies the chain (a broken chain is never pruned: CX_EAUDIT_TAMPERED),
 * then drops the records older than max_age_s (the oldest contiguous prefix recorded before
 * now - max_age_s), writing first a signed genesis checkpoint with the last dropped record's
 * seq and mac, and appends an "audit.retention" record saying how many went. *dropped may be
 * NULL. Appends through this cx_audit_t wait while it runs. Returns 0 or as cx_audit_verify /
 * cx_audit_append.
 *
 *     uint64_t n; rc = cx_audit_retain(a, "acme", 365 * 86400, &n, &err);
 */
CX_API int cx_audit_retain(cx_audit_t *a, const char *tenant_id, int64_t max_age_s,
                           uint64_t *dropped, cx_error_t *err);

/* `cx audit verify|show|retain`, for the cx program (argv[0] is "audit" or the subcommand's
 * parent; argv[1] the subcommand):
 *
 *   cx audit verify [--tenant T]
 *   cx audit show --correlation-id ID [--tenant T]
 *   cx audit retain --max-age DAYS [--tenant T]
 *   store:   --dir DIR [--checkpoint-dir DIR]   or   --redis HOST:PORT [--env ENV]
 *            [--redis-password-file F]
 *   key:     --secrets DIR (reads runtime/audit_key and audit_key.previous)
 *   environment: CX_AUDIT_DIR, CX_REDIS, CX_ENV, CX_SECRETS_DIR (flags win).
 *
 * Without --tenant every tenant is processed. verify prints one line per tenant on stdout;
 * show prints the matching records (JSON lines) on stdout. Errors are one line on stderr,
 * "cx audit: ...". Returns the exit code: 0 intact, 1 a chain is broken, 2 usage, 69 store
 * unavailable, 70 internal, 78 configuration (no key, no store). Not thread-safe (uses
 * stdout/stderr); no global state.
 *
 *     char *argv[] = {"audit", "verify", "--dir", "/var/lib/cx/audit", "--secrets", "/run/s"};
 *     return cx_audit_cli(6, argv);
 */
CX_API int cx_audit_cli(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* CX_AUDIT_H */
