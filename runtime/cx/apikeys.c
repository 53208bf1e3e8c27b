/* API keys of the internal routes: the key file, the lookup, and `cx apikey` (apikeys.h). */
#define _POSIX_C_SOURCE 200809L
#include "apikeys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cli.h"
#include "cx/connector.h"

#define SUB "apikey"
#define MAX_FILE (1u << 20)
#define MAX_ITEMS 64

typedef struct list_s {
    int any;      /* "*" */
    char **items; /* NULL when any */
    size_t n;
} list_t;

struct cx_apikey_s {
    char id[CX_APIKEY_ID_MAX + 1];
    unsigned char hash[32];
    list_t lists[3]; /* cx_apikey_list_t */
};

struct cx_apikeys_s {
    cx_apikey_t *keys;
    size_t n;
};

/* ---- Names -------------------------------------------------------------------------------- */

static int id_ok(const char *s, size_t n)
{
    if (n == 0 || n > CX_APIKEY_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int capability_ok(const char *s)
{
    return strcmp(s, CX_APIKEY_GRANT_OAUTH) == 0 || cx_capability_is_known(s);
}

static int item_ok(cx_apikey_list_t which, const char *s)
{
    switch (which) {
    case CX_APIKEY_TENANTS:
        return cx_cli_tenant_ok(s);
    case CX_APIKEY_CONNECTORS:
        return cx_cli_connector_id_ok(s, strlen(s));
    default:
        return capability_ok(s);
    }
}

static const char *const LIST_NAMES[3] = {"tenants", "connectors", "capabilities"};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* never matches a stored hash: those are checked non-zero */
}

/* ---- The table ---------------------------------------------------------------------------- */

static void list_free(list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

void cx_apikeys_free(cx_apikeys_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        for (int j = 0; j < 3; j++)
            list_free(&t->keys[i].lists[j]);
    OPENSSL_cleanse(t->keys, t->n * sizeof *t->keys);
    free(t->keys);
    free(t);
}

size_t cx_apikeys_count(const cx_apikeys_t *t)
{
    return t ? t->n : 0;
}

static int fail(char *why, size_t cap, const char *file, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *why, size_t cap, const char *file, size_t line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(why, cap, "%s:%zu: %s", file, line, msg);
    else
        snprintf(why, cap, "%s: %s", file, msg);
    return -1;
}

/* "a,b,c" or "*" into l. Returns 0 or -1 (bad item: *bad names it). */
static int parse_list(cx_apikey_list_t which, const char *v, list_t *l, const char **bad)
{
    *bad = v;
    if (strcmp(v, "*") == 0) {
        l->any = 1;
        return 0;
    }
    if (*v == '\0')
        return -1;
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[160];
        if (n == 0 || n >= sizeof item || l->n == MAX_ITEMS)
            return -1;
        memcpy(item, p, n);
        item[n] = '\0';
        if (!item_ok(which, item))
            return -1;
        char **grown = realloc(l->items, (l->n + 1) * sizeof *grown);
        if (grown == NULL)
            return -1;
        l->items = grown;
        if ((l->items[l->n] = strdup(item)) == NULL)
            return -1;
        l->n++;
        p += n;
        if (*p == ',') {
            p++;
            if (*p == '\0')
                return -1;
        }
    }
    return 0;
}

/* One line split into whitespace-separated words (in place). Returns the count. */
static size_t words(char *s, char **w, size_t max)
{
    size_t n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            *s++ = '\0';
        if (*s == '\0')
            break;
        if (n == max)
            return max + 1;
        w[n++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r')
            s++;
    }
    return n;
}

static int parse_line(char *text, const char *file, size_t lineno, cx_apikey_t *k, char *why,
                      size_t cap)
{
    char *w[8];
    size_t n = words(text, w, 6);
    if (n < 3 || n > 5)
        return fail(why, cap, file, lineno,
                    "expected `<id> sha256:<hex> tenants=... [connectors=...] capabilities=...`");
    if (!id_ok(w[0], strlen(w[0])))
        return fail(why, cap, file, lineno, "a key id is 1 to %d of [A-Za-z0-9._-]",
                    CX_APIKEY_ID_MAX);
    snprintf(k->id, sizeof k->id, "%s", w[0]);
    if (strncmp(w[1], "sha256:", 7) != 0 || strlen(w[1]) != 7 + 64)
        return fail(why, cap, file, lineno, "key %s: the hash must be sha256:<64 hex digits>",
                    k->id);
    int nonzero = 0;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(w[1][7 + 2 * i]), lo = hexval(w[1][8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return fail(why, cap, file, lineno, "key %s: the hash must be sha256:<64 hex digits>",
                        k->id);
        k->hash[i] = (unsigned char)(hi << 4 | lo);
        nonzero |= k->hash[i];
    }
    if (!nonzero)
        return fail(why, cap, file, lineno, "key %s: an all-zero hash is not a hash", k->id);
    int seen[3] = {0, 0, 0};
    for (size_t i = 2; i < n; i++) {
        char *eq = strchr(w[i], '=');
        int which = -1;
        if (eq) {
            *eq = '\0';
            for (int j = 0; j < 3; j++)
                if (strcmp(w[i], LIST_NAMES[j]) == 0)
                    which = j;
        }
        if (which < 0)
            return fail(why, cap, file, lineno,
                        "key %s: unknown attribute (tenants=, connectors=, capabilities=)", k->id);
        if (seen[which]++)
            return fail(why, cap, file, lineno, "key %s: %s= given twice", k->id,
                        LIST_NAMES[which]);
        const char *bad;
        if (parse_list((cx_apikey_list_t)which, eq + 1, &k->lists[which], &bad) != 0)
            return fail(why, cap, file, lineno,
                        "key %s: %s= must be * or a comma-separated list of %s", k->id,
                        LIST_NAMES[which],
                        which == CX_APIKEY_TENANTS      ? "tenant ids"
                        : which == CX_APIKEY_CONNECTORS ? "connector ids"
                                                        : "capability ids or oauth");
    }
    if (!seen[CX_APIKEY_TENANTS] || !seen[CX_APIKEY_CAPABILITIES])
        return fail(why, cap, file, lineno, "key %s: tenants= and capabilities= are required",
                    k->id);
    if (!seen[CX_APIKEY_CONNECTORS])
        k->lists[CX_APIKEY_CONNECTORS].any = 1;
    return 0;
}

int cx_apikeys_parse(const char *text, size_t len, const char *file, cx_apikeys_t **out, char *why,
                     size_t cap)
{
    *out = NULL;
    cx_apikeys_t *t = calloc(1, sizeof *t);
    char *copy = malloc(len + 1);
    if (t == NULL || copy == NULL) {
        free(t);
        free(copy);
        return fail(why, cap, file, 0, "out of memory");
    }
    if (memchr(text, '\0', len) != NULL) {
        free(t);
        free(copy);
        return fail(why, cap, file, 0, "holds a NUL byte: not a key file");
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t lineno = 0, cap_keys = 0;
    int rc = 0;
    char *p = copy;
    while (rc == 0 && *p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *s = p;
        p = nl ? nl + 1 : p + strlen(p);
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#' || *s == '\r')
            continue;
        if (t->n == cap_keys) {
            size_t c = cap_keys ? cap_keys * 2 : 8;
            cx_apikey_t *g = realloc(t->keys, c * sizeof *g);
            if (g == NULL) {
                rc = fail(why, cap, file, 0, "out of memory");
                break;
            }
            t->keys = g;
            cap_keys = c;
        }
        cx_apikey_t *k = &t->keys[t->n];
        memset(k, 0, sizeof *k);
        t->n++;
        if ((rc = parse_line(s, file, lineno, k, why, cap)) != 0)
            break;
        for (size_t i = 0; i + 1 < t->n; i++) {
            if (strcmp(t->keys[i].id, k->id) == 0) {
                rc = fail(why, cap, file, lineno, "key id %s used twice", k->id);
                break;
            }
            if (CRYPTO_memcmp(t->keys[i].hash, k->hash, 32) == 0) {
                rc = fail(why, cap, file, lineno, "keys %s and %s have the same hash",
                          t->keys[i].id, k->id);
                break;
            }
        }
    }
    OPENSSL_cleanse(copy, len);
    free(copy);
    if (rc != 0) {
        cx_apikeys_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int cx_apikeys_load(const char *path, cx_apikeys_t **out, int *missing, char *why, size_t cap)
{
    *out = NULL;
    *missing = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = cx_cli_read_file(path, MAX_FILE, &text, &len);
    if (rc == -1 && errno == ENOENT) {
        *missing = 1;
        if ((*out = calloc(1, sizeof **out)) == NULL)
            return fail(why, cap, path, 0, "out of memory");
        return 0;
    }
    if (rc == -2)
        return fail(why, cap, path, 0, "larger than %u bytes", MAX_FILE);
    if (rc != 0)
        return fail(why, cap, path, 0, "%s", strerror(errno));
    rc = cx_apikeys_parse(text, len, path, out, why, cap);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

const cx_apikey_t *cx_apikeys_find(const cx_apikeys_t *t, const char *presented, size_t len)
{
    if (t == NULL || presented == NULL || len == 0)
        return NULL;
    unsigned char h[32];
    sha256(presented, len, h);
    const cx_apikey_t *found = NULL;
    /* Every entry is compared, match or not: the time taken says nothing about which. */
    for (size_t i = 0; i < t->n; i++) {
        int eq = CRYPTO_memcmp(h, t->keys[i].hash, 32) == 0;
        if (eq && found == NULL)
            found = &t->keys[i];
    }
    OPENSSL_cleanse(h, sizeof h);
    return found;
}

const char *cx_apikey_id(const cx_apikey_t *k)
{
    return k->id;
}

int cx_apikey_allows(const cx_apikey_t *k, cx_apikey_list_t list, const char *value)
{
    const list_t *l = &k->lists[list];
    if (l->any)
        return 1;
    if (value == NULL)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], value) == 0)
            return 1;
    return 0;
}

const char *cx_apikey_bearer(const char *authorization, size_t *len)
{
    if (authorization == NULL)
        return NULL;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return NULL;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0)
        return NULL;
    *len = n;
    return p;
}

/* ---- cx apikey ------------------------------------------------------------------------------ */

static int usage_error(const char *msg)
{
    cx_cli_error(SUB, "%s (see cx apikey --help)", msg);
    return CX_EXIT_USAGE;
}

/* Appends v to the comma-separated list buf (a list item, or "*"). Returns 0 or -1. */
static int add_item(char *buf, size_t cap, const char *v)
{
    size_t n = strlen(buf);
    if (n + strlen(v) + 2 > cap)
        return -1;
    snprintf(buf + n, cap - n, "%s%s", n ? "," : "", v);
    return 0;
}

/* The line of a new key to the file (created 0600), refusing a duplicate id. */
static int append_line(const char *path, const char *id, const char *line)
{
    cx_apikeys_t *t = NULL;
    int missing = 0;
    char why[512] = "cannot load the key file";
    if (cx_apikeys_load(path, &t, &missing, why, sizeof why) != 0 || t == NULL) {
        cx_cli_error(SUB, "%s", why);
        return CX_EXIT_CONFIG;
    }
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->keys[i].id, id) == 0) {
            cx_apikeys_free(t);
            cx_cli_error(SUB, "%s already has a key with id %s", path, id);
            return CX_EXIT_CONFIG;
        }
    cx_apikeys_free(t);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        cx_cli_error(SUB, "%s: %s", path, strerror(errno));
        return CX_EXIT_CONFIG;
    }
    /* A file that does not end in a newline gets one first, so lines never merge. */
    struct stat st;
    int need_nl = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        char last = '\n';
        if (rfd >= 0) {
            if (pread(rfd, &last, 1, st.st_size - 1) != 1)
                last = '\n';
            close(rfd);
        }
        need_nl = last != '\n';
    }
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s%s\n", need_nl ? "\n" : "", line);
    ssize_t w;
    do {
        w = write(fd, buf, (size_t)n);
    } while (w < 0 && errno == EINTR);
    int ok = w == n && fsync(fd) == 0;
    if (close(fd) != 0)
        ok = 0;
    if (!ok) {
        cx_cli_error(SUB, "%s: cannot write: %s", path, strerror(errno));
        return CX_EXIT_INTERNAL;
    }
    return CX_EXIT_OK;
}

static int cmd_new(int argc, char **argv)
{
    const char *id = NULL, *append = NULL, *v;
    char tenants[2048] = "", connectors[1024] = "", caps[1024] = "";
    for (int i = 2; i < argc; i++) {
        int m;
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help(SUB);
            return CX_EXIT_OK;
        }
        if ((m = cx_cli_opt(SUB, argc, argv, &i, "--id", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if (!id_ok(v, strlen(v)))
                return usage_error("--id must be 1 to 64 of [A-Za-z0-9._-]");
            id = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--tenant", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if ((strcmp(v, "*") != 0 && !cx_cli_tenant_ok(v)) ||
                add_item(tenants, sizeof tenants, v))
                return usage_error("--tenant must be * or a tenant id ([a-z0-9][a-z0-9_.-]*)");
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--connector", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if ((strcmp(v, "*") != 0 && !cx_cli_connector_id_ok(v, strlen(v))) ||
                add_item(connectors, sizeof connectors, v))
                return usage_error("--connector must be * or a connector id");
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--capability", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            if ((strcmp(v, "*") != 0 && !capability_ok(v)) || add_item(caps, sizeof caps, v))
                return usage_error("--capability must be *, oauth or a capability id "
                                   "(docs/capabilities.md)");
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--append", &v)) != 0) {
            if (m < 0)
                return CX_EXIT_USAGE;
            append = v;
        } else {
            return cx_cli_bad_arg(SUB, argv[i]);
        }
    }
    if (id == NULL || !tenants[0] || !caps[0])
        return usage_error("new needs --id, at least one --tenant and one --capability");
    /* "*" anywhere in a list means any. */
    if (strstr(tenants, "*"))
        snprintf(tenants, sizeof tenants, "*");
    if (strstr(caps, "*"))
        snprintf(caps, sizeof caps, "*");
    if (!connectors[0] || strstr(connectors, "*"))
        snprintf(connectors, sizeof connectors, "*");

    unsigned char raw[32], h[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        cx_cli_error(SUB, "no random bytes available");
        return CX_EXIT_INTERNAL;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char key[64];
    size_t k = snprintf(key, sizeof key, "%s", CX_APIKEY_PREFIX);
    /* base64url without padding: 32 bytes -> 43 characters. */
    for (size_t i = 0; i < 32; i += 3) {
        unsigned v3 = (unsigned)raw[i] << 16 | (i + 1 < 32 ? (unsigned)raw[i + 1] << 8 : 0) |
                      (i + 2 < 32 ? raw[i + 2] : 0);
        key[k++] = b64[v3 >> 18 & 63];
        key[k++] = b64[v3 >> 12 & 63];
        if (i + 1 < 32)
            key[k++] = b64[v3 >> 6 & 63];
        if (i + 2 < 32)
            key[k++] = b64[v3 & 63];
    }
    key[k] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    sha256(key, k, h);
    char line[4400];
    int n = snprintf(line, sizeof line, "%s sha256:", id);
    for (int i = 0; i < 32; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%02x", h[i]);
    snprintf(line + n, sizeof line - (size_t)n, " tenants=%s connectors=%s capabilities=%s",
             tenants, connectors, caps);
    int rc = CX_EXIT_OK;
    if (append && (rc = append_line(append, id, line)) != CX_EXIT_OK) {
        OPENSSL_cleanse(key, sizeof key);
        return rc;
    }
    printf("%s\n", key);
    if (!append)
        printf("%s\n", line);
    fflush(stdout);
    OPENSSL_cleanse(key, sizeof key);
    if (isatty(STDERR_FILENO))
        fprintf(stderr,
                append ? "cx apikey: the key (first line) is shown only now; the line was "
                         "appended to %s: send SIGHUP to cx serve\n"
                       : "cx apikey: the key (first line) is shown only now; append the second "
                         "line to the key file (<secrets>/runtime/api_keys) and send SIGHUP to "
                         "cx serve%s\n",
                append ? append : "");
    return CX_EXIT_OK;
}

/* `cx apikey check FILE`: parses a key file; prints the ids and grants, never a hash. */
static int cmd_check(int argc, char **argv)
{
    if (argc == 3 && cx_cli_is_help(argv[2])) {
        cx_cli_help(SUB);
        return CX_EXIT_OK;
    }
    if (argc != 3)
        return usage_error("check takes one key file");
    cx_apikeys_t *t;
    int missing;
    char why[512] = "cannot load the key file";
    if (cx_apikeys_load(argv[2], &t, &missing, why, sizeof why) != 0 || t == NULL) {
        cx_cli_error(SUB, "%s", why);
        return CX_EXIT_INVALID;
    }
    if (missing) {
        cx_apikeys_free(t);
        cx_cli_error(SUB, "%s: no such file", argv[2]);
        return CX_EXIT_INVALID;
    }
    for (size_t i = 0; i < t->n; i++) {
        printf("%s", t->keys[i].id);
        for (int j = 0; j < 3; j++) {
            const list_t *l = &t->keys[i].lists[j];
            printf(" %s=", LIST_NAMES[j]);
            if (l->any)
                printf("*");
            for (size_t x = 0; x < l->n; x++)
                printf("%s%s", x ? "," : "", l->items[x]);
        }
        printf("\n");
    }
    cx_apikeys_free(t);
    return CX_EXIT_OK;
}

int cx_cmd_apikey(int argc, char **argv)
{
    if (argc < 2 || cx_cli_is_help(argv[1])) {
        if (argc < 2)
            return usage_error("missing subcommand: new or check");
        cx_cli_help(SUB);
        return CX_EXIT_OK;
    }
    if (strcmp(argv[1], "new") == 0)
        return cmd_new(argc, argv);
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc, argv);
    cx_cli_error(SUB, "unknown subcommand '%s' (new or check)", argv[1]);
    return CX_EXIT_USAGE;
}
