/* Per-request arenas: bump allocation in chunks, everything released at once.
 *
 * Chunks come from the arena's allocator; the first is 16 KiB (a 10-item webhook batch decodes
 * into about 9 KiB: one allocator call per request, where 4 KiB took three), then they double
 * with the arena's size, so a large request costs a logarithmic number of allocator
 * calls. `reserved` counts every byte taken from the allocator, chunk headers included, and
 * never passes `limit`: near the limit a chunk shrinks to what is left rather than failing
 * early. Allocations are rounded to 16 bytes so every pointer suits any C type (including long
 * double and SSE vectors), and are zeroed because protobuf-c and the JSON decoder expect
 * zero-initialised structs; cx_arena_alloc_uninit skips that for memory about to be overwritten
 * whole (the JSON reader's copy of its input and the arrays it fills from its scratch stack).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cx/arena.h"

#define CX_ARENA_ALIGN ((size_t)16)
#define CX_ARENA_FIRST_CHUNK ((size_t)16384)
#define CX_ARENA_MAX_CHUNK ((size_t)256 * 1024)

struct cx_arena_chunk_s {
    cx_arena_chunk_t *next;
    char *cur; /* next free byte, always aligned */
    char *end;
};

/* Header plus the worst-case padding to reach an aligned first byte: an injected allocator may
 * return memory aligned for less than 16 bytes. */
#define CX_ARENA_OVERHEAD (sizeof(cx_arena_chunk_t) + CX_ARENA_ALIGN - 1)

static void *default_alloc(void *ud, size_t size)
{
    (void)ud;
    return malloc(size);
}

static void default_free(void *ud, void *ptr)
{
    (void)ud;
    free(ptr);
}

static const cx_allocator_t DEFAULT_ALLOCATOR = {default_alloc, default_free, NULL};

const cx_allocator_t *cx_allocator_default(void)
{
    return &DEFAULT_ALLOCATOR;
}

static char *align_up(char *p)
{
    uintptr_t u = (uintptr_t)p;
    return p + ((CX_ARENA_ALIGN - (u & (CX_ARENA_ALIGN - 1))) & (CX_ARENA_ALIGN - 1));
}

void cx_arena_init(cx_arena_t *a, const cx_allocator_t *allocator, size_t limit)
{
    if (allocator != NULL && allocator->alloc != NULL) {
        a->allocator = *allocator;
    } else {
        a->allocator = DEFAULT_ALLOCATOR;
    }
    a->head = NULL;
    a->used = 0;
    a->reserved = 0;
    a->limit = limit;
}

static size_t chunk_room(const cx_arena_chunk_t *c)
{
    return (size_t)(c->end - c->cur);
}

/* A new chunk able to hold asize bytes, linked into the arena; NULL past the limit or when the
 * allocator fails. */
static cx_arena_chunk_t *new_chunk(cx_arena_t *a, size_t asize)
{
    size_t need = CX_ARENA_OVERHEAD + asize;
    size_t left = a->limit > a->reserved ? a->limit - a->reserved : 0;
    if (need > left)
        return NULL;
    size_t want = a->reserved < CX_ARENA_FIRST_CHUNK ? CX_ARENA_FIRST_CHUNK : a->reserved;
    if (want > CX_ARENA_MAX_CHUNK)
        want = CX_ARENA_MAX_CHUNK;
    if (want < need)
        want = need;
    if (want > left)
        want = left;
    char *mem = a->allocator.alloc(a->allocator.ud, want);
    if (mem == NULL)
        return NULL;
    a->reserved += want;
    cx_arena_chunk_t *c = (cx_arena_chunk_t *)(void *)mem;
    c->cur = align_up(mem + sizeof *c);
    c->end = mem + want;
    /* An oversized request gets a chunk of its own; keep the emptier head in front so its
     * free space still serves the small allocations that follow. */
    if (a->head != NULL && chunk_room(a->head) > want - CX_ARENA_OVERHEAD - asize) {
        c->next = a->head->next;
        a->head->next = c;
    } else {
        c->next = a->head;
        a->head = c;
    }
    return c;
}

/* The bump allocation both entry points share, inlined into each so neither calls the other. */
static inline void *bump(cx_arena_t *a, size_t size)
{
    if (a == NULL)
        return NULL;
    if (size == 0)
        size = 1; /* distinct, non-NULL pointers, as malloc(1) would give */
    if (size > SIZE_MAX - CX_ARENA_OVERHEAD - CX_ARENA_ALIGN)
        return NULL;
    size_t asize = (size + CX_ARENA_ALIGN - 1) & ~(CX_ARENA_ALIGN - 1);
    cx_arena_chunk_t *c = a->head;
    if (c == NULL || chunk_room(c) < asize) {
        c = new_chunk(a, asize);
        if (c == NULL)
            return NULL;
    }
    void *p = c->cur;
    c->cur += asize;
    a->used += asize;
    return p;
}

void *cx_arena_alloc(cx_arena_t *a, size_t size)
{
    void *p = bump(a, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

void *cx_arena_alloc_uninit(cx_arena_t *a, size_t size)
{
    return bump(a, size);
}

char *cx_arena_strndup(cx_arena_t *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = cx_arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void cx_arena_release(cx_arena_t *a)
{
    if (a == NULL)
        return;
    cx_arena_chunk_t *c = a->head;
    while (c != NULL) {
        cx_arena_chunk_t *next = c->next;
        if (a->allocator.free != NULL)
            a->allocator.free(a->allocator.ud, c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
    a->reserved = 0;
}

static void *pb_alloc(void *ud, size_t size)
{
    return cx_arena_alloc(ud, size);
}

/* protobuf-c frees a partly decoded message on error; the arena reclaims it on release. */
static void pb_free(void *ud, void *ptr)
{
    (void)ud;
    (void)ptr;
}

ProtobufCAllocator cx_arena_protobuf_allocator(cx_arena_t *a)
{
    ProtobufCAllocator pa;
    pa.alloc = pb_alloc;
    pa.free = pb_free;
    pa.allocator_data = a;
    return pa;
}
