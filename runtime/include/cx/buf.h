/* Output buffers with a hard maximum.
 *
 * A cx_buf_t either wraps caller memory (fixed capacity) or grows on the heap up to a maximum.
 * Errors are sticky: once an append fails (CX_ENOSPC or CX_ENOMEM) every later append is a
 * no-op and cx_buf_error() reports the first failure, so writers check once at the end.
 *
 *     char mem[4096]; cx_buf_t b; cx_buf_init_fixed(&b, mem, sizeof mem);
 *     cx_buf_puts(&b, "hello"); if (cx_buf_error(&b)) ...;
 */
#ifndef CX_BUF_H
#define CX_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cx_buf_s {
    char *data; /* read-only: the bytes, NUL-terminated whenever cap > len */
    size_t len; /* read-only */
    size_t cap; /* private */
    size_t max; /* private: hard maximum of len */
    int owned;  /* private: data is heap memory owned by the buffer */
    int err;    /* private: sticky first error */
} cx_buf_t;

/* Wraps caller memory; the buffer never allocates. cap includes room for the NUL. */
CX_API void cx_buf_init_fixed(cx_buf_t *b, char *mem, size_t cap);
/* A heap buffer growing up to max bytes. Release with cx_buf_free(). */
CX_API void cx_buf_init(cx_buf_t *b, size_t max);
/* Frees heap memory (no-op for fixed buffers); b may be NULL. */
CX_API void cx_buf_free(cx_buf_t *b);
/* Empties the buffer and clears its error; keeps its memory. */
CX_API void cx_buf_reset(cx_buf_t *b);

CX_API int cx_buf_append(cx_buf_t *b, const void *data, size_t len);
CX_API int cx_buf_puts(cx_buf_t *b, const char *s);
CX_API int cx_buf_putc(cx_buf_t *b, char c);
/* Room to write up to n bytes in place: returns where they go (then cx_buf_commit the bytes
 * written, at most n), or NULL with the buffer's error set. For writers that produce many
 * small pieces: one bounds check for all of them. */
CX_API char *cx_buf_reserve(cx_buf_t *b, size_t n);
CX_API void cx_buf_commit(cx_buf_t *b, size_t n);
CX_API int cx_buf_printf(cx_buf_t *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Truncates to len (len <= b->len). */
CX_API void cx_buf_truncate(cx_buf_t *b, size_t len);
/* 0 or the first error (CX_ENOSPC, CX_ENOMEM). */
CX_API int cx_buf_error(const cx_buf_t *b);

#ifdef __cplusplus
}
#endif

#endif /* CX_BUF_H */
