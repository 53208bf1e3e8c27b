/* The file audit store (cx/audit.h): JSON lines, one file per tenant, checkpoints apart.
 *
 *   <dir>/<tenant>.jsonl                 the records, one proto3 JSON line each, append-only
 *   <dir>/<tenant>.lock                  flock(2) target: serialises writers across processes
 *   <checkpoint dir>/<tenant>.head.json  the head checkpoint
 *   <checkpoint dir>/<tenant>.genesis.json  the genesis checkpoint (after retention)
 *
 * Appends take the tenant's lock, read the last line to learn the head, compare it with the
 * caller's expectation (compare-and-set), write every line of the call with one write(2) on an
 * O_APPEND descriptor, fsync (per append call; CX_AUDIT_FSYNC_NONE skips it), then replace the
 * head checkpoint atomically (temporary file, fsync, rename, fsync of the directory).
 *
 * Crash cases:
 *   - a torn last line (the process died inside write): the next append, holding the lock,
 *     cuts the file back to its last newline. That record was never acknowledged and no
 *     checkpoint covers it, so nothing verifiable is lost;
 *   - a write error (ENOSPC): the file is cut back to its size before the call;
 *   - death between the records and the checkpoint: the records are valid but after the
 *     checkpoint ("unanchored" in the report) until the next append moves it;
 *   - retention: the genesis checkpoint is written first, then the log is rewritten without
 *     the covered prefix into a temporary file renamed over the log. Death in between leaves
 *     covered records that verify skips.
 * Readers (scan) need no lock: a rename leaves their open descriptor on a consistent file, and
 * a partial last line (an append in flight) is ignored.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* flock */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outbound/audit_internal.h"

typedef struct file_store_s {
    cx_audit_store_t base; /* first: the public view */
    char *dir;
    char *ckdir;
    cx_audit_fsync_t fsync;
} file_store_t;

#define PATH_CAP 4096

static int path_of(char *out, const char *dir, const char *tenant, const char *suffix)
{
    int n = snprintf(out, PATH_CAP, "%s/%s%s", dir, tenant, suffix);
    return n < 0 || n >= PATH_CAP ? -1 : 0;
}

static int io_err(cx_error_t *err, const char *what, const char *tenant)
{
    return cx_error_set(err, CX_EIO, NULL, "audit file store: %s (%s): %s", what, tenant,
                        strerror(errno));
}

static int mkdirs(const char *path)
{
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* The tenant's writer lock; -1 on failure. Released by close(). */
static int lock_tenant(file_store_t *s, const char *tenant)
{
    char path[PATH_CAP];
    if (path_of(path, s->dir, tenant, ".lock") != 0)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static const char *cp_suffix(cx_audit_cp_kind_t kind)
{
    return kind == CX_AUDIT_CP_GENESIS ? ".genesis.json" : ".head.json";
}

static int read_cp(file_store_t *s, const char *tenant, cx_audit_cp_kind_t kind,
                   cx_audit_checkpoint_t *cp, cx_error_t *err)
{
    char path[PATH_CAP], buf[1024];
    if (path_of(path, s->ckdir, tenant, cp_suffix(kind)) != 0)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: path too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return cx_error_set(err, CX_ENOTFOUND, NULL, "no checkpoint");
        return io_err(err, "cannot open a checkpoint", tenant);
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf)
            break;
    }
    close(fd);
    if (n == sizeof buf || cx__audit_cp_parse(buf, n, cp) != 0)
        return cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                            "audit file store: %s: unreadable checkpoint", tenant);
    return 0;
}

static int write_cp(file_store_t *s, const char *tenant, const cx_audit_checkpoint_t *cp,
                    cx_error_t *err)
{
    char path[PATH_CAP], tmp[PATH_CAP], buf[1024];
    long n = cx__audit_cp_format(cp, buf, sizeof buf - 1);
    if (n < 0 || path_of(path, s->ckdir, tenant, cp_suffix(cp->kind)) != 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: checkpoint too long");
    buf[n++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_err(err, "cannot write a checkpoint", tenant);
    if (write_all(fd, buf, (size_t)n) != 0 ||
        (s->fsync == CX_AUDIT_FSYNC_APPEND && fsync(fd) != 0)) {
        int rc = io_err(err, "cannot write a checkpoint", tenant);
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int rc = io_err(err, "cannot replace a checkpoint", tenant);
        unlink(tmp);
        return rc;
    }
    if (s->fsync == CX_AUDIT_FSYNC_APPEND)
        fsync_dir(s->ckdir);
    return 0;
}

/* The head from the log's last complete line, or from the genesis when the log is empty.
 * With fd >= 0 opened read-write and the lock held, a torn last line is cut off (repair);
 * *size receives the file's (repaired) size. */
static int tail_head(file_store_t *s, const char *tenant, int fd, int repair, cx_audit_head_t *h,
                     off_t *size, cx_error_t *err)
{
    memset(h, 0, sizeof *h);
    *size = 0;
    struct stat stt;
    if (fd >= 0) {
        if (fstat(fd, &stt) != 0)
            return io_err(err, "cannot stat the log", tenant);
        *size = stt.st_size;
    }
    off_t orig = *size;
    if (*size > 0) {
        size_t want = CX_AUDIT_LINE_MAX + 2;
        size_t win = (size_t)*size < want ? (size_t)*size : want;
        char *buf = malloc(win);
        if (buf == NULL)
            return cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
        size_t got = 0;
        while (got < win) {
            ssize_t r = pread(fd, buf + got, win - got, *size - (off_t)win + (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != win) {
            free(buf);
            return io_err(err, "cannot read the log", tenant);
        }
        size_t end = win; /* one past the last complete line's newline */
        while (end > 0 && buf[end - 1] != '\n')
            end--;
        if (end < win) { /* a torn last line: an append that died half-way */
            if (end == 0 && win < (size_t)*size) {
                free(buf);
                return cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                                    "audit file store: %s: unreadable log tail", tenant);
            }
            off_t cut = *size - (off_t)(win - end);
            if (repair) {
                if (ftruncate(fd, cut) != 0) {
                    free(buf);
                    return io_err(err, "cannot repair a torn last line", tenant);
                }
                if (s->fsync == CX_AUDIT_FSYNC_APPEND)
                    fsync(fd);
            }
            *size = cut;
        }
        if (end > 0) {
            size_t start = end - 1;
            while (start > 0 && buf[start - 1] != '\n')
                start--;
            if (start == 0 && win < (size_t)orig) {
                free(buf);
                return cx_error_set(err, CX_EAUDIT_TAMPERED, NULL,
                                    "audit file store: %s: last record too long", tenant);
            }
            int rc = cx__audit_line_head(buf + start, end - 1 - start, h);
            free(buf);
            if (rc != 0)
                return cx_error_set(err, rc, NULL,
                                    "audit file store: %s: the last record is unreadable", tenant);
            return 0;
        }
        free(buf);
    }
    /* Empty log: the chain continues from the genesis, if retention dropped everything. */
    cx_audit_checkpoint_t g;
    cx_error_t e2 = {0};
    int rc = read_cp(s, tenant, CX_AUDIT_CP_GENESIS, &g, &e2);
    if (rc == CX_ENOTFOUND)
        return 0;
    if (rc != 0)
        return cx_error_set(err, rc, NULL, "%s", e2.message);
    h->seq = g.seq;
    memcpy(h->mac, g.mac, sizeof h->mac);
    return 0;
}

static int open_log(file_store_t *s, const char *tenant, int flags)
{
    char path[PATH_CAP];
    if (path_of(path, s->dir, tenant, ".jsonl") != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, flags | O_CLOEXEC, 0600);
}

static int file_head(cx_audit_store_t *base, const char *tenant, cx_audit_head_t *out,
                     cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    if (!cx__audit_tenant_ok(tenant))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    int fd = open_log(s, tenant, O_RDONLY);
    if (fd < 0 && errno != ENOENT)
        return io_err(err, "cannot open the log", tenant);
    off_t size;
    int rc = tail_head(s, tenant, fd, 0, out, &size, err);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int file_append(cx_audit_store_t *base, const char *tenant, const cx_audit_head_t *expect,
                       const cx_audit_line_t *lines, size_t n, const cx_audit_checkpoint_t *cp,
                       cx_audit_head_t *actual, cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || n == 0 || lines == NULL || expect == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: bad append");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lines[i].len == 0 || memchr(lines[i].json, '\n', lines[i].len))
            return cx_error_set(err, CX_EINVAL, NULL, "audit file store: bad record line");
        total += lines[i].len + 1;
    }
    char *buf = malloc(total);
    if (buf == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + off, lines[i].json, lines[i].len);
        off += lines[i].len;
        buf[off++] = '\n';
    }
    int rc = 0, created = 0;
    int lk = lock_tenant(s, tenant);
    if (lk < 0) {
        free(buf);
        return io_err(err, "cannot take the tenant lock", tenant);
    }
    int fd = open_log(s, tenant, O_RDWR | O_APPEND);
    if (fd < 0 && errno == ENOENT) {
        fd = open_log(s, tenant, O_RDWR | O_APPEND | O_CREAT);
        created = 1;
    }
    if (fd < 0) {
        rc = io_err(err, "cannot open the log", tenant);
        goto out;
    }
    cx_audit_head_t cur;
    off_t size;
    rc = tail_head(s, tenant, fd, 1, &cur, &size, err);
    if (rc != 0)
        goto out;
    if (cur.seq != expect->seq || strcmp(cur.mac, expect->mac) != 0) {
        if (actual)
            *actual = cur;
        rc = CX_ECONFLICT; /* not an error worth recording: the caller relinks */
        goto out;
    }
    if (write_all(fd, buf, total) != 0) {
        rc = io_err(err, "cannot append", tenant);
        /* Leave no partial record behind: the caller was told it failed. */
        if (ftruncate(fd, size) != 0)
            (void)0; /* the next append repairs a torn line anyway */
        goto out;
    }
    if (s->fsync == CX_AUDIT_FSYNC_APPEND) {
        if (fsync(fd) != 0) {
            rc = io_err(err, "fsync failed", tenant);
            goto out;
        }
        if (created)
            fsync_dir(s->dir);
    }
    /* The records are durable. A checkpoint that cannot be written leaves them unanchored
     * until the next append writes it; failing now would make the caller append them twice. */
    if (cp)
        (void)write_cp(s, tenant, cp, NULL);
out:
    if (fd >= 0)
        close(fd);
    close(lk);
    free(buf);
    return rc;
}

static int file_scan(cx_audit_store_t *base, const char *tenant, cx_audit_scan_fn fn, void *ud,
                     cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || fn == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: bad scan");
    int fd = open_log(s, tenant, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return io_err(err, "cannot open the log", tenant);
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return io_err(err, "cannot read the log", tenant);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t no = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        no++;
        if (line[len - 1] != '\n')
            break; /* an append in flight, or a torn line the next append cuts */
        line[--len] = '\0';
        char pos[32];
        snprintf(pos, sizeof pos, "line %" PRIu64, no);
        cx_audit_line_t l = {0, NULL, line, (size_t)len, pos};
        if ((rc = fn(ud, &l)) != 0)
            break;
    }
    if (rc == 0 && ferror(f))
        rc = io_err(err, "cannot read the log", tenant);
    free(line);
    fclose(f);
    return rc;
}

static int file_cp_get(cx_audit_store_t *base, const char *tenant, cx_audit_cp_kind_t kind,
                       cx_audit_checkpoint_t *out, cx_error_t *err)
{
    if (!cx__audit_tenant_ok(tenant))
        return cx_error_set(err, CX_EINVAL, "tenant_id", "audit: bad tenant");
    return read_cp((file_store_t *)base, tenant, kind, out, err);
}

static int file_cp_put(cx_audit_store_t *base, const char *tenant, const cx_audit_checkpoint_t *cp,
                       cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    if (!cx__audit_tenant_ok(tenant) || cp == NULL)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: bad checkpoint");
    int lk = lock_tenant(s, tenant);
    if (lk < 0)
        return io_err(err, "cannot take the tenant lock", tenant);
    cx_audit_checkpoint_t cur;
    int rc = 0;
    if (read_cp(s, tenant, cp->kind, &cur, NULL) != 0 || cur.seq <= cp->seq)
        rc = write_cp(s, tenant, cp, err);
    close(lk);
    return rc;
}

static int file_truncate(cx_audit_store_t *base, const char *tenant, const cx_audit_checkpoint_t *g,
                         uint64_t *dropped, cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    if (dropped)
        *dropped = 0;
    if (!cx__audit_tenant_ok(tenant) || g == NULL || g->kind != CX_AUDIT_CP_GENESIS)
        return cx_error_set(err, CX_EINVAL, NULL, "audit file store: bad genesis");
    int lk = lock_tenant(s, tenant);
    if (lk < 0)
        return io_err(err, "cannot take the tenant lock", tenant);
    int rc = 0;
    FILE *in = NULL, *out = NULL;
    char *line = NULL;
    char path[PATH_CAP], tmp[PATH_CAP];
    cx_audit_checkpoint_t cur;
    uint64_t gseq = g->seq;
    if (read_cp(s, tenant, CX_AUDIT_CP_GENESIS, &cur, NULL) == 0 && cur.seq >= g->seq)
        gseq = cur.seq; /* a later genesis is stored already: keep it */
    else if ((rc = write_cp(s, tenant, g, err)) != 0)
        goto out;
    if (path_of(path, s->dir, tenant, ".jsonl") != 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        rc = cx_error_set(err, CX_EINVAL, NULL, "audit file store: path too long");
        goto out;
    }
    in = fopen(path, "re");
    if (in == NULL) {
        if (errno != ENOENT)
            rc = io_err(err, "cannot open the log", tenant);
        goto out;
    }
    int ofd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ofd < 0 || (out = fdopen(ofd, "w")) == NULL) {
        if (ofd >= 0)
            close(ofd);
        rc = io_err(err, "cannot write the new log", tenant);
        goto out;
    }
    size_t cap = 0;
    ssize_t len;
    uint64_t n = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        if (line[len - 1] != '\n')
            break; /* torn: dropped with the rewrite */
        cx_audit_head_t h;
        /* Only records the genesis covers go; anything unreadable stays as evidence. */
        if (cx__audit_line_head(line, (size_t)len - 1, &h) == 0 && h.seq <= gseq) {
            n++;
            continue;
        }
        if (fwrite(line, 1, (size_t)len, out) != (size_t)len) {
            rc = io_err(err, "cannot write the new log", tenant);
            goto out;
        }
    }
    if (ferror(in) || fflush(out) != 0 ||
        (s->fsync == CX_AUDIT_FSYNC_APPEND && fsync(fileno(out)) != 0)) {
        rc = io_err(err, "cannot write the new log", tenant);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = io_err(err, "cannot replace the log", tenant);
        goto out;
    }
    if (s->fsync == CX_AUDIT_FSYNC_APPEND)
        fsync_dir(s->dir);
    if (dropped)
        *dropped = n;
out:
    free(line);
    if (in)
        fclose(in);
    if (out) {
        fclose(out);
        if (rc != 0)
            unlink(tmp);
    }
    close(lk);
    return rc;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static int file_tenants(cx_audit_store_t *base, cx_audit_tenant_fn fn, void *ud, cx_error_t *err)
{
    file_store_t *s = (file_store_t *)base;
    DIR *d = opendir(s->dir);
    if (d == NULL)
        return io_err(err, "cannot list the audit directory", "*");
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 6 || strcmp(de->d_name + len - 6, ".jsonl") != 0)
            continue;
        char t[CX_AUDIT_TENANT_SIZE];
        if (len - 6 >= sizeof t)
            continue;
        memcpy(t, de->d_name, len - 6);
        t[len - 6] = '\0';
        if (!cx__audit_tenant_ok(t))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (nn == NULL) {
                rc = cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
                break;
            }
            names = nn;
            cap = nc;
        }
        if ((names[n] = strdup(t)) == NULL) {
            rc = cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = fn(ud, names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

static void file_destroy(cx_audit_store_t *base)
{
    file_store_t *s = (file_store_t *)base;
    if (s == NULL)
        return;
    free(s->dir);
    free(s->ckdir);
    free(s);
}

static const cx_audit_store_ops_t FILE_OPS = {
    .head = file_head,
    .append = file_append,
    .scan = file_scan,
    .checkpoint_get = file_cp_get,
    .checkpoint_put = file_cp_put,
    .truncate = file_truncate,
    .tenants = file_tenants,
    .destroy = file_destroy,
};

int cx_audit_store_file(const char *dir, const cx_audit_file_options_t *opts,
                        cx_audit_store_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    if (dir == NULL || dir[0] == '\0' || strlen(dir) > 2048)
        return cx_error_set(err, CX_EINVAL, "dir", "audit file store: no directory");
    if (opts && opts->fsync != CX_AUDIT_FSYNC_APPEND && opts->fsync != CX_AUDIT_FSYNC_NONE)
        return cx_error_set(err, CX_EINVAL, "fsync", "audit file store: bad fsync mode");
    file_store_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
    s->base.ops = &FILE_OPS;
    s->fsync = opts ? opts->fsync : CX_AUDIT_FSYNC_APPEND;
    s->dir = strdup(dir);
    if (opts && opts->checkpoint_dir && opts->checkpoint_dir[0]) {
        s->ckdir = strlen(opts->checkpoint_dir) <= 2048 ? strdup(opts->checkpoint_dir) : NULL;
    } else if (s->dir) {
        size_t n = strlen(dir) + sizeof "/checkpoints";
        if ((s->ckdir = malloc(n)) != NULL)
            snprintf(s->ckdir, n, "%s/checkpoints", dir);
    }
    if (s->dir == NULL || s->ckdir == NULL) {
        file_destroy(&s->base);
        return cx_error_set(err, CX_ENOMEM, NULL, "audit file store: out of memory");
    }
    if (mkdirs(s->dir) != 0 || mkdirs(s->ckdir) != 0) {
        int rc = cx_error_set(err, CX_EIO, "dir", "audit file store: cannot create %s: %s",
                              s->ckdir, strerror(errno));
        file_destroy(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}
