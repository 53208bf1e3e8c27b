/* `cx dlq`: the dead-letter store from the command line (cx_dlq_cli, cx/dlq.h).
 *
 *   cx dlq list   [--limit N] [--offset N] [--json]
 *   cx dlq show   ID
 *   cx dlq replay ID... | --all
 *   cx dlq purge  ID... | --all | --before UNIX_SECONDS
 *
 * Dead letters shared by gateway processes live in Redis, so the command needs --redis (or
 * CX_REDIS) and the environment they run in (--env / CX_ENV). A replay claims the item's
 * dedupe key and appends it to the work queue, where the workers of `cx serve` run it; items
 * that failed before they had a tenant or key (UNKNOWN_ACCOUNT, VALIDATION) get them first,
 * which needs the accounts (--account) and the pseudonym key (--secrets).
 *
 * It lives in libcx (not in runtime/cx/) so any program embedding the runtime can offer the
 * same command; `cx` dispatches `cx dlq` here.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cx/dlq.h"
#include "cx/runtime.h"

enum { EX_OK = 0, EX_FAILED = 1, EX_USAGE = 2, EX_UNAVAILABLE = 69, EX_CONFIG = 78 };

static const char USAGE[] =
    "usage: cx dlq list   [--limit N] [--offset N] [--json]\n"
    "       cx dlq show   ID\n"
    "       cx dlq replay ID... | --all\n"
    "       cx dlq purge  ID... | --all | --before UNIX_SECONDS\n"
    "options: --redis HOST:PORT (CX_REDIS)   --env development|staging|production (CX_ENV)\n"
    "         --redis-password-file FILE      --queue NAME (default inbound)\n"
    "         --secrets DIR (CX_SECRETS_DIR)  --account CONNECTOR:ACCOUNT_ID=TENANT ...\n"
    "\n"
    "Dead letters are items that failed permanently, were invalid, or exhausted their retries.\n"
    "list prints the oldest first; show prints one with its canonical event as JSON (it holds\n"
    "personal data: for operators, not for logs). replay claims the item's dedupe key (a replay\n"
    "and a provider duplicate never both run) and queues it for the workers of `cx serve`;\n"
    "purge removes dead letters. Exit codes: 0 ok, 1 some item not found or not replayed,\n"
    "2 usage, 69 Redis unavailable, 78 configuration.\n"
    "\n"
    "examples:\n"
    "  cx dlq list --redis 127.0.0.1:6379 --env production\n"
    "  cx dlq replay 'dm:whatsapp:123:msg:wamid.X' --redis 127.0.0.1:6379 --env production\n";

static void errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cx dlq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int exit_for(int rc)
{
    switch (rc) {
    case 0:
        return EX_OK;
    case CX_EUNAVAILABLE:
        return EX_UNAVAILABLE;
    case CX_EINVAL:
    case CX_ECONFIG:
        return EX_CONFIG;
    default:
        return EX_FAILED;
    }
}

static int parse_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= cap)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (host[0] == '[') { /* [::1]:6379 */
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']')
            return -1;
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    *port = (int)p;
    return 0;
}

static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    char *s = strdup(buf);
    memset(buf, 0, sizeof buf);
    return s;
}

/* --name VALUE or --name=VALUE; returns 1 when argv[*i] is --name. */
static int take(int argc, char **argv, int *i, const char *name, const char **val)
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
        *val = NULL;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

static void print_row(const cx_dead_letter_t *d)
{
    char when[32] = "-";
    if (d->dead_ms) {
        time_t t = (time_t)(d->dead_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    printf("%-20s  %-9s  %-18s  %3u  %s/%s  %s\n", when, d->reason ? d->reason : "-",
           d->error_code ? d->error_code : "-", (unsigned)d->attempts,
           d->connector ? d->connector : "-", d->capability ? d->capability : "-", d->id);
}

int cx_dlq_cli(int argc, char **argv)
{
    const char *redis = getenv("CX_REDIS"), *env = getenv("CX_ENV");
    const char *secrets = getenv("CX_SECRETS_DIR"), *pwfile = NULL, *queue_name = NULL;
    const char *limit_s = NULL, *offset_s = NULL, *before_s = NULL;
    int json = 0, all = 0;
    const char *accounts[64];
    int n_accounts = 0;
    const char *args[256];
    int n_args = 0;
    const char *sub = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return EX_OK;
        }
        int matched = take(argc, argv, &i, "--redis", &v)                 ? (redis = v, 1)
                      : take(argc, argv, &i, "--env", &v)                 ? (env = v, 1)
                      : take(argc, argv, &i, "--secrets", &v)             ? (secrets = v, 1)
                      : take(argc, argv, &i, "--redis-password-file", &v) ? (pwfile = v, 1)
                      : take(argc, argv, &i, "--queue", &v)               ? (queue_name = v, 1)
                      : take(argc, argv, &i, "--limit", &v)               ? (limit_s = v, 1)
                      : take(argc, argv, &i, "--offset", &v)              ? (offset_s = v, 1)
                      : take(argc, argv, &i, "--before", &v)              ? (before_s = v, 1)
                                                                          : 0;
        if (!matched && take(argc, argv, &i, "--account", &v)) {
            matched = 1;
            if (v && n_accounts < 64)
                accounts[n_accounts++] = v;
        }
        if (matched) {
            if (v == NULL) {
                errorf("%s needs a value", a);
                return EX_USAGE;
            }
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--all") == 0) {
            all = 1;
        } else if (a[0] == '-' && a[1] == '-') {
            errorf("unknown option %s (see cx dlq --help)", a);
            return EX_USAGE;
        } else if (sub == NULL) {
            sub = a;
        } else if (n_args < 256) {
            args[n_args++] = a;
        }
    }
    if (sub == NULL || (strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "replay") &&
                        strcmp(sub, "purge"))) {
        fputs(USAGE, stderr);
        return EX_USAGE;
    }
    if ((strcmp(sub, "show") == 0 && n_args != 1) ||
        (strcmp(sub, "replay") == 0 && (n_args == 0) == !all) ||
        (strcmp(sub, "purge") == 0 && (n_args > 0) + all + (before_s != NULL) != 1) ||
        (strcmp(sub, "list") == 0 && n_args)) {
        errorf("wrong arguments for %s (see cx dlq --help)", sub);
        return EX_USAGE;
    }
    if (redis == NULL || redis[0] == '\0') {
        errorf("needs --redis HOST:PORT (or CX_REDIS): dead letters of the embedded store live "
               "inside one process");
        return EX_CONFIG;
    }
    cx_environment_t envv = CX_ENV_DEVELOPMENT;
    if (env && cx_environment_parse(env, &envv) != 0) {
        errorf("--env must be development, staging or production");
        return EX_CONFIG;
    }
    char host[256];
    int port;
    if (parse_hostport(redis, host, sizeof host, &port) != 0) {
        errorf("--redis must be HOST:PORT");
        return EX_CONFIG;
    }
    char *pw = NULL;
    if (pwfile && (pw = read_secret(pwfile)) == NULL) {
        errorf("--redis-password-file %s: %s", pwfile, strerror(errno));
        return EX_CONFIG;
    }
    int code = EX_OK, rc;
    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = host, .port = port, .password = pw, .pool_size = 2};
    const char *en = cx_environment_name(envv);
    cx_dedupe_store_t *dedupe = NULL;
    cx_queue_t *queue = NULL;
    cx_dlq_t *dlq = NULL;
    cx_logger_t *log = NULL;
    cx_runtime_t *rt = NULL;
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 64u << 20);
    if ((rc = cx_dedupe_store_redis(en, &ro, &dedupe, &err)) != 0 ||
        (rc = cx_queue_redis(en, queue_name, &ro, &queue, &err)) != 0 ||
        (rc = cx_dlq_redis(en, queue_name, &ro, &dlq, &err)) != 0) {
        errorf("%s", err.message);
        code = exit_for(rc);
        goto done;
    }
    cx_logger_config_t lc = {.service = "cx-dlq", .level = CX_LOG_WARN};
    cx_logger_new(&lc, &log);
    cx_runtime_config_t cfg = {.environment = envv,
                               .service = "cx-dlq",
                               .secrets_dir = secrets,
                               .dedupe = dedupe,
                               .logger = log,
                               .handler_mode = CX_HANDLER_MODE_QUEUED,
                               .queue = queue,
                               .dlq = dlq};
    if ((rc = cx_runtime_create(&cfg, &rt, &err)) != 0) {
        errorf("%s", err.message);
        code = exit_for(rc);
        goto done;
    }
    for (int i = 0; i < n_accounts; i++) {
        char spec[512];
        snprintf(spec, sizeof spec, "%s", accounts[i]);
        char *colon = strchr(spec, ':'), *eq = colon ? strchr(colon + 1, '=') : NULL;
        if (!colon || !eq) {
            errorf("--account must be CONNECTOR:ACCOUNT_ID=TENANT");
            code = EX_USAGE;
            goto done;
        }
        *colon = *eq = '\0';
        if (cx_runtime_add_account(rt, spec, colon + 1, eq + 1, &err) != 0) {
            errorf("--account: %s", err.message);
            code = EX_CONFIG;
            goto done;
        }
    }

    if (strcmp(sub, "list") == 0) {
        size_t limit = limit_s ? strtoul(limit_s, NULL, 10) : 50, offset = 0;
        if (offset_s)
            offset = strtoul(offset_s, NULL, 10);
        if (limit == 0 || limit > 10000) {
            errorf("--limit must be 1..10000");
            code = EX_USAGE;
            goto done;
        }
        cx_dead_letter_t *dl = calloc(limit, sizeof *dl);
        size_t n = 0, total = 0;
        rc = dl ? cx_runtime_dlq_list(rt, offset, limit, &arena, dl, &n, &total, &err) : CX_ENOMEM;
        if (rc != 0) {
            errorf("%s", err.message[0] ? err.message : cx_strerror(rc));
            free(dl);
            code = exit_for(rc);
            goto done;
        }
        if (json) {
            cx_buf_t b;
            cx_buf_init(&b, 256u << 20);
            cx_buf_printf(&b, "{\"total\":%zu,\"offset\":%zu,\"items\":[", total, offset);
            for (size_t i = 0; i < n; i++) {
                if (i)
                    cx_buf_putc(&b, ',');
                cx_dead_letter_to_json(&dl[i], 0, &b);
            }
            cx_buf_puts(&b, "]}\n");
            fwrite(b.data, 1, b.len, stdout);
            cx_buf_free(&b);
        } else {
            printf("%zu dead letters%s\n", total, total > n + offset ? " (more: --offset)" : "");
            for (size_t i = 0; i < n; i++)
                print_row(&dl[i]);
        }
        free(dl);
    } else if (strcmp(sub, "show") == 0) {
        cx_dead_letter_t d;
        if ((rc = cx_runtime_dlq_get(rt, args[0], &arena, &d, &err)) != 0) {
            errorf("%s: %s", args[0], err.message[0] ? err.message : cx_strerror(rc));
            code = rc == CX_ENOTFOUND ? EX_FAILED : exit_for(rc);
            goto done;
        }
        cx_buf_t b;
        cx_buf_init(&b, 256u << 20);
        cx_dead_letter_to_json(&d, 1, &b);
        cx_buf_putc(&b, '\n');
        fwrite(b.data, 1, b.len, stdout);
        cx_buf_free(&b);
    } else if (strcmp(sub, "replay") == 0) {
        size_t nids = (size_t)n_args;
        char **ids = NULL;
        if (all) {
            /* Collect first: replays remove entries, which would shift the pages. */
            size_t total = 0, n = 0, cap = 0;
            cx_dlq_ref_t page[100];
            for (size_t off = 0;; off += n) {
                if ((rc = dlq->ops->list(dlq, off, 100, page, &n, &total, &err)) != 0)
                    break;
                char **grown = realloc(ids, (cap + n) * sizeof *ids);
                if (grown == NULL) {
                    rc = CX_ENOMEM;
                    break;
                }
                ids = grown;
                for (size_t i = 0; i < n; i++)
                    ids[cap++] = strdup(page[i].id);
                if (n < 100)
                    break;
            }
            nids = cap;
            if (rc != 0) {
                errorf("%s", err.message[0] ? err.message : cx_strerror(rc));
                code = exit_for(rc);
            }
        }
        int failed = 0;
        for (size_t i = 0; code == EX_OK && i < nids; i++) {
            const char *id = all ? ids[i] : args[i];
            const char *outcome = "";
            cx_error_clear(&err);
            rc = id ? cx_runtime_dlq_replay(rt, id, &outcome, &err) : CX_ENOMEM;
            if (rc == 0) {
                printf("%s: %s\n", id, outcome);
                continue;
            }
            printf("%s: not replayed: %s (%s)\n", id ? id : "?",
                   err.message[0] ? err.message : cx_strerror(rc), cx_err_name(rc));
            failed = 1;
            if (rc == CX_EUNAVAILABLE)
                code = EX_UNAVAILABLE; /* stop: the rest would fail the same way */
        }
        if (code == EX_OK && failed)
            code = EX_FAILED;
        for (size_t i = 0; all && i < nids; i++)
            free(ids[i]);
        free(ids);
    } else { /* purge */
        if (n_args) {
            for (int i = 0; i < n_args; i++) {
                cx_error_clear(&err);
                rc = cx_runtime_dlq_remove(rt, args[i], &err);
                printf("%s: %s\n", args[i], rc == 0 ? "removed" : cx_strerror(rc));
                if (rc != 0)
                    code = rc == CX_EUNAVAILABLE ? EX_UNAVAILABLE : EX_FAILED;
            }
        } else {
            int64_t before = INT64_MAX;
            if (before_s) {
                char *end;
                long long s = strtoll(before_s, &end, 10);
                if (*end || s < 0) {
                    errorf("--before must be Unix seconds");
                    code = EX_USAGE;
                    goto done;
                }
                before = (int64_t)s * 1000;
            }
            size_t removed = 0;
            if ((rc = cx_runtime_dlq_purge(rt, before, &removed, &err)) != 0) {
                errorf("%s", err.message);
                code = exit_for(rc);
                goto done;
            }
            printf("removed %zu dead letters\n", removed);
        }
    }
done:
    cx_runtime_destroy(rt);
    cx_queue_destroy(queue);
    cx_dlq_destroy(dlq);
    cx_dedupe_store_destroy(dedupe);
    cx_logger_free(log);
    cx_arena_release(&arena);
    if (pw) {
        memset(pw, 0, strlen(pw));
        free(pw);
    }
    return code;
}
