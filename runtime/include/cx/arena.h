/* Arenas: everything one request decodes lives in one arena, released at once.
 *
 * An arena hands out aligned memory from chunks taken from an allocator (malloc by default),
 * up to a hard limit; cx_arena_alloc returns NULL past the limit or when the allocator fails,
 * and decoders turn that into CX_ENOSPC / CX_ENOMEM. Individual frees are no-ops.
 *
 *     cx_arena_t a; cx_arena_init(&a, NULL, 1 << 20);
 *     ... decode into &a ...; cx_arena_release(&a);
 *
 * Not thread-safe: one arena per request.
 */
#ifndef CX_ARENA_H
#define CX_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where an arena's chunks come from. alloc returns NULL on failure. */
typedef struct cx_allocator_s {
    void *(*alloc)(void *ud, size_t size);
    void (*free)(void *ud, void *ptr);
    void *ud;
} cx_allocator_t;

typedef struct cx_arena_chunk_s cx_arena_chunk_t;

typedef struct cx_arena_s {
    cx_allocator_t allocator; /* private */
    cx_arena_chunk_t *head;   /* private */
    size_t used;              /* read-only: bytes handed out, padding included */
    size_t reserved;          /* read-only: bytes taken from the allocator */
    size_t limit;             /* read-only: hard maximum of reserved */
} cx_arena_t;

/* The allocator cx objects use when none is injected: malloc/free, ud NULL. Never NULL. */
CX_API const cx_allocator_t *cx_allocator_default(void);

/* allocator may be NULL (malloc/free). limit is the most memory the arena takes. */
CX_API void cx_arena_init(cx_arena_t *a, const cx_allocator_t *allocator, size_t limit);
/* size bytes aligned for any type, zeroed; NULL past the limit or on allocator failure. */
CX_API void *cx_arena_alloc(cx_arena_t *a, size_t size);
/* As cx_arena_alloc without the zeroing: for memory the caller overwrites whole at once. */
CX_API void *cx_arena_alloc_uninit(cx_arena_t *a, size_t size);
/* A copy of s[0..len) plus a NUL, or NULL. */
CX_API char *cx_arena_strndup(cx_arena_t *a, const char *s, size_t len);
/* Frees every chunk; the arena can be used again. a may be NULL. */
CX_API void cx_arena_release(cx_arena_t *a);
/* A ProtobufCAllocator drawing from the arena (free is a no-op), for protobuf_c unpack. */
CX_API ProtobufCAllocator cx_arena_protobuf_allocator(cx_arena_t *a);

#ifdef __cplusplus
}
#endif

#endif /* CX_ARENA_H */
