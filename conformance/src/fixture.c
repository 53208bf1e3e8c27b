/* Fixture directories: the captured-request format (ARCHITECTURE.md section 7).
 *
 * A fixture directory is one case (it holds request.json or command.json) or a tree of them;
 * every directory below it holding one of those files is a case, in sorted order, and
 * directories named `secrets` are never searched. Beside a case, or at the root for every case:
 *
 *   secrets/<connector>/<name>       fake secrets that signed the fixture
 *   accounts.json                    {"<connector>": {"<account>": "<tenant>"}}
 *   expect.json                      what a correct connector yields (case only)
 *   conformance.json                 {"now": 1764403200, "signing": {...}, "skip": {...}}
 *
 * The signing scheme of a case is taken from conformance.json, or recognised from the request
 * itself by checking each candidate scheme against the fixture's own secrets (a header that
 * verifies as hex or base64 HMAC under one of them, Standard Webhooks headers, or a header
 * carrying a secret verbatim).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cx/signature.h"
#include "internal.h"

#define MAX_CASES 4096
#define MAX_BODY (64u << 20)

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *read_all(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static json_t *load_json(const char *path, char *why, size_t cap)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        snprintf(why, cap, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

long cx_conf__read_secret(const cx_conf_case_t *c, const char *connector, const char *name,
                          char *buf, size_t cap)
{
    if (c->secrets_dir[0] == '\0' || name == NULL || name[0] == '\0')
        return -1;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s/%s", c->secrets_dir, connector, name);
    size_t n;
    char *v = read_all(path, 1 << 20, &n);
    if (v == NULL)
        return -1;
    /* The runtime strips one trailing newline; so does the suite. */
    if (n && v[n - 1] == '\n')
        n--;
    if (n && v[n - 1] == '\r')
        n--;
    if (n >= cap) {
        free(v);
        return -1;
    }
    memcpy(buf, v, n);
    buf[n] = '\0';
    free(v);
    return (long)n;
}

/* The connector-level secret file names of a case (not *.previous), sorted. */
static size_t secret_names(const cx_conf_case_t *c, const char *connector, char names[][128],
                           size_t max)
{
    if (c->secrets_dir[0] == '\0')
        return 0;
    char dir[8192];
    snprintf(dir, sizeof dir, "%s/%s", c->secrets_dir, connector);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0)
        return 0;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        size_t len = strlen(nm);
        char p[8448];
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        if (nm[0] != '.' && is_file(p) && !(len > 9 && strcmp(nm + len - 9, ".previous") == 0) &&
            o < max && len < 128)
            cx_conf__fmt(names[o++], 128, "%s", nm);
        free(list[i]);
    }
    free(list);
    return o;
}

static int declared_signing(cx_conf_signing_t *sg, json_t *j, char *why, size_t cap)
{
    const char *scheme = json_string_value(json_object_get(j, "scheme"));
    if (scheme == NULL) {
        snprintf(why, cap, "conformance.json: signing.scheme is required");
        return -1;
    }
    static const struct {
        const char *name;
        int kind;
    } KINDS[] = {{"none", CX_CONF_SIGN_NONE},
                 {"hmac-sha256-hex", CX_CONF_SIGN_HMAC_HEX},
                 {"hmac-sha256-base64", CX_CONF_SIGN_HMAC_BASE64},
                 {"standard-webhooks", CX_CONF_SIGN_STANDARD_WEBHOOKS},
                 {"static", CX_CONF_SIGN_STATIC}};
    sg->kind = 0;
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (strcmp(scheme, KINDS[i].name) == 0)
            sg->kind = KINDS[i].kind;
    if (sg->kind == 0) {
        snprintf(why, cap, "conformance.json: unknown signing.scheme '%s'", scheme);
        return -1;
    }
    const char *h = json_string_value(json_object_get(j, "header"));
    const char *p = json_string_value(json_object_get(j, "prefix"));
    const char *s = json_string_value(json_object_get(j, "secret"));
    snprintf(sg->header, sizeof sg->header, "%s",
             h ? h : (sg->kind == CX_CONF_SIGN_STANDARD_WEBHOOKS ? "webhook-signature" : ""));
    snprintf(sg->prefix, sizeof sg->prefix, "%s", p ? p : "");
    snprintf(sg->secret, sizeof sg->secret, "%s", s ? s : "");
    snprintf(sg->secret_file, sizeof sg->secret_file, "%s", s ? s : "");
    if ((sg->kind == CX_CONF_SIGN_HMAC_HEX || sg->kind == CX_CONF_SIGN_HMAC_BASE64 ||
         sg->kind == CX_CONF_SIGN_STATIC) &&
        sg->header[0] == '\0') {
        snprintf(why, cap, "conformance.json: signing.header is required for %s", scheme);
        return -1;
    }
    sg->declared = 1;
    return 0;
}

/* Recognises the scheme that signed a case by trying each against the case's secrets. */
static void detect_signing(const cx_conf_suite_t *s, cx_conf_case_t *c)
{
    cx_conf_signing_t *sg = &c->signing;
    const cx_manifest_t *m = s->c->manifest;
    if (m->inbound_auth == CX_AUTH_NONE) {
        sg->kind = CX_CONF_SIGN_NONE;
        return;
    }
    char names[32][128];
    size_t n = secret_names(c, m->id, names, 32);
    cx_request_t v = cx_conf__req_view(&c->req);
    const char *swsig = cx_request_header(&v, "webhook-signature");
    static char secret[4096];
    if (swsig && cx_request_header(&v, "webhook-id") &&
        cx_request_header(&v, "webhook-timestamp")) {
        for (size_t i = 0; i < 2 * n; i++) {
            char file[160];
            cx_conf__fmt(file, sizeof file, "%s%s", names[i % n], i < n ? "" : ".previous");
            long len = cx_conf__read_secret(c, m->id, file, secret, sizeof secret);
            if (len < 0)
                continue;
            cx_secret_pair_t pair = {(const unsigned char *)secret, (size_t)len, NULL, 0};
            /* Any timestamp is accepted here: the case's clock is set from it. */
            if (strtoll(cx_request_header(&v, "webhook-timestamp"), NULL, 10) <= 0)
                continue;
            if (cx_standard_webhooks_verify(&pair, cx_request_header(&v, "webhook-id"),
                                            cx_request_header(&v, "webhook-timestamp"), swsig,
                                            c->req.body, c->req.body_len, NULL, UINT32_MAX / 2,
                                            NULL) == 0) {
                sg->kind = CX_CONF_SIGN_STANDARD_WEBHOOKS;
                snprintf(sg->header, sizeof sg->header, "webhook-signature");
                snprintf(sg->secret, sizeof sg->secret, "%s", names[i % n]);
                snprintf(sg->secret_file, sizeof sg->secret_file, "%s", file);
                return;
            }
        }
    }
    for (size_t h = 0; h < c->req.n_headers; h++) {
        const char *val = c->req.headers[h].value;
        for (size_t i = 0; i < 2 * n; i++) {
            /* Each secret's current value, then each previous one (a fixture captured during
             * a rotation). */
            char file[160];
            cx_conf__fmt(file, sizeof file, "%s%s", names[i % n], i < n ? "" : ".previous");
            long len = cx_conf__read_secret(c, m->id, file, secret, sizeof secret);
            if (len <= 0)
                continue;
            cx_secret_pair_t pair = {(const unsigned char *)secret, (size_t)len, NULL, 0};
            /* hex or base64 HMAC, with whatever prefix precedes the MAC */
            size_t vl = strlen(val);
            for (int b64 = 0; b64 < 2; b64++) {
                size_t maclen = b64 ? CX_SIGNATURE_BASE64_LEN : CX_SIGNATURE_HEX_LEN;
                for (size_t cut = 0; vl >= maclen && cut <= vl - maclen && cut < 64; cut++) {
                    char prefix[64];
                    memcpy(prefix, val, cut);
                    prefix[cut] = '\0';
                    int rc = b64 ? cx_signature_verify_base64(&pair, c->req.body, c->req.body_len,
                                                              val, prefix, NULL)
                                 : cx_signature_verify_hex(&pair, c->req.body, c->req.body_len, val,
                                                           prefix, NULL);
                    if (rc == 0) {
                        sg->kind = b64 ? CX_CONF_SIGN_HMAC_BASE64 : CX_CONF_SIGN_HMAC_HEX;
                        snprintf(sg->header, sizeof sg->header, "%s", c->req.headers[h].name);
                        snprintf(sg->prefix, sizeof sg->prefix, "%s", prefix);
                        snprintf(sg->secret, sizeof sg->secret, "%s", names[i % n]);
                        snprintf(sg->secret_file, sizeof sg->secret_file, "%s", file);
                        return;
                    }
                }
            }
            if (len >= 4 && strstr(val, secret) != NULL) {
                sg->kind = CX_CONF_SIGN_STATIC;
                snprintf(sg->header, sizeof sg->header, "%s", c->req.headers[h].name);
                snprintf(sg->secret, sizeof sg->secret, "%s", names[i % n]);
                snprintf(sg->secret_file, sizeof sg->secret_file, "%s", file);
                return;
            }
        }
    }
    sg->kind = CX_CONF_SIGN_UNKNOWN;
}

static int load_request(cx_conf_case_t *c, char *why, size_t cap)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/request.json", c->dir);
    json_t *j = load_json(path, why, cap);
    if (j == NULL)
        return -1;
    int rc = -1;
    const char *method = json_string_value(json_object_get(j, "method"));
    const char *p = json_string_value(json_object_get(j, "path"));
    json_t *headers = json_object_get(j, "headers");
    json_t *bf = json_object_get(j, "body_file");
    if (method == NULL || p == NULL || (headers && !json_is_object(headers)) ||
        (bf && !json_is_string(bf))) {
        snprintf(why, cap,
                 "%s: needs \"method\" and \"path\" strings, \"headers\" an object "
                 "and \"body_file\" a string",
                 path);
        goto out;
    }
    const char *q = strchr(p, '?');
    c->req.method = strdup(method);
    c->req.path = q ? strndup(p, (size_t)(q - p)) : strdup(p);
    c->req.query = strdup(q ? q + 1 : "");
    const char *key;
    json_t *val;
    json_object_foreach(headers, key, val)
    {
        if (!json_is_string(val)) {
            snprintf(why, cap, "%s: header %s is not a string", path, key);
            goto out;
        }
        if (cx_conf__req_set_header(&c->req, key, json_string_value(val)) != 0)
            goto nomem;
    }
    if (bf) {
        char bp[8448];
        snprintf(bp, sizeof bp, "%s/%s", c->dir, json_string_value(bf));
        c->req.body = read_all(bp, MAX_BODY, &c->req.body_len);
        if (c->req.body == NULL) {
            snprintf(why, cap, "%s: cannot read body_file %s", path, json_string_value(bf));
            goto out;
        }
    } else {
        c->req.body = strdup("");
    }
    if (!c->req.method || !c->req.path || !c->req.query || !c->req.body)
        goto nomem;
    rc = 0;
    goto out;
nomem:
    snprintf(why, cap, "out of memory");
out:
    json_decref(j);
    return rc;
}

static int load_command(const cx_conf_suite_t *s, cx_conf_case_t *c, char *why, size_t cap)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/command.json", c->dir);
    json_t *j = load_json(path, why, cap);
    if (j == NULL)
        return -1;
    const char *capability = json_string_value(json_object_get(j, "capability"));
    json_t *cmd = json_object_get(j, "command");
    if (capability == NULL || !json_is_object(cmd)) {
        snprintf(why, cap,
                 "%s: needs \"capability\" (a string) and \"command\" (the canonical "
                 "command as proto3 JSON)",
                 path);
        json_decref(j);
        return -1;
    }
    (void)s;
    snprintf(c->capability, sizeof c->capability, "%s", capability);
    /* Without "type", the command message of the capability (the schema has one per outbound
     * capability), and its result beside it (...Command -> ...Result). */
    if (json_object_get(j, "type") == NULL) {
        size_t n;
        const cx_msg_meta_t *const *all = cx_schema_all(&n);
        for (size_t i = 0; i < n; i++)
            if (all[i]->kind == CX_KIND_COMMAND && all[i]->capability &&
                strcmp(all[i]->capability, capability) == 0) {
                json_object_set_new(j, "type", json_string(all[i]->full_name));
                break;
            }
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    size_t tl = type ? strlen(type) : 0;
    if (json_object_get(j, "result_type") == NULL && tl > 7 &&
        strcmp(type + tl - 7, "Command") == 0) {
        char rt[256];
        cx_conf__fmt(rt, sizeof rt, "%.*sResult", (int)(tl - 7), type);
        if (cx_schema_find(rt))
            json_object_set_new(j, "result_type", json_string(rt));
    }
    c->command = j;
    return 0;
}

static int add_case(cx_conf_suite_t *s, const char *dir, const char *name, int kind,
                    json_t *root_accounts, char *why, size_t cap)
{
    if (s->n_cases == MAX_CASES) {
        snprintf(why, cap, "more than %d fixture cases", MAX_CASES);
        return -1;
    }
    cx_conf_case_t *cases = realloc(s->cases, (s->n_cases + 1) * sizeof *cases);
    if (cases == NULL) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    s->cases = cases;
    cx_conf_case_t *c = &s->cases[s->n_cases];
    memset(c, 0, sizeof *c);
    s->n_cases++;
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->kind = kind;
    char p[8192];
    snprintf(p, sizeof p, "%s/secrets", dir);
    if (is_dir(p))
        cx_conf__fmt(c->secrets_dir, sizeof c->secrets_dir, "%s", p);
    else {
        snprintf(p, sizeof p, "%s/secrets", s->fixtures);
        if (is_dir(p))
            cx_conf__fmt(c->secrets_dir, sizeof c->secrets_dir, "%s", p);
    }
    snprintf(p, sizeof p, "%s/accounts.json", dir);
    json_t *acc = NULL;
    if (is_file(p)) {
        acc = load_json(p, why, cap);
        if (acc == NULL)
            return -1;
    } else if (root_accounts) {
        acc = json_incref(root_accounts);
    }
    if (acc) {
        json_t *mine = json_object_get(acc, s->c->manifest->id);
        if (mine && !json_is_object(mine)) {
            snprintf(why, cap, "%s: accounts.json: \"%s\" must be an object", name,
                     s->c->manifest->id);
            json_decref(acc);
            return -1;
        }
        c->accounts = mine ? json_incref(mine) : NULL;
        json_decref(acc);
    }
    if (c->secrets_dir[0]) {
        char kb[256];
        long kl = cx_conf__read_secret(c, "runtime", "pseudonym_key", kb, sizeof kb);
        if (kl > 0) {
            memcpy(c->pkey, kb, (size_t)kl);
            c->pkey_len = (size_t)kl;
        }
    }
    snprintf(p, sizeof p, "%s/expect.json", dir);
    if (is_file(p) && (c->expect = load_json(p, why, cap)) == NULL)
        return -1;
    json_t *conf = NULL;
    snprintf(p, sizeof p, "%s/conformance.json", dir);
    if (strcmp(name, ".") != 0 && is_file(p) && (conf = load_json(p, why, cap)) == NULL)
        return -1;
    int rc =
        kind == CX_CONF_CASE_REQUEST ? load_request(c, why, cap) : load_command(s, c, why, cap);
    if (rc != 0) {
        json_decref(conf);
        return -1;
    }
    /* The clock: conformance.json, else the Standard Webhooks timestamp (so its tolerance
     * holds), else a fixed instant. */
    json_t *now = conf ? json_object_get(conf, "now") : NULL;
    if (now == NULL && s->config)
        now = json_object_get(s->config, "now");
    cx_request_t v = cx_conf__req_view(&c->req);
    const char *ts =
        kind == CX_CONF_CASE_REQUEST ? cx_request_header(&v, "webhook-timestamp") : NULL;
    if (json_is_integer(now))
        c->now = json_integer_value(now);
    else if (ts && strtoll(ts, NULL, 10) > 0)
        c->now = strtoll(ts, NULL, 10);
    else
        c->now = CX_CONF_DEFAULT_NOW;
    json_t *sgj = conf ? json_object_get(conf, "signing") : NULL;
    if (sgj == NULL && s->config)
        sgj = json_object_get(s->config, "signing");
    if (kind == CX_CONF_CASE_REQUEST) {
        if (sgj) {
            if (declared_signing(&c->signing, sgj, why, cap) != 0) {
                json_decref(conf);
                return -1;
            }
        } else {
            detect_signing(s, c);
        }
    }
    json_decref(conf);
    return 0;
}

static int walk(cx_conf_suite_t *s, const char *dir, const char *rel, json_t *root_accounts,
                int depth, char *why, size_t cap)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/request.json", dir);
    if (is_file(p))
        return add_case(s, dir, rel, CX_CONF_CASE_REQUEST, root_accounts, why, cap);
    snprintf(p, sizeof p, "%s/command.json", dir);
    if (is_file(p))
        return add_case(s, dir, rel, CX_CONF_CASE_COMMAND, root_accounts, why, cap);
    if (depth > 8)
        return 0;
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0) {
        snprintf(why, cap, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        if (rc == 0 && nm[0] != '.' && strcmp(nm, "secrets") != 0) {
            char sub[8192], srel[8192];
            snprintf(sub, sizeof sub, "%s/%s", dir, nm);
            if (strcmp(rel, ".") == 0)
                snprintf(srel, sizeof srel, "%s", nm);
            else
                snprintf(srel, sizeof srel, "%s/%s", rel, nm);
            if (is_dir(sub))
                rc = walk(s, sub, srel, root_accounts, depth + 1, why, cap);
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

int cx_conf__suite_load(cx_conf_suite_t *s, const cx_connector_t *c, const char *source,
                        const char *fixtures, char *why, size_t cap)
{
    memset(s, 0, sizeof *s);
    s->c = c;
    s->source = source;
    snprintf(s->fixtures, sizeof s->fixtures, "%s", fixtures);
    size_t fl = strlen(s->fixtures);
    while (fl > 1 && s->fixtures[fl - 1] == '/')
        s->fixtures[--fl] = '\0';
    if (!is_dir(s->fixtures)) {
        snprintf(why, cap, "fixture directory %s: %s", fixtures,
                 errno ? strerror(errno) : "not a directory");
        return -1;
    }
    cx_error_t err;
    cx_error_clear(&err);
    s->runtime_accepts = cx_connector_check(c, &err) == 0;
    if (!s->runtime_accepts)
        snprintf(s->refused, sizeof s->refused, "%s", err.message);
    char p[8192];
    snprintf(p, sizeof p, "%s/conformance.json", s->fixtures);
    if (is_file(p) && (s->config = load_json(p, why, cap)) == NULL)
        return -1;
    json_t *acc = NULL;
    snprintf(p, sizeof p, "%s/accounts.json", s->fixtures);
    snprintf(p, sizeof p, "%s/request.json", s->fixtures);
    int single = is_file(p);
    snprintf(p, sizeof p, "%s/command.json", s->fixtures);
    single |= is_file(p);
    snprintf(p, sizeof p, "%s/accounts.json", s->fixtures);
    if (!single && is_file(p) && (acc = load_json(p, why, cap)) == NULL)
        return -1;
    int rc = walk(s, s->fixtures, ".", acc, 0, why, cap);
    json_decref(acc);
    return rc;
}

void cx_conf__suite_free(cx_conf_suite_t *s)
{
    for (size_t i = 0; i < s->n_cases; i++) {
        cx_conf_case_t *c = &s->cases[i];
        cx_conf__req_free(&c->req);
        json_decref(c->expect);
        json_decref(c->accounts);
        json_decref(c->command);
    }
    free(s->cases);
    json_decref(s->config);
    memset(s, 0, sizeof *s);
}

int cx_conf__is_webhook(const cx_conf_case_t *c)
{
    return c->kind == CX_CONF_CASE_REQUEST && c->req.method && strcmp(c->req.method, "POST") == 0;
}

size_t cx_conf__n_requests(const cx_conf_suite_t *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_cases; i++)
        n += cx_conf__is_webhook(&s->cases[i]);
    return n;
}

int cx_conf__expected_status(const cx_conf_case_t *c)
{
    json_t *st = c->expect ? json_object_get(c->expect, "status") : NULL;
    return json_is_integer(st) ? (int)json_integer_value(st) : 200;
}

/* ---- Secrets variants --------------------------------------------------------------------- */

static int write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, data, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = T[v >> 18 & 63];
        out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < n ? T[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? T[v & 63] : '=';
    }
    out[o] = '\0';
}

/* A value of the same kind as the original but different: a whsec_ key stays a whsec_ key
 * (a malformed one would be a configuration error, 503, rather than a bad signature). */
static void wrong_value(const char *orig, size_t len, char *out, size_t cap)
{
    if (len > 6 && strncmp(orig, "whsec_", 6) == 0) {
        unsigned char k[32];
        for (size_t i = 0; i < sizeof k; i++)
            k[i] = (unsigned char)(0xA5 ^ (i * 37));
        char enc[64];
        b64(k, sizeof k, enc);
        snprintf(out, cap, "whsec_%s", enc);
        return;
    }
    snprintf(out, cap, "conformance-wrong-%zu-0f3c9a", len);
}

static int copy_tree(const char *src, const char *dst, int mode, int depth, const char *sign_name,
                     const char *sign_value)
{
    if (mkdir(dst, 0700) != 0 && errno != EEXIST)
        return -1;
    struct dirent **list;
    int n = scandir(src, &list, NULL, alphasort);
    if (n < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        char sp[8192], dp[8192];
        snprintf(sp, sizeof sp, "%s/%s", src, nm);
        snprintf(dp, sizeof dp, "%s/%s", dst, nm);
        size_t nl = strlen(nm);
        if (rc == 0 && nm[0] != '.') {
            if (is_dir(sp) && depth < 8) {
                rc = copy_tree(sp, dp, mode, depth + 1, depth == 0 ? sign_name : NULL, sign_value);
            } else if (is_file(sp) && mode == 2) {
                size_t len;
                char *v = read_all(sp, 1 << 20, &len);
                rc = v ? write_file(dp, v, len) : -1;
                free(v);
            } else if (is_file(sp) && !(nl > 9 && strcmp(nm + nl - 9, ".previous") == 0)) {
                size_t len;
                char *v = read_all(sp, 1 << 20, &len);
                if (v == NULL) {
                    rc = -1;
                } else {
                    size_t vl = len;
                    while (vl && (v[vl - 1] == '\n' || v[vl - 1] == '\r'))
                        vl--;
                    char w[256];
                    wrong_value(v, vl, w, sizeof w);
                    rc = write_file(dp, w, strlen(w));
                    if (rc == 0 && mode == 1) {
                        /* The previous value is the one that signed the fixture (itself a
                         * previous value when the fixture was captured mid-rotation). */
                        char pp[8300];
                        snprintf(pp, sizeof pp, "%s.previous", dp);
                        if (sign_name && strcmp(nm, sign_name) == 0 && sign_value)
                            rc = write_file(pp, sign_value, strlen(sign_value));
                        else
                            rc = write_file(pp, v, len);
                    }
                    free(v);
                }
            }
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

/* copy_tree for the top of a secrets directory: the signing secret is only special inside the
 * connector's own folder. */
static int copy_tree_top(const char *src, const char *dst, int mode, const char *connector,
                         const char *sign_name, const char *sign_value)
{
    if (mkdir(dst, 0700) != 0 && errno != EEXIST)
        return -1;
    struct dirent **list;
    int n = scandir(src, &list, NULL, alphasort);
    if (n < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        char sp[8192], dp[8192];
        snprintf(sp, sizeof sp, "%s/%s", src, nm);
        snprintf(dp, sizeof dp, "%s/%s", dst, nm);
        if (rc == 0 && nm[0] != '.' && is_dir(sp))
            rc = copy_tree(sp, dp, mode, 1, strcmp(nm, connector) == 0 ? sign_name : NULL,
                           sign_value);
        free(list[i]);
    }
    free(list);
    return rc;
}

int cx_conf__secrets_variant(const cx_conf_suite_t *s, const cx_conf_case_t *c, int mode, char *out,
                             size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/cx-conformance-secrets-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(out) == NULL)
        return -1;
    /* The connector's own directory holds the signing secret. */
    static char value[4096];
    const char *sign_name = NULL;
    if (c->signing.secret_file[0] &&
        cx_conf__read_secret(c, s->c->manifest->id, c->signing.secret_file, value, sizeof value) >=
            0)
        sign_name = c->signing.secret;
    char sub[4096];
    cx_conf__fmt(sub, sizeof sub, "%s", s->c->manifest->id);
    if (c->secrets_dir[0] && copy_tree_top(c->secrets_dir, out, mode, sub, sign_name, value) != 0) {
        cx_conf__rmtree(out);
        return -1;
    }
    return 0;
}

void cx_conf__rmtree(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, NULL);
    if (n >= 0) {
        for (int i = 0; i < n; i++) {
            const char *nm = list[i]->d_name;
            if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
                char p[8192];
                snprintf(p, sizeof p, "%s/%s", dir, nm);
                struct stat st;
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                    cx_conf__rmtree(p);
                else
                    unlink(p);
            }
            free(list[i]);
        }
        free(list);
    }
    rmdir(dir);
}
