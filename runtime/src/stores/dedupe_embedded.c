/* The embedded dedupe store: an in-process hash table with expiry.
 *
 * Same semantics as the Redis store (cx/dedupe_store.h): claim when absent or expired, complete
 * and release only with the claim's token, done / processing TTLs. It dedupes only within one
 * process, for development, tests and single-process deployments.
 *
 * Layout: 64 stripes, each a mutex and an open-addressing table (linear probing, backward-shift
 * deletion, so no tombstones), chosen by the top bits of a keyed SipHash-1-3 of the key (keys
 * come from provider payloads; a keyed hash keeps crafted keys from piling up in one probe
 * run). A batch locks one stripe per item, never two at once, so threads rarely contend and
 * cannot deadlock.
 *
 * Expiry: an entry past its deadline counts as absent whenever it is looked up; claims also
 * sweep slots from a per-stripe cursor (a run every SWEEP_EVERY claims), and a stripe about to
 * grow, or a store at max_keys, sweeps fully first, so expired keys give their memory back
 * without a thread of our own. Times come from CLOCK_MONOTONIC (read once per call):
 * wall-clock jumps do not expire or revive keys.
 *
 * Memory: every allocation goes through the store's allocator; max_keys bounds the live
 * entries (counted across stripes with one atomic) and claim fails with CX_ENOSPC beyond it.
 * An entry is 128 bytes (two cache lines, aligned) and holds keys of up to INLINE_KEY bytes
 * itself; only a longer key takes an allocation of its own (docs/internals/dedupe-store.md).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/rand.h>

#include "cx/arena.h"
#include "core/words.h"
#include "stores/dedupe_internal.h"

#define STRIPE_BITS 6
#define STRIPES (1u << STRIPE_BITS)
#define INITIAL_CAP 16u /* slots of a stripe's first table */
#define SWEEP_STEPS 4u  /* slots examined or freed per claimed item, on average */
#define SWEEP_EVERY 16u /* claims of a stripe between two of its incremental sweeps */
#define DEFAULT_MAX_KEYS ((size_t)1 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

#define INLINE_KEY 96u /* key bytes an entry holds itself */

enum { E_PROCESSING = 1, E_DONE = 2 };

/* One slot: 32 bytes of header and the key. Real keys (WhatsApp's "dm:whatsapp:<account>:msg:
 * wamid...." is about 94 bytes) fit inline, so a claim allocates nothing and a lookup reads
 * two adjacent cache lines and no pointer. The header packs what 32 bytes can hold: the low
 * 32 bits of the hash (enough for the home slot of any table we can allocate, and a first
 * comparison that almost never passes by accident) and the token in binary. */
typedef struct entry_s {
    uint32_t hash;   /* low 32 bits of the key's hash; 0 = empty slot (hash_of never gives 0) */
    uint16_t keylen; /* <= CX_DEDUPE_KEY_MAX */
    uint8_t state;   /* E_PROCESSING or E_DONE */
    uint8_t unused;
    int64_t expires_ms; /* CLOCK_MONOTONIC milliseconds */
    uint64_t token[2];  /* the claim's token, packed (token_pack) */
    union {
        char bytes[INLINE_KEY]; /* keylen <= INLINE_KEY */
        char *spill;            /* longer: an allocation of keylen bytes, owned */
    } key;
} entry_t;

_Static_assert(sizeof(entry_t) == 128, "an entry is two cache lines");
_Static_assert(CX_DEDUPE_KEY_MAX <= UINT16_MAX, "keylen is 16 bits");

/* Two cache lines: what prefetch_block reads without the lock (written only when the table
 * moves), then what every locked operation writes. Apart, locking a stripe on one core does
 * not take the first line from the other cores' caches. */
typedef struct stripe_s {
    entry_t *slots; /* NULL until the first insert */
    void *mem;      /* the allocation slots lies in (aligned within it when large) */
    size_t mask;    /* capacity - 1 */
    char pad_[64 - 2 * sizeof(void *) - sizeof(size_t)];
    pthread_mutex_t mu;
    size_t count;     /* occupied slots, expired ones included */
    size_t cursor;    /* next slot the incremental sweep examines */
    unsigned unswept; /* claims since the last incremental sweep */
} stripe_t;

/* Each stripe on its own pair of lines (the store is allocated 64-byte aligned). */
typedef union stripe_slot_u {
    stripe_t s;
    char pad[128];
} stripe_slot_t;

_Static_assert(sizeof(stripe_t) <= 128, "a stripe is two cache lines");

typedef struct embedded_store_s {
    cx_dedupe_store_t base; /* first: the public view */
    cx_allocator_t alloc;
    void *mem; /* the allocation the store lies in, 64-byte aligned within it */
    size_t max_keys;
    atomic_size_t live; /* entries in all stripes, expired ones included */
    uint64_t k0, k1;    /* SipHash key */
    _Alignas(64) stripe_slot_t stripes[STRIPES];
} embedded_store_t;

/* ---- SipHash-1-3 (Aumasson & Bernstein; one compression round, three finalisation) ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    const unsigned char *end = p + (len & ~(size_t)7);
    for (; p != end; p += 8) {
        uint64_t m = load64le(p);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- One stripe's table (the caller holds the stripe's mutex) -------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *entry_key(const entry_t *e)
{
    return e->keylen <= INLINE_KEY ? e->key.bytes : e->key.spill;
}

/* The values of eight lowercase hex digits, one per byte: (c & 0xf) + 9 * bit 6 of c. */
static uint64_t hex_values8(const char *hex)
{
    uint64_t x = cx__word(hex);
    return (x & CX__ONES * 0x0f) + ((x >> 6) & CX__ONES) * 9;
}

/* Packs a token's 32 lowercase hex digits (made by the store or checked by
 * cx__dedupe_check_owned) into 16 bytes, digit k and digit k + 8 of each half sharing a byte.
 * Only equality is ever asked of packed tokens, so the cheapest lossless order will do. */
static void token_pack(uint64_t out[2], const char *hex)
{
    out[0] = hex_values8(hex) | hex_values8(hex + 8) << 4;
    out[1] = hex_values8(hex + 16) | hex_values8(hex + 24) << 4;
}

static bool token_eq(const uint64_t a[2], const uint64_t b[2])
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
}

/* The slot holding key, or (found = false) the empty slot where it would go. */
static size_t find(const stripe_t *st, uint64_t h, const char *key, size_t len, bool *found)
{
    uint32_t h32 = (uint32_t)h;
    size_t i = h32 & st->mask;
    for (;;) {
        const entry_t *e = &st->slots[i];
        if (e->hash == 0) {
            *found = false;
            return i;
        }
        if (e->hash == h32 && e->keylen == len && memcmp(entry_key(e), key, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & st->mask;
    }
}

/* Empties slot i, shifting later entries of its probe run back so lookups need no
 * tombstones: an entry moves into the hole unless its home slot lies cyclically in (i, j]. */
static void delete_at(embedded_store_t *s, stripe_t *st, size_t i)
{
    if (st->slots[i].keylen > INLINE_KEY)
        s->alloc.free(s->alloc.ud, st->slots[i].key.spill);
    st->count--;
    atomic_fetch_sub_explicit(&s->live, 1, memory_order_relaxed);
    size_t j = i;
    for (;;) {
        j = (j + 1) & st->mask;
        entry_t *e = &st->slots[j];
        if (e->hash == 0)
            break;
        size_t home = (size_t)e->hash & st->mask;
        bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            st->slots[i] = *e;
            i = j;
        }
    }
    st->slots[i].hash = 0;
}

/* Deletes expired entries from the cursor on: full = true walks the whole table, otherwise
 * at most SWEEP_STEPS * SWEEP_EVERY slots are examined or freed (bounded work on the request
 * path). Claims sweep every SWEEP_EVERY-th time rather than a few slots each time: the slots
 * at the cursor are rarely in cache, and a longer run of them is read as a stream the
 * hardware prefetches instead of one miss per claim. */
static void sweep(embedded_store_t *s, stripe_t *st, int64_t now, bool full)
{
    if (st->count == 0) /* no table yet, or an empty one */
        return;
    const entry_t *slots = st->slots;
    size_t mask = st->mask, cur = st->cursor;
    size_t advances = full ? mask + 1 : SWEEP_STEPS * SWEEP_EVERY;
    size_t budget = full ? SIZE_MAX : SWEEP_STEPS * SWEEP_EVERY;
    /* A deletion may shift the next entry into the slot just examined, so the cursor stays
     * put after one; each step either advances or frees an entry, so this terminates. */
    while (advances > 0 && budget-- > 0 && st->count > 0) {
        if (slots[cur].hash != 0 && slots[cur].expires_ms <= now) {
            delete_at(s, st, cur);
        } else {
            cur = (cur + 1) & mask;
            advances--;
        }
    }
    st->cursor = cur;
}

/* Moves the table to cap slots (a power of two, more than it holds). Returns 0 or CX_ENOMEM
 * (the old table stays). */
static int grow_to(embedded_store_t *s, stripe_t *st, size_t cap)
{
    /* Home slots come from the 32 hash bits an entry keeps. */
    if ((uint64_t)cap > ((uint64_t)1 << 32) || cap > (SIZE_MAX - HUGE_PAGE) / sizeof(entry_t))
        return CX_ENOMEM;
    /* Entries are aligned on their size, so each is one aligned pair of cache lines (what the
     * adjacent-line prefetcher fetches together). A table of 2 MiB or more is placed on 2 MiB
     * boundaries and offered transparent huge pages: its probes are random, and with 4 KiB
     * pages nearly every one was a TLB miss (the page walk showed up as most of a claim's
     * time). */
    size_t bytes = cap * sizeof(entry_t);
    size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : sizeof(entry_t);
    char *mem = s->alloc.alloc(s->alloc.ud, bytes + align);
    if (mem == NULL)
        return CX_ENOMEM;
    entry_t *slots = (entry_t *)(void *)(mem + (align - (uintptr_t)mem % align) % align);
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        (void)madvise(slots, bytes - bytes % HUGE_PAGE, MADV_HUGEPAGE); /* advice only */
#endif
    memset(slots, 0, bytes);
    size_t mask = cap - 1;
    if (st->slots) {
        for (size_t i = 0; i <= st->mask; i++) {
            if (st->slots[i].hash == 0)
                continue;
            size_t j = st->slots[i].hash & mask;
            while (slots[j].hash != 0)
                j = (j + 1) & mask;
            slots[j] = st->slots[i];
        }
        s->alloc.free(s->alloc.ud, st->mem);
    }
    st->mem = mem;
    /* Atomic stores: prefetch_block reads both without the lock. */
    __atomic_store_n(&st->slots, slots, __ATOMIC_RELAXED);
    __atomic_store_n(&st->mask, mask, __ATOMIC_RELAXED);
    st->cursor = 0;
    return 0;
}

/* Doubles the table (or creates it). */
static int grow(embedded_store_t *s, stripe_t *st)
{
    return grow_to(s, st, st->slots ? (st->mask + 1) * 2 : INITIAL_CAP);
}

static bool live_reserve(embedded_store_t *s)
{
    size_t n = atomic_fetch_add_explicit(&s->live, 1, memory_order_relaxed);
    if (n < s->max_keys)
        return true;
    atomic_fetch_sub_explicit(&s->live, 1, memory_order_relaxed);
    return false;
}

/* A claim call takes room for all its items with one atomic add when the store is far from
 * max_keys (one shared cache line per call instead of per new key), and gives back what it
 * did not use. Near the limit it returns 0 and every new key takes its room alone. While a
 * call runs, its unused room counts as live: at most a call's size, and only far from the
 * limit, so no claim is refused because of it. */
static size_t live_take_credits(embedded_store_t *s, size_t n)
{
    size_t before = atomic_fetch_add_explicit(&s->live, n, memory_order_relaxed);
    if (before <= s->max_keys && s->max_keys - before >= 2 * n)
        return n;
    atomic_fetch_sub_explicit(&s->live, n, memory_order_relaxed);
    return 0;
}

static void live_return_credits(embedded_store_t *s, size_t credits)
{
    if (credits)
        atomic_fetch_sub_explicit(&s->live, credits, memory_order_relaxed);
}

/* Puts a new entry for it->key (absent from the table) into slot i, the empty slot find
 * returned (any value when the stripe has no table yet), its room taken from *credits when
 * there are some (credits may be NULL). Returns 0, CX_ENOMEM or CX_ENOSPC. */
static int insert(embedded_store_t *s, stripe_t *st, size_t i, uint64_t h,
                  const cx_dedupe_item_t *it, size_t len, uint8_t state, int64_t now,
                  int64_t expires, size_t *credits)
{
    bool credited = credits && *credits > 0;
    bool moved = st->slots == NULL; /* true once slot i may no longer be the key's */
    if (credited) {
        (*credits)--;
    } else if (!live_reserve(s)) {
        /* At the limit: expired entries of this stripe may free room; if not, the caller
         * sweeps the other stripes (never locked from here: one lock at a time). */
        sweep(s, st, now, true);
        moved = true;
        if (!live_reserve(s))
            return CX_ENOSPC;
    }
    /* Load factor 3/4: sweep first, grow only when expired entries do not make room. */
    if (st->slots == NULL || (st->count + 1) * 4 > (st->mask + 1) * 3) {
        if (st->slots)
            sweep(s, st, now, true);
        if (st->slots == NULL || (st->count + 1) * 4 > (st->mask + 1) * 3) {
            if (grow(s, st) != 0)
                goto fail;
        }
        moved = true;
    }
    if (moved) {
        bool found;
        i = find(st, h, it->key, len, &found);
    }
    char *spill = NULL;
    if (len > INLINE_KEY) {
        spill = s->alloc.alloc(s->alloc.ud, len);
        if (spill == NULL)
            goto fail;
        memcpy(spill, it->key, len);
    }
    entry_t *e = &st->slots[i];
    e->hash = (uint32_t)h;
    e->keylen = (uint16_t)len;
    e->state = state;
    e->expires_ms = expires;
    token_pack(e->token, it->token);
    if (spill)
        e->key.spill = spill;
    else
        memcpy(e->key.bytes, it->key, len);
    st->count++;
    return 0;
fail:
    if (credited)
        (*credits)++;
    else
        atomic_fetch_sub_explicit(&s->live, 1, memory_order_relaxed);
    return CX_ENOMEM;
}

/* ---- The store operations --------------------------------------------------------------- */

/* The key's hash: the top bits pick the stripe, the low 32 bits (never 0: 0 marks an empty
 * slot) the slot, so the two stay independent. */
static uint64_t hash_of(const embedded_store_t *s, const char *key, size_t len)
{
    uint64_t h = siphash13(s->k0, s->k1, key, len);
    return (uint32_t)h ? h : h | 1;
}

static stripe_t *stripe_of(embedded_store_t *s, uint64_t h)
{
    return &s->stripes[h >> (64 - STRIPE_BITS)].s;
}

#define PREFETCH_BLOCK 16

/* Hashes m items and prefetches their home slots: the first line, and the second when the
 * key reaches into it (a new key is written there, a found one compared). The stripe is not
 * locked: the slot array read here may be replaced meanwhile, and a prefetch of a stale
 * address is harmless (it never faults and changes nothing); the pointer and mask are read
 * atomically. */
static void prefetch_block(embedded_store_t *s, const cx_dedupe_item_t *items, size_t m,
                           uint64_t *hs, size_t *lens)
{
    for (size_t k = 0; k < m; k++) {
        lens[k] = strlen(items[k].key);
        hs[k] = hash_of(s, items[k].key, lens[k]);
        stripe_t *st = stripe_of(s, hs[k]);
        entry_t *slots = __atomic_load_n(&st->slots, __ATOMIC_RELAXED);
        size_t mask = __atomic_load_n(&st->mask, __ATOMIC_RELAXED);
        if (slots) {
            const entry_t *e = &slots[(uint32_t)hs[k] & mask];
            __builtin_prefetch(e);
            if (lens[k] > 64 - offsetof(entry_t, key))
                __builtin_prefetch((const char *)e + 64);
        }
    }
}

/* Deletes items[i]'s entry if it still holds items[i]'s claim; used by release and to undo
 * a claim that failed halfway. Returns 0, or CX_ETIMEOUT when another claim holds it. */
static int release_one(embedded_store_t *s, const cx_dedupe_item_t *it, size_t len, int64_t now)
{
    uint64_t h = hash_of(s, it->key, len);
    stripe_t *st = stripe_of(s, h);
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    bool found = false;
    size_t i = st->slots ? find(st, h, it->key, len, &found) : 0;
    if (found) {
        entry_t *e = &st->slots[i];
        uint64_t tok[2];
        token_pack(tok, it->token);
        bool mine = token_eq(e->token, tok);
        if (e->expires_ms <= now || (mine && e->state == E_PROCESSING))
            delete_at(s, st, i); /* expired counts as released */
        else
            rc = CX_ETIMEOUT;
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* Sweeps every stripe, one lock at a time (the store reached max_keys). */
static void sweep_all(embedded_store_t *s, int64_t now)
{
    for (size_t k = 0; k < STRIPES; k++) {
        stripe_t *st = &s->stripes[k].s;
        pthread_mutex_lock(&st->mu);
        sweep(s, st, now, true);
        pthread_mutex_unlock(&st->mu);
    }
}

static int embedded_claim(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                          uint32_t processing_ttl_ms, cx_error_t *err)
{
    embedded_store_t *s = (embedded_store_t *)base;
    int rc = cx__dedupe_check_claim(items, n, processing_ttl_ms, NULL, err);
    if (rc != 0)
        return rc;
    rc = cx__dedupe_new_tokens(items, n, err);
    if (rc != 0)
        return rc;
    int64_t now = now_ms();
    int64_t expires = now + processing_ttl_ms;
    size_t i;
    bool swept_all = false;
    size_t credits = live_take_credits(s, n);
    /* Items go in blocks: their hashes first, and a prefetch of each one's home slot, so the
     * block's cache misses (a large table is mostly misses) overlap instead of queueing. */
    uint64_t hs[PREFETCH_BLOCK];
    size_t lens[PREFETCH_BLOCK];
    for (i = 0; i < n; i++) {
        cx_dedupe_item_t *it = &items[i];
        if (i % PREFETCH_BLOCK == 0)
            prefetch_block(s, items + i, n - i < PREFETCH_BLOCK ? n - i : PREFETCH_BLOCK, hs, lens);
        size_t len = lens[i % PREFETCH_BLOCK]; /* bounded by cx__dedupe_check_claim */
        uint64_t h = hs[i % PREFETCH_BLOCK];
        stripe_t *st = stripe_of(s, h);
    again:
        pthread_mutex_lock(&st->mu);
        bool found = false;
        size_t slot = st->slots ? find(st, h, it->key, len, &found) : 0;
        if (found) {
            entry_t *e = &st->slots[slot];
            if (e->expires_ms <= now) {
                /* An expired claim (its process crashed or ran late) or an expired done:
                 * the key is free again, the entry is reused in place. */
                e->state = E_PROCESSING;
                e->expires_ms = expires;
                token_pack(e->token, it->token);
                it->state = CX_CLAIM_OWNED;
            } else {
                it->state = e->state == E_DONE ? CX_CLAIM_DONE : CX_CLAIM_IN_PROGRESS;
            }
        } else {
            rc = insert(s, st, slot, h, it, len, E_PROCESSING, now, expires, &credits);
            it->state = CX_CLAIM_OWNED;
        }
        if (rc == 0 && ++st->unswept >= SWEEP_EVERY) {
            st->unswept = 0;
            sweep(s, st, now, false);
        }
        pthread_mutex_unlock(&st->mu);
        if (rc == CX_ENOSPC && !swept_all) {
            /* Expired keys in other stripes count against max_keys too: reclaim them once
             * per call, then try this item again. */
            swept_all = true;
            rc = 0;
            sweep_all(s, now);
            goto again;
        }
        if (rc != 0)
            break;
        it->rc = 0;
        if (it->state != CX_CLAIM_OWNED)
            it->token[0] = '\0';
    }
    live_return_credits(s, credits);
    if (rc == 0)
        return 0;
    /* All or nothing: a caller told "failed" processes no item, so the keys this call
     * claimed must not stay claimed until their TTL. */
    for (size_t j = 0; j < i; j++) {
        if (items[j].state == CX_CLAIM_OWNED)
            (void)release_one(s, &items[j], strlen(items[j].key), now);
    }
    for (size_t j = 0; j < n; j++)
        items[j].token[0] = '\0';
    if (rc == CX_ENOSPC)
        return cx_error_set(err, rc, NULL, "embedded dedupe store full (max_keys %zu)",
                            s->max_keys);
    return cx_error_set(err, rc, NULL, "embedded dedupe store: out of memory");
}

static int embedded_complete(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                             cx_error_t *err)
{
    embedded_store_t *s = (embedded_store_t *)base;
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0) {
        if (items)
            cx__dedupe_set_rc(items, n > CX_DEDUPE_BATCH_MAX ? 0 : n, rc);
        return rc;
    }
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        cx_dedupe_item_t *it = &items[i];
        size_t len;
        if (cx__dedupe_check_owned(it, &len) != 0) {
            it->rc = CX_EINVAL;
            continue;
        }
        uint32_t ttl_s = it->done_ttl_s ? it->done_ttl_s : CX_DEDUPE_DEFAULT_DONE_TTL_S;
        uint64_t tok[2];
        token_pack(tok, it->token);
        uint64_t h = hash_of(s, it->key, len);
        stripe_t *st = stripe_of(s, h);
        pthread_mutex_lock(&st->mu);
        bool found = false;
        size_t slot = st->slots ? find(st, h, it->key, len, &found) : 0;
        int64_t done_expires = now + (int64_t)ttl_s * 1000;
        entry_t *e = found ? &st->slots[slot] : NULL;
        if (e && e->expires_ms <= now) {
            /* The claim lapsed and nobody took the key: the handler ran, record it done so
             * the redelivery is deduped (the same as an absent key below). */
            e->state = E_DONE;
            e->expires_ms = done_expires;
            memcpy(e->token, tok, sizeof tok);
            it->rc = 0;
        } else if (e && token_eq(e->token, tok)) {
            /* Still ours; done already means an earlier complete of this claim. */
            if (e->state == E_PROCESSING) {
                e->state = E_DONE;
                e->expires_ms = done_expires;
            }
            it->rc = 0;
        } else if (e) {
            /* Another claim holds or completed the key. Done wins: our handler ran, so the
             * item is processed whatever that claim does next (docs/internals/dedupe-store.md). */
            e->state = E_DONE;
            e->expires_ms = done_expires;
            memcpy(e->token, tok, sizeof tok);
            it->rc = CX_ETIMEOUT;
        } else {
            it->rc = insert(s, st, slot, h, it, len, E_DONE, now, done_expires, NULL);
        }
        pthread_mutex_unlock(&st->mu);
    }
    return 0;
}

static int embedded_release(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                            cx_error_t *err)
{
    embedded_store_t *s = (embedded_store_t *)base;
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0) {
        if (items)
            cx__dedupe_set_rc(items, n > CX_DEDUPE_BATCH_MAX ? 0 : n, rc);
        return rc;
    }
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        size_t len;
        if (cx__dedupe_check_owned(&items[i], &len) != 0)
            items[i].rc = CX_EINVAL;
        else
            items[i].rc = release_one(s, &items[i], len, now);
    }
    return 0;
}

static int embedded_renew(cx_dedupe_store_t *base, cx_dedupe_item_t *items, size_t n,
                          uint32_t ttl_ms, cx_error_t *err)
{
    embedded_store_t *s = (embedded_store_t *)base;
    int rc = cx__dedupe_check_batch(items, n, err);
    if (rc != 0)
        return rc;
    if (ttl_ms == 0)
        return cx_error_set(err, CX_EINVAL, "ttl_ms", "renew TTL is 0");
    /* States are applied at the end, so a failed call leaves every item as it was. */
    unsigned char *states = n ? s->alloc.alloc(s->alloc.ud, n) : NULL;
    if (n && states == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded dedupe store: out of memory");
    int64_t now = now_ms();
    int64_t expires = now + ttl_ms;
    for (size_t i = 0; i < n && rc == 0; i++) {
        cx_dedupe_item_t *it = &items[i];
        size_t len;
        states[i] = (unsigned char)it->state;
        if (cx__dedupe_check_owned(it, &len) != 0) {
            it->rc = CX_EINVAL;
            continue;
        }
        it->rc = 0;
        uint64_t tok[2];
        token_pack(tok, it->token);
        uint64_t h = hash_of(s, it->key, len);
        stripe_t *st = stripe_of(s, h);
        pthread_mutex_lock(&st->mu);
        bool found = false;
        size_t slot = st->slots ? find(st, h, it->key, len, &found) : 0;
        entry_t *e = found ? &st->slots[slot] : NULL;
        if (e && e->expires_ms <= now) {
            e->state = E_PROCESSING; /* lapsed, nobody took it: ours again */
            e->expires_ms = expires;
            memcpy(e->token, tok, sizeof tok);
        } else if (e && e->state == E_DONE) {
            states[i] = CX_CLAIM_DONE;
        } else if (e && !token_eq(e->token, tok)) {
            states[i] = CX_CLAIM_IN_PROGRESS;
        } else if (e) {
            e->expires_ms = expires;
        } else {
            rc = insert(s, st, slot, h, it, len, E_PROCESSING, now, expires, NULL);
        }
        pthread_mutex_unlock(&st->mu);
    }
    if (rc == 0)
        for (size_t i = 0; i < n; i++)
            items[i].state = (cx_claim_state_t)states[i];
    if (states)
        s->alloc.free(s->alloc.ud, states);
    if (rc == CX_ENOSPC)
        return cx_error_set(err, rc, NULL, "embedded dedupe store full (max_keys %zu)",
                            s->max_keys);
    if (rc != 0)
        return cx_error_set(err, rc, NULL, "embedded dedupe store: out of memory");
    return 0;
}

static int embedded_ping(cx_dedupe_store_t *base, cx_error_t *err)
{
    (void)base;
    (void)err;
    return 0;
}

static void embedded_destroy(cx_dedupe_store_t *base)
{
    embedded_store_t *s = (embedded_store_t *)base;
    if (s == NULL)
        return;
    for (size_t k = 0; k < STRIPES; k++) {
        stripe_t *st = &s->stripes[k].s;
        if (st->slots) {
            for (size_t i = 0; i <= st->mask; i++) {
                if (st->slots[i].hash != 0 && st->slots[i].keylen > INLINE_KEY)
                    s->alloc.free(s->alloc.ud, st->slots[i].key.spill);
            }
            s->alloc.free(s->alloc.ud, st->mem);
        }
        pthread_mutex_destroy(&st->mu);
    }
    cx_allocator_t a = s->alloc;
    a.free(a.ud, s->mem);
}

static const cx_dedupe_store_ops_t EMBEDDED_OPS = {
    .claim = embedded_claim,
    .complete = embedded_complete,
    .release = embedded_release,
    .ping = embedded_ping,
    .destroy = embedded_destroy,
    .renew = embedded_renew,
};

int cx_dedupe_store_embedded_ex(const char *environment, const cx_dedupe_embedded_options_t *opts,
                                cx_dedupe_store_t **out, cx_error_t *err)
{
    if (out == NULL)
        return cx_error_set(err, CX_EINVAL, "out", "out is NULL");
    *out = NULL;
    char prefix[96];
    int rc = cx__dedupe_prefix(environment, prefix, err);
    if (rc != 0)
        return rc;
    cx_allocator_t alloc = *cx_allocator_default();
    if (opts && opts->allocator) {
        if (opts->allocator->alloc == NULL || opts->allocator->free == NULL)
            return cx_error_set(err, CX_EINVAL, "allocator", "allocator lacks alloc or free");
        alloc = *opts->allocator;
    }
    unsigned char seed[16];
    if (RAND_bytes(seed, sizeof seed) != 1)
        return cx_error_set(err, CX_ECRYPTO, NULL, "no random bytes for the hash key");
    char *mem = alloc.alloc(alloc.ud, sizeof(embedded_store_t) + 63);
    if (mem == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "embedded dedupe store: out of memory");
    embedded_store_t *s = (embedded_store_t *)(void *)(mem + (64 - (uintptr_t)mem % 64) % 64);
    memset(s, 0, sizeof *s);
    s->mem = mem;
    s->base.ops = &EMBEDDED_OPS;
    memcpy(s->base.prefix, prefix, sizeof prefix);
    s->alloc = alloc;
    s->max_keys = opts && opts->max_keys ? opts->max_keys : DEFAULT_MAX_KEYS;
    if (opts && opts->initial_keys > s->max_keys) {
        alloc.free(alloc.ud, mem);
        return cx_error_set(err, CX_EINVAL, "initial_keys", "initial_keys exceeds max_keys");
    }
    atomic_init(&s->live, 0);
    s->k0 = load64le(seed);
    s->k1 = load64le(seed + 8);
    for (size_t k = 0; k < STRIPES; k++)
        pthread_mutex_init(&s->stripes[k].s.mu, NULL);
    if (opts && opts->initial_keys) {
        /* Tables sized for initial_keys at the 3/4 load factor (plus room for an uneven
         * spread), allocated and touched now: no growth, rehashing or first-touch page
         * faults on the request path until the store holds that many keys. */
        size_t per = opts->initial_keys / STRIPES + opts->initial_keys / STRIPES / 8 + 1;
        size_t cap = INITIAL_CAP;
        while (cap * 3 / 4 < per && cap <= SIZE_MAX / 4)
            cap *= 2;
        for (size_t k = 0; k < STRIPES; k++)
            if (grow_to(s, &s->stripes[k].s, cap) != 0) {
                embedded_destroy(&s->base);
                return cx_error_set(err, CX_ENOMEM, NULL, "embedded dedupe store: out of memory");
            }
    }
    *out = &s->base;
    return 0;
}

int cx_dedupe_store_embedded(const char *environment, cx_dedupe_store_t **out, cx_error_t *err)
{
    return cx_dedupe_store_embedded_ex(environment, NULL, out, err);
}
