/* Crash isolation: every check runs in a child process of its own.
 *
 * The child runs the check and writes records to a pipe: progress lines ("P<text>\n", what it
 * is doing now) while it runs, and its verdict at the end ("R" + status + skip kind + text).
 * The parent reads the pipe until it closes or the check's time is up. A child that dies by a
 * signal, exits without a verdict or overruns its time fails its check, and the report says
 * what it was doing (its last progress line) and the tail of what it printed (ASan's report
 * of a crash, for one). The child runs in a process group of its own so a hang is ended with
 * everything it started.
 *
 * The child's stdout and stderr go to a temporary file: a connector printing to them cannot
 * garble the report, and the logging checks read that file too.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int g_progress_fd = -1;

void cx_conf__fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, cap, fmt, ap) < 0 && cap)
        buf[0] = '\0';
    va_end(ap);
}

static void vappend(cx_conf_result_t *r, const char *fmt, va_list ap)
{
    if (r->len + 2 >= sizeof r->text)
        return;
    if (r->len)
        r->text[r->len++] = '\n';
    int n = vsnprintf(r->text + r->len, sizeof r->text - r->len, fmt, ap);
    if (n < 0)
        n = 0;
    r->len += (size_t)n;
    if (r->len >= sizeof r->text) {
        r->len = sizeof r->text - 1;
        memcpy(r->text + r->len - 4, " ...", 4);
    }
    r->text[r->len] = '\0';
}

void cx_conf__fail(cx_conf_result_t *r, const char *fmt, ...)
{
    if (r->status == CX_CONF_SKIP) { /* a failure beats a skip: drop the skip reason */
        r->len = 0;
        r->text[0] = '\0';
    }
    r->status = CX_CONF_FAIL;
    va_list ap;
    va_start(ap, fmt);
    vappend(r, fmt, ap);
    va_end(ap);
}

void cx_conf__skip(cx_conf_result_t *r, int kind, const char *fmt, ...)
{
    if (r->status == CX_CONF_FAIL)
        return;
    r->status = CX_CONF_SKIP;
    r->skip_kind = kind;
    r->len = 0;
    va_list ap;
    va_start(ap, fmt);
    vappend(r, fmt, ap);
    va_end(ap);
}

void cx_conf__note(cx_conf_result_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vappend(r, fmt, ap);
    va_end(ap);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void cx_conf__progress(const char *fmt, ...)
{
    if (g_progress_fd < 0)
        return;
    char buf[512];
    buf[0] = 'P';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + 1, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = 1 + ((size_t)n < sizeof buf - 3 ? (size_t)n : sizeof buf - 3);
    for (size_t i = 1; i < len; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    buf[len++] = '\n';
    write_all(g_progress_fd, buf, len);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static char *tail_of(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)max ? size - (long)max : 0;
    fseek(f, from, SEEK_SET);
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 && buf[i] != '\n')
            buf[i] = ' ';
    return buf;
}

void cx_conf__isolate(const cx_conf_suite_t *s, cx_conf_check_fn fn, unsigned timeout_s,
                      int verbose, const char *id, cx_conf_result_t *r, double *ms)
{
    memset(r, 0, sizeof *r);
    double t0 = now_ms();
    int fds[2];
    const char *tmp = getenv("TMPDIR");
    char out_path[4096];
    snprintf(out_path, sizeof out_path, "%s/cx-conformance-out-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int out_fd = mkstemp(out_path);
    if (pipe(fds) != 0 || out_fd < 0) {
        cx_conf__fail(r, "cannot isolate the check: %s", strerror(errno));
        if (out_fd >= 0) {
            close(out_fd);
            unlink(out_path);
        }
        *ms = 0;
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        cx_conf__fail(r, "cannot fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        close(out_fd);
        unlink(out_path);
        *ms = 0;
        return;
    }
    if (pid == 0) {
        setpgid(0, 0);
        close(fds[0]);
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        close(out_fd);
        g_progress_fd = fds[1];
        cx_conf_result_t res;
        memset(&res, 0, sizeof res);
        fn(s, &res);
        fflush(stdout);
        fflush(stderr);
        char head[3] = {'R', (char)('0' + res.status), (char)('0' + res.skip_kind)};
        write_all(fds[1], head, 3);
        write_all(fds[1], res.text, res.len);
        close(fds[1]);
        _exit(0);
    }
    setpgid(pid, pid);
    close(fds[1]);
    close(out_fd);
    char progress[512] = "";
    char *verdict = NULL;
    size_t vlen = 0, vcap = 0;
    char line[1024];
    size_t llen = 0;
    int in_verdict = 0, timed_out = 0;
    double deadline = t0 + (double)timeout_s * 1000.0;
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, left > 1000 ? 1000 : (int)left + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (in_verdict) {
                if (vlen + 1 >= vcap) {
                    size_t nc = vcap ? vcap * 2 : 8192;
                    char *p = realloc(verdict, nc);
                    if (p == NULL)
                        continue;
                    verdict = p;
                    vcap = nc;
                }
                verdict[vlen++] = buf[i];
                continue;
            }
            if (llen == 0 && buf[i] == 'R') {
                in_verdict = 1;
                continue;
            }
            if (buf[i] == '\n') {
                line[llen] = '\0';
                if (line[0] == 'P') {
                    cx_conf__fmt(progress, sizeof progress, "%s", line + 1);
                    if (verbose)
                        fprintf(stderr, "  [%s] %s\n", id, progress);
                }
                llen = 0;
            } else if (llen + 1 < sizeof line) {
                line[llen++] = buf[i];
            }
        }
    }
    int status = 0;
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    close(fds[0]);
    *ms = now_ms() - t0;
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && in_verdict && vlen >= 2) {
        r->status = verdict[0] - '0';
        r->skip_kind = verdict[1] - '0';
        r->len = vlen - 2 < sizeof r->text - 1 ? vlen - 2 : sizeof r->text - 1;
        memcpy(r->text, verdict + 2, r->len);
        r->text[r->len] = '\0';
    } else {
        if (timed_out)
            cx_conf__fail(r, "the check did not finish within %u s (a hang): killed", timeout_s);
        else if (WIFSIGNALED(status))
            cx_conf__fail(r, "the connector crashed: signal %d (%s)", WTERMSIG(status),
                          strsignal(WTERMSIG(status)));
        else if (WIFEXITED(status))
            cx_conf__fail(r,
                          "the check's process exited with status %d before its verdict "
                          "(a connector calling exit()?)",
                          WEXITSTATUS(status));
        else
            cx_conf__fail(r, "the check's process ended without a verdict");
        if (progress[0])
            cx_conf__note(r, "while: %s", progress);
        char *t = tail_of(out_path, 1500);
        if (t && t[0]) {
            cx_conf__note(r, "last output of the connector's process:");
            cx_conf__note(r, "%s", t);
        }
        free(t);
    }
    free(verdict);
    unlink(out_path);
}

/* ---- stdout/stderr capture inside a check ------------------------------------------------- */

int cx_conf__stdio_begin(int saved[2], char *path, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/cx-conformance-stdio-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    saved[0] = dup(1);
    saved[1] = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    return 0;
}

char *cx_conf__stdio_end(int saved[2], const char *path)
{
    fflush(stdout);
    fflush(stderr);
    dup2(saved[0], 1);
    dup2(saved[1], 2);
    close(saved[0]);
    close(saved[1]);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (size > (8l << 20))
            size = 8l << 20;
        buf = malloc((size_t)size + 1);
        if (buf) {
            size_t n = fread(buf, 1, (size_t)size, f);
            buf[n] = '\0';
        }
        fclose(f);
    }
    unlink(path);
    return buf;
}
