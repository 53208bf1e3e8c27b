/* Private: what the `cx` subcommands share (exit codes, option parsing, files, JSON text).
 *
 * Every subcommand is `int cx_cmd_<name>(int argc, char **argv)` where argv[0] is the
 * subcommand's name; it returns the process exit code. Errors the user can fix are reported as
 * ONE line on stderr, "cx <subcommand>: <what is wrong>", and never contain payload bytes or
 * secrets.
 */
#ifndef CX_CLI_H
#define CX_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "cx/buf.h"

/* Exit codes (docs/cx.md), the BSD sysexits values where one applies. */
enum {
    CX_EXIT_OK = 0,
    CX_EXIT_INVALID = 1, /* input invalid, validation failed */
    CX_EXIT_USAGE = 2,   /* bad arguments */
    CX_EXIT_UNAVAILABLE =
        69,                /* a service (Redis, the gateway, the listen address) is unavailable */
    CX_EXIT_INTERNAL = 70, /* a bug or an unexpected failure (out of memory) */
    CX_EXIT_CONFIG = 78    /* configuration invalid or incomplete */
};

int cx_cmd_serve(int argc, char **argv);
int cx_cmd_parse(int argc, char **argv);
int cx_cmd_replay(int argc, char **argv);
int cx_cmd_validate(int argc, char **argv);
int cx_cmd_version(int argc, char **argv);

/* Prints the help of a subcommand (NULL: the overview) to stdout; returns 0, or -1 when
 * there is no such subcommand. */
int cx_cli_help(const char *subcommand);

/* "cx <sub>: <message>\n" on stderr. */
void cx_cli_error(const char *sub, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Option parsing: argv[*i] is `--name VALUE` or `--name=VALUE`. Returns 1 (matched, *val set,
 * *i advanced past the value), 0 (another option), -1 (matched but the value is missing: the
 * error line is printed). */
int cx_cli_opt(const char *sub, int argc, char **argv, int *i, const char *name, const char **val);
/* Whether argv[i] is exactly --help or -h. */
int cx_cli_is_help(const char *arg);
/* Prints "unknown option" / "unexpected argument" for argv[i]; returns CX_EXIT_USAGE. */
int cx_cli_bad_arg(const char *sub, const char *arg);

/* Strict decimal parsing into [min, max]; returns 0 or -1. */
int cx_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "HOST:PORT" or "[IPV6]:PORT" into host[cap] and *port (0..65535). Returns 0 or -1. */
int cx_cli_parse_hostport(const char *s, char *host, size_t cap, int *port);

/* Reads a whole file ("-" = stdin) of at most max bytes into a malloc'd, NUL-terminated buffer.
 * Returns 0, -1 (cannot open or read: errno kept) or -2 (larger than max). */
int cx_cli_read_file(const char *path, size_t max, char **out, size_t *len);
/* Whether path is a directory / a regular file. */
/* Connector ids are path segments: [a-z0-9_-]{1,63} (the n bytes at s). */
int cx_cli_connector_id_ok(const char *s, size_t n);

/* Tenant ids have the schema's identifier format: [a-z0-9][a-z0-9_.-]*, at most 128 bytes. */
int cx_cli_tenant_ok(const char *s);

int cx_cli_is_dir(const char *path);
int cx_cli_is_file(const char *path);

/* Appends s[0..len) as a JSON string (quotes included); invalid UTF-8 becomes U+FFFD. */
void cx_cli_json_str(cx_buf_t *b, const char *s, size_t len);

/* Monotonic time in milliseconds. */
double cx_cli_now_ms(void);

#endif
