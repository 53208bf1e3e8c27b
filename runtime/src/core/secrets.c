#define _POSIX_C_SOURCE 200809L
#include "core/secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct entry_s {
    struct entry_s *next;
    char *id; /* "connector\0account\0name" flattened as "connector/account/name" */
    int found;
    cx_secret_value_t value;
} entry_t;

struct cx_secrets_s {
    char *dir;
    pthread_rwlock_t lock;
    entry_t *entries;
};

int cx__secrets_open(const char *dir, cx_secrets_t **out)
{
    cx_secrets_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return CX_ENOMEM;
    if (dir && (s->dir = strdup(dir)) == NULL) {
        free(s);
        return CX_ENOMEM;
    }
    pthread_rwlock_init(&s->lock, NULL);
    *out = s;
    return 0;
}

static void drop(entry_t *e)
{
    while (e) {
        entry_t *next = e->next;
        /* Secrets do not linger in freed memory. */
        memset(&e->value, 0, sizeof e->value);
        free(e->id);
        free(e);
        e = next;
    }
}

void cx__secrets_close(cx_secrets_t *s)
{
    if (s == NULL)
        return;
    drop(s->entries);
    pthread_rwlock_destroy(&s->lock);
    free(s->dir);
    free(s);
}

void cx__secrets_reload(cx_secrets_t *s)
{
    pthread_rwlock_wrlock(&s->lock);
    entry_t *old = s->entries;
    s->entries = NULL;
    pthread_rwlock_unlock(&s->lock);
    drop(old);
}

/* Reads a whole small file; strips one trailing "\n" or "\r\n". Returns length or -1. */
static long read_file(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap) { /* too large to be a secret we can hold: refuse */
            close(fd);
            return -1;
        }
    }
    close(fd);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    return (long)n;
}

static int valid_segment(const char *s)
{
    return s && s[0] && s[0] != '.' && strchr(s, '/') == NULL;
}

static void load(const cx_secrets_t *s, const char *connector, const char *account,
                 const char *name, entry_t *e)
{
    char path[4096];
    long n = -1;
    if (account)
        snprintf(path, sizeof path, "%s/%s/accounts/%s/%s", s->dir, connector, account, name);
    else
        snprintf(path, sizeof path, "%s/%s/%s", s->dir, connector, name);
    n = read_file(path, e->value.current, sizeof e->value.current);
    if (n < 0)
        return;
    e->found = 1;
    e->value.current_len = (size_t)n;
    strncat(path, ".previous", sizeof path - strlen(path) - 1);
    n = read_file(path, e->value.previous, sizeof e->value.previous);
    e->value.previous_len = n > 0 ? (size_t)n : 0;
}

static entry_t *lookup(entry_t *e, const char *id)
{
    for (; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

/* The bytes in use only: the value holds two 1 KiB buffers, and secrets are short. */
static void copy_value(cx_secret_value_t *out, const cx_secret_value_t *v)
{
    memcpy(out->current, v->current, v->current_len);
    out->current_len = v->current_len;
    memcpy(out->previous, v->previous, v->previous_len);
    out->previous_len = v->previous_len;
}

static int get_one(cx_secrets_t *s, const char *connector, const char *account, const char *name,
                   cx_secret_value_t *out)
{
    /* "connector/account/name" without printf: this runs for every signed request. */
    char id[1024]; /* three path segments of at most 255 bytes each */
    const char *parts[3] = {connector, account ? account : "", name};
    size_t len = 0;
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(parts[k]);
        if (len + n + 1 > sizeof id)
            return CX_ENOTFOUND; /* a segment longer than a file name */
        memcpy(id + len, parts[k], n);
        len += n;
        id[len++] = k < 2 ? '/' : '\0';
    }
    pthread_rwlock_rdlock(&s->lock);
    entry_t *e = lookup(s->entries, id);
    if (e) {
        int found = e->found;
        if (found)
            copy_value(out, &e->value);
        pthread_rwlock_unlock(&s->lock);
        return found ? 0 : CX_ENOTFOUND;
    }
    pthread_rwlock_unlock(&s->lock);

    entry_t *fresh = calloc(1, sizeof *fresh);
    if (fresh == NULL)
        return CX_ENOMEM;
    if ((fresh->id = strdup(id)) == NULL) {
        free(fresh);
        return CX_ENOMEM;
    }
    load(s, connector, account, name, fresh);
    pthread_rwlock_wrlock(&s->lock);
    e = lookup(s->entries, id);
    if (e == NULL) { /* another thread may have cached it meanwhile */
        fresh->next = s->entries;
        s->entries = fresh;
        e = fresh;
        fresh = NULL;
    }
    int found = e->found;
    if (found)
        copy_value(out, &e->value);
    pthread_rwlock_unlock(&s->lock);
    if (fresh) {
        fresh->next = NULL;
        drop(fresh);
    }
    return found ? 0 : CX_ENOTFOUND;
}

int cx__secrets_get(cx_secrets_t *s, const char *connector, const char *account,
                    const char *name, cx_secret_value_t *out)
{
    memset(out, 0, sizeof *out);
    if (s == NULL || s->dir == NULL || !valid_segment(connector) || !valid_segment(name) ||
        (account && !valid_segment(account)))
        return CX_ENOTFOUND;
    if (account && get_one(s, connector, account, name, out) == 0)
        return 0;
    return get_one(s, connector, NULL, name, out);
}
