/* cx-conformance: runs the conformance suite on one connector (docs/conformance.md).
 *
 *     cx-conformance --connector test --fixtures tests/conformance/fixtures/test
 *     cx-conformance --connector-lib ./libacme.so --fixtures fixtures --junit out.xml
 *
 * Exit codes: 0 every check passed or was skipped with a written reason (or failed as
 * expected); 1 a check failed; 2 bad arguments; 78 the connector or the fixtures cannot be
 * used (cannot load, incompatible ABI, unreadable fixture directory, bad declarations).
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "builtin.h"
#include "cx/conformance.h"
#include "cx/cx.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_CONFIG = 78 };

static void usage(FILE *f)
{
    fputs("usage: cx-conformance (--connector NAME | --connector-lib PATH) [--fixtures DIR]\n"
          "                      [--junit FILE] [--json FILE] [--strict]\n"
          "                      [--expected-failures FILE] [--skip ID=REASON]...\n"
          "                      [--only PREFIX] [--timeout SECONDS] [--verbose] [--quiet]\n"
          "       cx-conformance --list            the checks, one id per line\n"
          "       cx-conformance --list-builtin    the built-in connectors and their fixtures\n"
          "       cx-conformance --version\n"
          "\n"
          "Runs every conformance check on one connector, each in a child process with a\n"
          "timeout, and prints a report (docs/conformance.md). --connector runs a built-in\n"
          "connector (--fixtures defaults to its fixtures in the source tree); --connector-lib\n"
          "dlopen()s a shared object exporting cx_connector_entry().\n"
          "\n"
          "  --fixtures DIR           captured requests (request.json + body + expect.json,\n"
          "                           secrets/ and accounts.json beside them)\n"
          "  --junit FILE, --json FILE   machine-readable reports\n"
          "  --strict                 a check skipped for lack of fixtures fails unless its\n"
          "                           skip is declared (--skip or conformance.json)\n"
          "  --expected-failures FILE  `check.id  reason` per line: those failures do not fail\n"
          "                           the run, and a listed check that passes does\n"
          "  --skip ID=REASON         do not run a check (ID may end in '*'); REASON required\n"
          "  --only PREFIX            run only the checks whose id starts with PREFIX\n"
          "  --timeout SECONDS        per check (default 60): a hang fails its check\n"
          "\n"
          "Exit status: 0 conformant, 1 a check failed, 2 usage, 78 cannot load.\n",
          f);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "cx-conformance: %s needs a value\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int main(int argc, char **argv)
{
    const char *name = NULL, *lib = NULL, *fixtures = NULL, *junit = NULL, *json = NULL;
    const char *xfail_file = NULL, *only = NULL, *timeout = NULL;
    int strict = 0, verbose = 0, quiet = 0;
    cx_conf_waiver_t skips[64];
    char *skip_text[64];
    size_t n_skips = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("cx-conformance %s\n", cx_version_string());
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--list") == 0) {
            size_t n;
            const cx_conf_check_t *c = cx_conf_checks(&n);
            for (size_t k = 0; k < n; k++)
                printf("%-44s %s\n", c[k].id, c[k].summary);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--list-builtin") == 0) {
            size_t n;
            const cx_conf_builtin_t *b = cx_conf_builtins(&n);
            for (size_t k = 0; k < n; k++)
                printf("%s %s\n", b[k].name, b[k].fixtures);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--strict") == 0) {
            strict = 1;
            continue;
        }
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
            quiet = 1;
            continue;
        }
        if ((m = opt(argc, argv, &i, "--connector-lib", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            lib = v;
        } else if ((m = opt(argc, argv, &i, "--connector", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            name = v;
        } else if ((m = opt(argc, argv, &i, "--fixtures", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            fixtures = v;
        } else if ((m = opt(argc, argv, &i, "--junit", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            junit = v;
        } else if ((m = opt(argc, argv, &i, "--json", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            json = v;
        } else if ((m = opt(argc, argv, &i, "--expected-failures", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            xfail_file = v;
        } else if ((m = opt(argc, argv, &i, "--only", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            only = v;
        } else if ((m = opt(argc, argv, &i, "--timeout", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            timeout = v;
        } else if ((m = opt(argc, argv, &i, "--skip", &v)) != 0) {
            if (m < 0)
                return EXIT_USAGE;
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v || eq[1] == '\0') {
                fprintf(stderr,
                        "cx-conformance: --skip %s: write --skip ID=REASON (a skip "
                        "needs a written reason)\n",
                        v);
                return EXIT_USAGE;
            }
            if (n_skips == 64) {
                fprintf(stderr, "cx-conformance: too many --skip options\n");
                return EXIT_USAGE;
            }
            skip_text[n_skips] = strdup(v);
            if (skip_text[n_skips] == NULL)
                return EXIT_CONFIG;
            skip_text[n_skips][eq - v] = '\0';
            skips[n_skips].id = skip_text[n_skips];
            skips[n_skips].reason = skip_text[n_skips] + (eq - v) + 1;
            n_skips++;
        } else {
            fprintf(stderr, "cx-conformance: unknown argument %s (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if ((name == NULL) == (lib == NULL)) {
        fprintf(stderr, "cx-conformance: give exactly one of --connector NAME and "
                        "--connector-lib PATH (see --help)\n");
        return EXIT_USAGE;
    }
    unsigned timeout_s = 60;
    if (timeout) {
        char *end;
        unsigned long t = strtoul(timeout, &end, 10);
        if (*end || t == 0 || t > 86400) {
            fprintf(stderr, "cx-conformance: --timeout %s: a number of seconds, 1 to 86400\n",
                    timeout);
            return EXIT_USAGE;
        }
        timeout_s = (unsigned)t;
    }

    const cx_connector_t *c = NULL;
    char source[4096];
    char fixtures_buf[4096];
    if (name) {
        size_t n;
        const cx_conf_builtin_t *b = cx_conf_builtins(&n);
        for (size_t k = 0; k < n && c == NULL; k++)
            if (strcmp(b[k].name, name) == 0) {
                c = b[k].get();
                if (fixtures == NULL && b[k].fixtures) {
                    /* Relative to the source tree: $CX_SOURCE_DIR, else the current
                     * directory (no build path is compiled in). */
                    const char *src = getenv("CX_SOURCE_DIR");
                    if (src == NULL || *src == '\0')
                        src = ".";
                    snprintf(fixtures_buf, sizeof fixtures_buf, "%s/%s", src, b[k].fixtures);
                    if (is_dir(fixtures_buf))
                        fixtures = fixtures_buf;
                }
            }
        if (c == NULL) {
            fprintf(stderr, "cx-conformance: no built-in connector '%s' (--list-builtin)\n", name);
            return EXIT_USAGE;
        }
        snprintf(source, sizeof source, "built-in");
    } else {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "cx-conformance: cannot load %s: %s\n", lib, dlerror());
            return EXIT_CONFIG;
        }
        const cx_connector_t *(*entry)(void);
        *(void **)(&entry) = dlsym(h, CX_CONNECTOR_ENTRY_SYMBOL);
        if (entry == NULL) {
            fprintf(stderr, "cx-conformance: %s exports no %s(): see docs/conformance.md\n", lib,
                    CX_CONNECTOR_ENTRY_SYMBOL);
            return EXIT_CONFIG;
        }
        c = entry();
        if (c == NULL) {
            fprintf(stderr, "cx-conformance: %s: %s() returned NULL\n", lib,
                    CX_CONNECTOR_ENTRY_SYMBOL);
            return EXIT_CONFIG;
        }
        snprintf(source, sizeof source, "%s", lib);
        /* Deliberately never dlclose()d: children of the run still use it. */
    }
    /* ABI version and struct size first: nothing else in the struct can be trusted before. */
    cx_error_t err;
    cx_error_clear(&err);
    if (c->abi_version != CX_CONNECTOR_ABI || c->struct_size != sizeof(cx_connector_t) ||
        cx_connector_check(c, &err) == CX_EABI) {
        cx_connector_check(c, &err);
        fprintf(stderr, "cx-conformance: %s: %s\n", source,
                err.message[0] ? err.message : "incompatible connector ABI");
        return EXIT_CONFIG;
    }
    if (c->manifest == NULL || c->manifest->id == NULL || c->parse == NULL) {
        fprintf(stderr, "cx-conformance: %s: the connector has no manifest id or no parse\n",
                source);
        return EXIT_CONFIG;
    }
    if (fixtures == NULL) {
        fprintf(stderr, "cx-conformance: --fixtures DIR is required for %s\n", source);
        return EXIT_USAGE;
    }

    cx_conf_waiver_t *xf = NULL;
    size_t n_xf = 0;
    char why[1024];
    if (xfail_file && cx_conf_read_waivers(xfail_file, &xf, &n_xf, why, sizeof why) != 0) {
        fprintf(stderr, "cx-conformance: %s\n", why);
        return EXIT_CONFIG;
    }
    cx_conf_options_t o = {.fixtures = fixtures,
                           .timeout_s = timeout_s,
                           .strict = strict,
                           .skips = skips,
                           .n_skips = n_skips,
                           .expected_failures = xf,
                           .n_expected_failures = n_xf,
                           .only = only,
                           .verbose = verbose};
    cx_conf_report_t *rep;
    if (cx_conf_run(c, source, &o, &rep, why, sizeof why) != 0) {
        fprintf(stderr, "cx-conformance: %s\n", why);
        free(xf);
        return EXIT_CONFIG;
    }
    if (!quiet)
        cx_conf_report_human(rep, stdout);
    int rc = cx_conf_report_ok(rep) ? EXIT_OK : EXIT_FAILED;
    if (junit && cx_conf_report_junit(rep, junit) != 0) {
        fprintf(stderr, "cx-conformance: cannot write %s\n", junit);
        rc = EXIT_CONFIG;
    }
    if (json && cx_conf_report_json(rep, json) != 0) {
        fprintf(stderr, "cx-conformance: cannot write %s\n", json);
        rc = EXIT_CONFIG;
    }
    if (quiet && rc == EXIT_FAILED)
        cx_conf_report_human(rep, stdout);
    cx_conf_report_free(rep);
    free(xf);
    for (size_t k = 0; k < n_skips; k++)
        free(skip_text[k]);
    return rc;
}
