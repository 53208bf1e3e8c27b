/* The conformance suite: checks every connector, ours and partners', must pass.
 *
 * A suite run takes one connector (built into the runner, or loaded from a shared object
 * exporting CX_CONNECTOR_ENTRY_SYMBOL) and a fixture directory in the captured-request format
 * (ARCHITECTURE.md section 7), runs every check of cx_conf_checks() in a child process of its
 * own with a timeout, and reports each as pass, fail or skip. A connector that crashes or
 * hangs fails the check that was running, never the run. docs/conformance.md documents every
 * check id (rationale, how to fix); ids are stable: a check is added under a new id, never
 * renamed.
 *
 *     cx_conf_options_t o = {.fixtures = "fixtures/", .timeout_s = 30};
 *     cx_conf_report_t *rep;
 *     if (cx_conf_run(connector, "built-in", &o, &rep, why, sizeof why) == 0) {
 *         cx_conf_report_human(rep, stdout); rc = cx_conf_report_ok(rep) ? 0 : 1;
 *         cx_conf_report_free(rep);
 *     }
 *
 * Not thread-safe: a run forks, redirects file descriptors in its children and owns its
 * process while it runs.
 */
#ifndef CX_CONFORMANCE_H
#define CX_CONFORMANCE_H

#include <stddef.h>
#include <stdio.h>

#include "cx/connector.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What became of one check. */
typedef enum {
    CX_CONF_PASS = 0,
    CX_CONF_FAIL = 1,
    CX_CONF_SKIP = 2,  /* skipped with a written reason */
    CX_CONF_XFAIL = 3, /* failed, and listed in the expected-failures file */
    CX_CONF_XPASS = 4  /* listed as an expected failure but passed: counts as a failure */
} cx_conf_status_t;

/* Why a check was skipped. */
typedef enum {
    CX_CONF_SKIP_NA = 1,      /* the manifest says the check does not apply (no inbound
                                 authentication, no outbound capability) */
    CX_CONF_SKIP_INPUT = 2,   /* the check applies but the fixtures give it nothing to run
                                 on; strict mode turns this into a failure unless declared */
    CX_CONF_SKIP_DECLARED = 3 /* skipped by a --skip / conformance.json declaration */
} cx_conf_skip_kind_t;

/* One check of the suite (static storage). */
typedef struct cx_conf_check_s {
    const char *id;       /* "parse.dedupe_keys_deterministic": stable */
    const char *category; /* "parse" */
    const char *summary;  /* one line */
} cx_conf_check_t;

/* The checks in run order; *n receives the count. */
const cx_conf_check_t *cx_conf_checks(size_t *n);

/* A declared skip or an expected failure: a check id (or a prefix ending in '*') and why. */
typedef struct cx_conf_waiver_s {
    const char *id;
    const char *reason;
} cx_conf_waiver_t;

typedef struct cx_conf_options_s {
    const char *fixtures;          /* the fixture directory (required) */
    unsigned timeout_s;            /* per check; 0 = 60 */
    int strict;                    /* skips for lack of input fail unless declared */
    const cx_conf_waiver_t *skips; /* declared skips (also read from conformance.json) */
    size_t n_skips;
    const cx_conf_waiver_t *expected_failures; /* protovalidate-style expected failures */
    size_t n_expected_failures;
    const char *only; /* run only checks whose id starts with this; NULL = all */
    int verbose;      /* progress lines on stderr while checks run */
} cx_conf_options_t;

typedef struct cx_conf_report_s cx_conf_report_t;

/* Runs the suite. connector is borrowed; source names where it came from ("built-in",
 * "/path/libx.so"). On success *out is the caller's (cx_conf_report_free). Returns 0, or -1
 * with a one-line reason in why when the run could not start (fixture directory unreadable,
 * a malformed fixture, a bad declaration). A failing check is not an error: see
 * cx_conf_report_ok(). */
int cx_conf_run(const cx_connector_t *connector, const char *source, const cx_conf_options_t *o,
                cx_conf_report_t **out, char *why, size_t cap);

/* 1 when every check passed, was skipped with a written reason, or failed as expected. */
int cx_conf_report_ok(const cx_conf_report_t *rep);
/* The human report (one line per check, details indented, a summary line). */
void cx_conf_report_human(const cx_conf_report_t *rep, FILE *f);
/* JUnit XML (one testsuite, one testcase per check). Returns 0 or -1 (errno). */
int cx_conf_report_junit(const cx_conf_report_t *rep, const char *path);
/* JSON (docs/conformance.md, "Machine-readable output"). Returns 0 or -1 (errno). */
int cx_conf_report_json(const cx_conf_report_t *rep, const char *path);
void cx_conf_report_free(cx_conf_report_t *rep);

/* Reads an expected-failures file: one `check.id  reason` per line, '#' comments. Every
 * entry needs a reason. Returns 0 or -1 with a reason in why; *out (malloc'd, strings
 * included in the same block) is freed with free(). */
int cx_conf_read_waivers(const char *path, cx_conf_waiver_t **out, size_t *n, char *why,
                         size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* CX_CONFORMANCE_H */
