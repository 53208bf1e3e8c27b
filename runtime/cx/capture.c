/* Captured requests: request.json + the body file (capture.h). */
#define _POSIX_C_SOURCE 200809L
#include "capture.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The largest request.json read (bytes). */
#define MAX_REQUEST_JSON (1u << 20)

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

void cx_capture_free(cx_capture_t *c)
{
    if (c == NULL)
        return;
    free(c->method);
    free(c->path);
    free(c->query);
    for (size_t i = 0; i < c->n_headers; i++) {
        free((char *)c->headers[i].name);
        free((char *)c->headers[i].value);
    }
    free(c->body);
    memset(c, 0, sizeof *c);
}

int cx_capture_load(const char *path, cx_capture_t *c, char *why, size_t cap)
{
    memset(c, 0, sizeof *c);
    char req_path[4200];
    if (cx_cli_is_dir(path)) {
        snprintf(c->dir, sizeof c->dir, "%s", path);
        snprintf(req_path, sizeof req_path, "%s/request.json", path);
    } else {
        snprintf(req_path, sizeof req_path, "%s", path);
        snprintf(c->dir, sizeof c->dir, "%s", path);
        char *slash = strrchr(c->dir, '/');
        if (slash == NULL)
            snprintf(c->dir, sizeof c->dir, ".");
        else if (slash == c->dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    char *text = NULL;
    size_t len = 0;
    int rc = cx_cli_read_file(req_path, MAX_REQUEST_JSON, &text, &len);
    if (rc == -2) {
        snprintf(why, cap, "%s: larger than %u bytes", req_path, MAX_REQUEST_JSON);
        return -1;
    }
    if (rc != 0) {
        snprintf(why, cap, "%s: %s", req_path, strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (root == NULL || !json_is_object(root)) {
        if (root)
            snprintf(why, cap, "%s: not a JSON object", req_path);
        else
            snprintf(why, cap, "%s:%d:%d: %s", req_path, jerr.line, jerr.column, jerr.text);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "method") && strcmp(key, "path") && strcmp(key, "headers") &&
            strcmp(key, "body_file")) {
            snprintf(why, cap,
                     "%s: unknown key '%.64s' (expected method, path, headers, body_file)",
                     req_path, key);
            goto fail;
        }
    }
    const char *method = json_string_value(json_object_get(root, "method"));
    const char *full = json_string_value(json_object_get(root, "path"));
    json_t *headers = json_object_get(root, "headers");
    json_t *body_file = json_object_get(root, "body_file");
    if (method == NULL || method[0] == '\0') {
        snprintf(why, cap, "%s: \"method\" must be a non-empty string", req_path);
        goto fail;
    }
    if (full == NULL || full[0] != '/') {
        snprintf(why, cap, "%s: \"path\" must be a string starting with '/'", req_path);
        goto fail;
    }
    if (headers && !json_is_object(headers)) {
        snprintf(why, cap, "%s: \"headers\" must be an object of strings", req_path);
        goto fail;
    }
    if (body_file && !json_is_string(body_file) && !json_is_null(body_file)) {
        snprintf(why, cap, "%s: \"body_file\" must be a string", req_path);
        goto fail;
    }
    c->method = dup_str(method);
    const char *q = strchr(full, '?');
    size_t plen = q ? (size_t)(q - full) : strlen(full);
    c->path = malloc(plen + 1);
    c->query = dup_str(q ? q + 1 : "");
    if (c->method == NULL || c->path == NULL || c->query == NULL)
        goto nomem;
    memcpy(c->path, full, plen);
    c->path[plen] = '\0';
    if (strncmp(c->path, "/webhook/", 9) == 0) {
        const char *id = c->path + 9;
        size_t n = strcspn(id, "/");
        if (n > 0 && n < sizeof c->connector) {
            memcpy(c->connector, id, n);
            c->connector[n] = '\0';
        }
    }
    json_object_foreach(headers, key, v)
    {
        if (!json_is_string(v)) {
            snprintf(why, cap, "%s: header '%.64s' must be a string", req_path, key);
            goto fail;
        }
        if (c->n_headers == CX_CAPTURE_MAX_HEADERS) {
            snprintf(why, cap, "%s: more than %d headers", req_path, CX_CAPTURE_MAX_HEADERS);
            goto fail;
        }
        char *name = dup_str(key), *value = dup_str(json_string_value(v));
        c->headers[c->n_headers].name = name;
        c->headers[c->n_headers].value = value;
        c->n_headers++;
        if (name == NULL || value == NULL)
            goto nomem;
    }
    const char *bf = json_string_value(body_file);
    if (bf && bf[0]) {
        char body_path[8400];
        if (bf[0] == '/')
            snprintf(body_path, sizeof body_path, "%s", bf);
        else
            snprintf(body_path, sizeof body_path, "%s/%s", c->dir, bf);
        rc = cx_cli_read_file(body_path, CX_CAPTURE_MAX_BODY, &c->body, &c->body_len);
        if (rc == -2) {
            snprintf(why, cap, "%s: larger than %u bytes", body_path, CX_CAPTURE_MAX_BODY);
            goto fail;
        }
        if (rc != 0) {
            snprintf(why, cap, "%s: %s", body_path, strerror(errno));
            goto fail;
        }
    } else {
        c->body = dup_str("");
        if (c->body == NULL)
            goto nomem;
    }
    json_decref(root);
    return 0;
nomem:
    snprintf(why, cap, "out of memory");
fail:
    json_decref(root);
    return -1;
}

cx_request_t cx_capture_request(const cx_capture_t *c)
{
    cx_request_t r = {c->method, c->path, c->query, c->headers, c->n_headers, c->body, c->body_len};
    return r;
}

int cx_capture_accounts(const cx_capture_t *c,
                        int (*add)(void *ud, const char *connector, const char *account,
                                   const char *tenant),
                        void *ud, char *why, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/accounts.json", c->dir);
    if (!cx_cli_is_file(path))
        return 0;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, cap, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    int rc = 0;
    const char *conn, *acc;
    json_t *accounts, *tenant;
    if (!json_is_object(root))
        goto bad;
    json_object_foreach(root, conn, accounts)
    {
        if (!json_is_object(accounts))
            goto bad;
        json_object_foreach(accounts, acc, tenant)
        {
            if (!json_is_string(tenant))
                goto bad;
            if (add(ud, conn, acc, json_string_value(tenant)) != 0) {
                snprintf(why, cap, "%s: cannot add account %.64s/%.64s", path, conn, acc);
                rc = -1;
                goto done;
            }
        }
    }
    goto done;
bad:
    snprintf(why, cap, "%s: expected {\"<connector>\": {\"<account_id>\": \"<tenant_id>\"}}", path);
    rc = -1;
done:
    json_decref(root);
    return rc;
}
