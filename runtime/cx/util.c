/* Small helpers shared by the subcommands: options, numbers, files, JSON strings. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cx_cli_error(const char *sub, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line: a stray newline in a value must not split it. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (sub)
        fprintf(stderr, "cx %s: %s\n", sub, msg);
    else
        fprintf(stderr, "cx: %s\n", msg);
}

int cx_cli_opt(const char *sub, int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cx_cli_error(sub, "option %s needs a value (see cx %s --help)", name, sub);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

int cx_cli_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int cx_cli_bad_arg(const char *sub, const char *arg)
{
    if (arg[0] == '-' && arg[1] != '\0')
        cx_cli_error(sub, "unknown option '%s' (see cx %s --help)", arg, sub);
    else
        cx_cli_error(sub, "unexpected argument '%s' (see cx %s --help)", arg, sub);
    return CX_EXIT_USAGE;
}

int cx_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cx_cli_parse_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (s == NULL)
        return -1;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) /* a bare IPv6 address needs brackets */
            return -1;
    }
    uint64_t p;
    if (hlen == 0 || hlen >= cap || cx_cli_parse_u64(colon + 1, 0, 65535, &p) != 0)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int cx_cli_read_file(const char *path, size_t max, char **out, size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    if (buf == NULL) {
        rc = -1;
        errno = ENOMEM;
        goto done;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                rc = -2;
                goto done;
            }
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                rc = -1;
                errno = ENOMEM;
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -1;
            goto done;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            rc = -2;
            goto done;
        }
    }
done:
    if (fd != STDIN_FILENO) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int cx_cli_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cx_cli_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void cx_cli_json_str(cx_buf_t *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    cx_buf_putc(b, '"');
    size_t start = 0, i = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(u + i, len - i);
            if (n) {
                i += n;
                continue;
            }
        }
        cx_buf_append(b, s + start, i - start);
        if (c == '"' || c == '\\') {
            cx_buf_putc(b, '\\');
            cx_buf_putc(b, (char)c);
        } else if (c == '\n') {
            cx_buf_puts(b, "\\n");
        } else if (c == '\r') {
            cx_buf_puts(b, "\\r");
        } else if (c == '\t') {
            cx_buf_puts(b, "\\t");
        } else if (c < 0x20) {
            cx_buf_printf(b, "\\u%04x", c);
        } else {
            cx_buf_puts(b, "\\ufffd");
        }
        i++;
        start = i;
    }
    cx_buf_append(b, s + start, i - start);
    cx_buf_putc(b, '"');
}

double cx_cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int cx_cli_connector_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int cx_cli_tenant_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}
