/* Private: looking at text eight bytes at a time.
 *
 * The hot paths that look for a few special bytes in mostly plain text (JSON strings to read or
 * to escape, key segments to percent-escape, log values, UTF-8 runs) load a 64-bit word and
 * test all its bytes at once; claim tokens are checked and packed the same way. The tests below
 * are exact for "is there such a byte in the word" (a borrow can only start at a matching
 * byte); which byte it is, the caller finds with its byte loop.
 */
#ifndef CX_CORE_WORDS_H
#define CX_CORE_WORDS_H

#include <stdint.h>
#include <string.h>

#define CX__ONES 0x0101010101010101ull
#define CX__HIGHS 0x8080808080808080ull

static inline uint64_t cx__word(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8); /* unaligned load; compiles to one mov */
    return w;
}

/* Nonzero when a byte of w equals c. */
static inline uint64_t cx__word_has(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (CX__ONES * c);
    return (x - CX__ONES) & ~x & CX__HIGHS;
}

/* Nonzero when a byte of w is below n (n <= 128). */
static inline uint64_t cx__word_has_below(uint64_t w, unsigned char n)
{
    return (w - CX__ONES * n) & ~w & CX__HIGHS;
}

#endif
