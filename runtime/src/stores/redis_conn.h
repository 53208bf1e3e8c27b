/* A small pool of hiredis connections, shared by the Redis stores (private to libcx).
 *
 * hiredis contexts are not thread-safe, so each call borrows one context from the pool and
 * gives it back. The pool:
 *
 *   - connects lazily (connect timeout), sets the per-read/write command timeout and TCP
 *     keepalive, and sends AUTH (username/password) on every new connection;
 *   - checks a pooled connection before use (a peek for EOF: Redis restarted or closed it)
 *     and reconnects at once, so a restart costs no failed call;
 *   - drops a connection after any I/O or protocol error or timeout; the next call connects
 *     again, so nothing stays broken once Redis is back;
 *   - keeps SIGPIPE from killing the process when a write hits a closed socket (the signal is
 *     blocked for the call in the calling thread and a resulting one is consumed, as libpq
 *     does), without touching process-wide signal state;
 *   - caps the connections at pool_size: a caller finding all busy waits up to the command
 *     timeout, then fails with CX_EUNAVAILABLE.
 *
 * Every failure to reach Redis is CX_EUNAVAILABLE with the reason in err; error text names
 * host and port, never the password. Redis error replies (-ERR ...) are not failures here:
 * they are returned as replies for the store to judge.
 *
 *     const char *argv[] = {"GET", "k"};
 *     cx__redis_cmd_t cmd = {2, argv, NULL};
 *     redisReply *r;
 *     if (cx__redis_pipeline(pool, &cmd, 1, &r, &err) == 0) { ...; freeReplyObject(r); }
 */
#ifndef CX_STORES_REDIS_CONN_H
#define CX_STORES_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cx/dedupe_store.h" /* cx_redis_options_t */
#include "cx/error.h"

typedef struct cx__redis_pool_s cx__redis_pool_t;

/* One command: argc arguments; argvlen may be NULL when every argument is a C string. */
typedef struct cx__redis_cmd_s {
    int argc;
    const char **argv;
    const size_t *argvlen;
} cx__redis_cmd_t;

/* A Lua script run by EVALSHA, falling back to EVAL when Redis answers NOSCRIPT (a new or
 * flushed server). source must outlive the script (a string literal). */
typedef struct cx__redis_script_s {
    const char *source;
    char sha1[41]; /* hex SHA-1 of source */
} cx__redis_script_t;

/* Creates a pool from opts (copied; defaults filled in). Connects nothing yet. Returns 0,
 * CX_EINVAL (no host, port outside 1..65535, pool_size < 0) or CX_ENOMEM. */
int cx__redis_pool_create(const cx_redis_options_t *opts, cx__redis_pool_t **out, cx_error_t *err);

/* Closes every connection and frees the pool (may be NULL). No call may be running. */
void cx__redis_pool_destroy(cx__redis_pool_t *pool);

/* Sends n commands in one write and reads their n replies: one round trip. On success every
 * replies[i] is set (the caller frees each with freeReplyObject; error replies included).
 * On failure every replies[i] is NULL and the connection is dropped. Returns 0,
 * CX_EUNAVAILABLE or CX_ENOMEM. Thread-safe. */
int cx__redis_pipeline(cx__redis_pool_t *pool, const cx__redis_cmd_t *cmds, size_t n,
                       redisReply **replies, cx_error_t *err);

/* cx__redis_pipeline, joined with concurrent callers: commands queued by several threads go
 * to Redis in one write, their replies come back in one read, and each caller gets its own
 * (the same results and errors as cx__redis_pipeline). For short non-blocking commands on a
 * hot path; never for blocking ones (XREADGROUP BLOCK would hold everybody's round trip). */
int cx__redis_pipeline_joined(cx__redis_pool_t *pool, const cx__redis_cmd_t *cmds, size_t n,
                              redisReply **replies, cx_error_t *err);

/* Computes script->sha1 from source. Returns 0 or CX_ECRYPTO. */
int cx__redis_script_init(cx__redis_script_t *script, const char *source);

/* Runs script with nkeys keys and nargs arguments (lengths explicit; binary-safe) in one round
 * trip (two the first time a server sees the script). *reply is the script's reply (an error
 * reply included) for the caller to free. Returns 0, CX_EUNAVAILABLE or CX_ENOMEM. */
int cx__redis_eval(cx__redis_pool_t *pool, const cx__redis_script_t *script, size_t nkeys,
                   const char *const *keys, const size_t *keylens, size_t nargs,
                   const char *const *args, const size_t *arglens, redisReply **reply,
                   cx_error_t *err);

/* "host:port", for error messages. */
const char *cx__redis_pool_name(const cx__redis_pool_t *pool);

#endif /* CX_STORES_REDIS_CONN_H */
