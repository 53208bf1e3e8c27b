/* Test harness: a real redis-server on a free loopback port, owned by the test.
 *
 * The port is picked by binding 127.0.0.1:0 and closing the socket; the server runs in the
 * foreground of a forked child (no persistence, a temporary directory as its cwd, its log in
 * that directory) and is ready when it answers PING. The child gets SIGTERM if the test
 * process dies, so a crashed test leaves no server behind (Linux PR_SET_PDEATHSIG).
 *
 * Outage tests stop it (SIGTERM + waitpid) and start it again on the same port, or pause it
 * (SIGSTOP: connections hang instead of being refused) and resume it.
 *
 *     cx_test_redis_t r;
 *     if (cx_test_redis_start(&r, NULL) != 0) fail();
 *     ... connect to 127.0.0.1:r.port ...
 *     cx_test_redis_destroy(&r);
 *
 * Not thread-safe: one test thread drives a server. Functions return 0 or -1 (the reason is
 * printed to stderr, with the server's log).
 */
#ifndef CX_TEST_REDIS_SERVER_H
#define CX_TEST_REDIS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct cx_test_redis_s {
    pid_t pid;         /* read-only: the server, 0 when stopped */
    int port;          /* read-only: loopback port, kept across restarts */
    int paused;        /* read-only: 1 after cx_test_redis_pause */
    char dir[128];     /* read-only: the server's temporary cwd */
    char password[64]; /* read-only: requirepass, "" for none */
} cx_test_redis_t;

/* Starts a server on a free port (retrying a few ports if one is taken meanwhile).
 * password may be NULL. The binary is $CX_REDIS_SERVER or /usr/bin/redis-server. */
int cx_test_redis_start(cx_test_redis_t *r, const char *password);

/* Stops the server (SIGTERM, then SIGKILL after 5 s) and reaps it; the port stays reserved
 * in r for cx_test_redis_restart. A stopped server is a no-op. */
int cx_test_redis_stop(cx_test_redis_t *r);

/* Starts the server again on the same port (empty: nothing was persisted). */
int cx_test_redis_restart(cx_test_redis_t *r);

/* SIGSTOP / SIGCONT: a paused server accepts TCP connections (the kernel does) but answers
 * nothing, the way a hung or overloaded Redis looks to a client. */
int cx_test_redis_pause(cx_test_redis_t *r);
int cx_test_redis_resume(cx_test_redis_t *r);

/* Stops the server and removes its directory. r may be stopped already. */
void cx_test_redis_destroy(cx_test_redis_t *r);

/* Sends one inline command line (e.g. "FLUSHALL") and waits for its reply's first line,
 * copied to reply (may be NULL). Returns 0 or -1. For tests that need no client library. */
int cx_test_redis_command(const cx_test_redis_t *r, const char *line, char *reply, size_t cap);

#endif /* CX_TEST_REDIS_SERVER_H */
