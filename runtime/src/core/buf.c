/* Output buffers with a hard maximum and a sticky first error.
 *
 * A fixed buffer keeps one byte of its capacity for the NUL, so its maximum length is cap - 1.
 * A heap buffer grows geometrically but never past max + 1 bytes. An append that does not fit
 * writes nothing: a half-written JSON document or key would be worse than none, and the sticky
 * error makes every later append a no-op so writers check once at the end.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/buf.h"

/* Below this a heap buffer still allocates this much, to avoid a realloc per small append. */
#define CX_BUF_MIN_HEAP 64

void cx_buf_init_fixed(cx_buf_t *b, char *mem, size_t cap)
{
    b->data = mem;
    b->len = 0;
    b->cap = mem ? cap : 0;
    b->max = b->cap ? b->cap - 1 : 0;
    b->owned = 0;
    b->err = 0;
    if (b->cap)
        b->data[0] = '\0';
}

void cx_buf_init(cx_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->owned = 1;
    b->err = 0;
}

void cx_buf_free(cx_buf_t *b)
{
    if (b == NULL || !b->owned)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cx_buf_reset(cx_buf_t *b)
{
    b->len = 0;
    b->err = 0;
    if (b->cap)
        b->data[0] = '\0';
}

static int fail(cx_buf_t *b, int code)
{
    b->err = code;
    return code;
}

/* Makes room for n more bytes plus the NUL; sets the sticky error when it cannot. */
static int reserve(cx_buf_t *b, size_t n)
{
    if (b->err)
        return b->err;
    /* The second test keeps len + n + 1 from wrapping when max is SIZE_MAX. */
    if (n > b->max - b->len || n >= SIZE_MAX - b->len)
        return fail(b, CX_ENOSPC);
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    if (!b->owned)
        return fail(b, CX_ENOSPC);
    size_t cap = b->cap < CX_BUF_MIN_HEAP ? CX_BUF_MIN_HEAP : b->cap;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < need)
        cap = need;
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return fail(b, CX_ENOMEM);
    b->data = p;
    b->cap = cap;
    return 0;
}

int cx_buf_append(cx_buf_t *b, const void *data, size_t len)
{
    int rc = reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    if (b->cap)
        b->data[b->len] = '\0';
    return 0;
}

char *cx_buf_reserve(cx_buf_t *b, size_t n)
{
    return reserve(b, n) == 0 ? b->data + b->len : NULL;
}

void cx_buf_commit(cx_buf_t *b, size_t n)
{
    if (b->err || n > b->cap - b->len - 1)
        return;
    b->len += n;
    b->data[b->len] = '\0';
}

int cx_buf_puts(cx_buf_t *b, const char *s)
{
    return cx_buf_append(b, s, strlen(s));
}

int cx_buf_putc(cx_buf_t *b, char c)
{
    return cx_buf_append(b, &c, 1);
}

int cx_buf_printf(cx_buf_t *b, const char *fmt, ...)
{
    if (b->err)
        return b->err;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    /* Try in place first: most formatted pieces are short and fit without growing. */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    int rc = 0;
    if (n < 0) {
        rc = fail(b, CX_EINVAL);
    } else if ((size_t)n < room && (size_t)n <= b->max - b->len) {
        b->len += (size_t)n;
    } else if ((rc = reserve(b, (size_t)n)) == 0) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    /* A failed attempt may have left a truncated tail after len. */
    if (b->cap > b->len)
        b->data[b->len] = '\0';
    return rc;
}

void cx_buf_truncate(cx_buf_t *b, size_t len)
{
    if (len > b->len)
        return;
    b->len = len;
    if (b->cap > len)
        b->data[len] = '\0';
}

int cx_buf_error(const cx_buf_t *b)
{
    return b->err;
}
