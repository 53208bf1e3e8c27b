/* Core: error codes and details, output buffers, arenas (with a failing-allocator pass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/error.h"

/* ---- error ------------------------------------------------------------------------------ */

static void test_error_names_messages_and_classes_come_from_the_map(void **state)
{
    (void)state;
    assert_string_equal(cx_err_name(CX_EJSON), "CX_EJSON");
    assert_string_equal(cx_strerror(CX_EJSON), "malformed JSON");
    assert_string_equal(cx_err_class(CX_EJSON), "payload");
    assert_string_equal(cx_err_name(CX_ENOMEM), "CX_ENOMEM");
    assert_string_equal(cx_err_class(CX_ENOMEM), "infra");
    assert_string_equal(cx_err_class(CX_EINVAL), "config");
    assert_string_equal(cx_err_class(CX_ENOTFOUND), "config");
    assert_string_equal(cx_err_name(CX_EDEDUPE_KEY), "CX_EDEDUPE_KEY");
    assert_string_equal(cx_err_name(CX_ECRYPTO), "CX_ECRYPTO");
    assert_string_equal(cx_err_name(CX_OK), "CX_OK");
}

static void test_error_every_code_has_name_message_and_known_class(void **state)
{
    (void)state;
    static const char *const classes[] = {"payload", "auth", "provider", "infra", "config"};
    for (int code = -1; code >= CX_ECRYPTO; code--) {
        assert_non_null(cx_err_name(code));
        assert_true(strncmp(cx_err_name(code), "CX_E", 4) == 0);
        assert_non_null(cx_strerror(code));
        assert_true(strlen(cx_strerror(code)) > 0);
        int known = 0;
        for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
            known |= strcmp(cx_err_class(code), classes[i]) == 0;
        assert_true(known);
    }
}

static void test_error_unknown_code_is_never_null(void **state)
{
    (void)state;
    assert_non_null(cx_strerror(-999));
    assert_non_null(cx_err_name(-999));
    assert_string_equal(cx_err_class(-999), "infra");
}

static void test_error_first_error_wins(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_error_set(&err, CX_ETYPE, "a.b", "expected %s", "string"), CX_ETYPE);
    assert_int_equal(cx_error_set(&err, CX_EJSON, "c", "later"), CX_EJSON);
    assert_int_equal(err.code, CX_ETYPE);
    assert_string_equal(err.path, "a.b");
    assert_string_equal(err.message, "expected string");
    cx_error_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.path, "");
    assert_string_equal(err.message, "");
    cx_error_set(&err, CX_EJSON, "c", "now %d", 2);
    assert_int_equal(err.code, CX_EJSON);
    assert_string_equal(err.message, "now 2");
}

static void test_error_null_fmt_uses_strerror_and_null_path_is_empty(void **state)
{
    (void)state;
    cx_error_t err;
    cx_error_clear(&err);
    cx_error_set(&err, CX_ELIMIT, NULL, NULL);
    assert_string_equal(err.path, "");
    assert_string_equal(err.message, cx_strerror(CX_ELIMIT));
}

static void test_error_null_err_only_returns_code(void **state)
{
    (void)state;
    assert_int_equal(cx_error_set(NULL, CX_ERANGE, "x", "y"), CX_ERANGE);
    cx_error_clear(NULL);
}

static void test_error_long_message_and_path_are_truncated_terminated(void **state)
{
    (void)state;
    char longtext[600];
    memset(longtext, 'p', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    cx_error_t err;
    cx_error_clear(&err);
    cx_error_set(&err, CX_EJSON, longtext, "%s", longtext);
    assert_int_equal(strlen(err.path), sizeof err.path - 1);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
}

/* ---- buf -------------------------------------------------------------------------------- */

static void test_buf_fixed_appends_and_stays_terminated(void **state)
{
    (void)state;
    char mem[16];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_string_equal(b.data, "");
    assert_int_equal(cx_buf_puts(&b, "abc"), 0);
    assert_int_equal(cx_buf_putc(&b, '-'), 0);
    assert_int_equal(cx_buf_printf(&b, "%d/%s", 42, "x"), 0);
    assert_string_equal(b.data, "abc-42/x");
    assert_int_equal(b.len, 8);
    assert_int_equal(cx_buf_error(&b), 0);
}

static void test_buf_fixed_exact_fit_keeps_room_for_nul(void **state)
{
    (void)state;
    char mem[4];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(cx_buf_puts(&b, "abc"), 0);
    assert_string_equal(b.data, "abc");
    assert_int_equal(cx_buf_putc(&b, 'd'), CX_ENOSPC);
    assert_string_equal(b.data, "abc");
}

static void test_buf_fixed_overflow_is_enospc_and_sticky(void **state)
{
    (void)state;
    char mem[8];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(cx_buf_puts(&b, "hello"), 0);
    /* Nothing of a failed append is written. */
    assert_int_equal(cx_buf_puts(&b, "world"), CX_ENOSPC);
    assert_string_equal(b.data, "hello");
    assert_int_equal(b.len, 5);
    /* Sticky: a later append that would fit is refused too. */
    assert_int_equal(cx_buf_putc(&b, '!'), CX_ENOSPC);
    assert_int_equal(cx_buf_printf(&b, "%d", 1), CX_ENOSPC);
    assert_int_equal(cx_buf_append(&b, "", 0), CX_ENOSPC);
    assert_int_equal(cx_buf_error(&b), CX_ENOSPC);
    assert_string_equal(b.data, "hello");
    cx_buf_reset(&b);
    assert_int_equal(cx_buf_error(&b), 0);
    assert_string_equal(b.data, "");
    assert_int_equal(cx_buf_puts(&b, "ok"), 0);
    assert_string_equal(b.data, "ok");
}

static void test_buf_fixed_printf_overflow_leaves_no_partial_text(void **state)
{
    (void)state;
    char mem[8];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_buf_puts(&b, "ab");
    assert_int_equal(cx_buf_printf(&b, "%s", "0123456789"), CX_ENOSPC);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "ab");
}

static void test_buf_fixed_zero_capacity_refuses_everything(void **state)
{
    (void)state;
    cx_buf_t b;
    cx_buf_init_fixed(&b, NULL, 0);
    assert_int_equal(cx_buf_putc(&b, 'x'), CX_ENOSPC);
    cx_buf_free(&b);
}

static void test_buf_heap_grows_up_to_max(void **state)
{
    (void)state;
    cx_buf_t b;
    cx_buf_init(&b, 1000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cx_buf_printf(&b, "%09d,", i), 0);
    assert_int_equal(b.len, 1000);
    assert_int_equal(strlen(b.data), 1000);
    assert_memory_equal(b.data + 990, "000000099,", 10);
    assert_int_equal(cx_buf_putc(&b, 'x'), CX_ENOSPC);
    assert_int_equal(cx_buf_error(&b), CX_ENOSPC);
    assert_int_equal(b.len, 1000);
    cx_buf_free(&b);
    cx_buf_free(NULL);
}

static void test_buf_heap_max_refuses_oversized_append_without_partial(void **state)
{
    (void)state;
    cx_buf_t b;
    cx_buf_init(&b, 10);
    assert_int_equal(cx_buf_puts(&b, "0123456"), 0);
    assert_int_equal(cx_buf_puts(&b, "789A"), CX_ENOSPC);
    assert_string_equal(b.data, "0123456");
    cx_buf_free(&b);
}

static void test_buf_heap_large_printf(void **state)
{
    (void)state;
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cx_buf_t b;
    cx_buf_init(&b, 1 << 20);
    assert_int_equal(cx_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, sizeof big + 1);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    cx_buf_free(&b);
}

static void test_buf_truncate_and_reset(void **state)
{
    (void)state;
    cx_buf_t b;
    cx_buf_init(&b, 100);
    cx_buf_puts(&b, "hello world");
    cx_buf_truncate(&b, 5);
    assert_string_equal(b.data, "hello");
    cx_buf_truncate(&b, 50); /* past len: no-op */
    assert_int_equal(b.len, 5);
    cx_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    cx_buf_free(&b);
}

/* ---- arena ------------------------------------------------------------------------------ */

static void test_arena_allocations_are_aligned_and_zeroed(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 20);
    for (size_t size = 1; size < 200; size += 7) {
        unsigned char *p = cx_arena_alloc(&a, size);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < size; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xAB, size);
    }
    assert_true(a.used <= a.reserved);
    assert_true(a.reserved <= a.limit);
    cx_arena_release(&a);
    assert_int_equal(a.used, 0);
    assert_int_equal(a.reserved, 0);
}

static void test_arena_zero_size_gives_distinct_pointers(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 4096);
    void *p = cx_arena_alloc(&a, 0), *q = cx_arena_alloc(&a, 0);
    assert_non_null(p);
    assert_non_null(q);
    assert_ptr_not_equal(p, q);
    cx_arena_release(&a);
}

/* The non-zeroing allocation draws from the same chunks, aligned and bounded the same way;
 * the zeroing one still zeroes memory an uninit allocation used before a release. */
static void test_arena_alloc_uninit_shares_alignment_and_limit(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 10000);
    unsigned char *p = cx_arena_alloc_uninit(&a, 3);
    unsigned char *q = cx_arena_alloc_uninit(&a, 0);
    assert_non_null(p);
    assert_non_null(q);
    assert_ptr_not_equal(p, q);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal((uintptr_t)q % 16, 0);
    memset(p, 0xAB, 3);
    assert_null(cx_arena_alloc_uninit(&a, 20000));
    assert_true(a.reserved <= 10000);
    cx_arena_release(&a);
    unsigned char *u = cx_arena_alloc_uninit(&a, 64);
    assert_non_null(u);
    memset(u, 0xCD, 64);
    cx_arena_release(&a);
    unsigned char *z = cx_arena_alloc(&a, 64);
    assert_non_null(z);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    cx_arena_release(&a);
}

static void test_arena_limit_is_hard(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 10000);
    size_t got = 0;
    while (cx_arena_alloc(&a, 100) != NULL)
        got += 100;
    assert_true(got > 8000); /* chunk headers cost little */
    assert_true(a.reserved <= 10000);
    assert_null(cx_arena_alloc(&a, 100));
    assert_null(cx_arena_alloc(&a, 20000));
    assert_null(cx_arena_alloc(&a, SIZE_MAX));
    cx_arena_release(&a);
    /* Reusable after release. */
    assert_non_null(cx_arena_alloc(&a, 5000));
    cx_arena_release(&a);
    cx_arena_release(NULL);
    assert_null(cx_arena_alloc(NULL, 1));
}

static void test_arena_large_allocation_beyond_chunk_size(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 8 << 20);
    char *small = cx_arena_alloc(&a, 10);
    char *big = cx_arena_alloc(&a, 1 << 20);
    char *small2 = cx_arena_alloc(&a, 10);
    assert_non_null(small);
    assert_non_null(big);
    assert_non_null(small2);
    memset(big, 1, 1 << 20);
    assert_int_equal((uintptr_t)big % 16, 0);
    /* The small one after the big one still comes from the first chunk. */
    assert_ptr_equal(small2, small + 16);
    cx_arena_release(&a);
}

static void test_arena_strndup_copies_and_terminates(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 4096);
    char *s = cx_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    char *e = cx_arena_strndup(&a, NULL, 0);
    assert_string_equal(e, "");
    cx_arena_release(&a);
}

typedef struct {
    int calls;      /* allocations attempted */
    int fail_after; /* allocations that succeed before the allocator fails */
    int live;       /* allocations not yet freed */
    size_t bytes;
} counting_t;

static void *counting_alloc(void *ud, size_t size)
{
    counting_t *c = ud;
    if (c->calls++ >= c->fail_after)
        return NULL;
    void *p = malloc(size);
    if (p != NULL) {
        c->live++;
        c->bytes += size;
    }
    return p;
}

static void counting_free(void *ud, void *ptr)
{
    counting_t *c = ud;
    if (ptr != NULL)
        c->live--;
    free(ptr);
}

static void test_arena_uses_injected_allocator_and_frees_everything(void **state)
{
    (void)state;
    counting_t c = {0, 1000, 0, 0};
    cx_allocator_t al = {counting_alloc, counting_free, &c};
    cx_arena_t a;
    cx_arena_init(&a, &al, 1 << 22);
    for (int i = 0; i < 1000; i++)
        assert_non_null(cx_arena_alloc(&a, 1000));
    assert_true(c.live > 1);
    assert_int_equal(c.bytes, a.reserved);
    cx_arena_release(&a);
    assert_int_equal(c.live, 0);
}

static void test_arena_failing_allocator_returns_null_and_leaks_nothing(void **state)
{
    (void)state;
    /* Fail at every possible point of a sequence of allocations. */
    for (int fail_after = 0; fail_after < 12; fail_after++) {
        counting_t c = {0, fail_after, 0, 0};
        cx_allocator_t al = {counting_alloc, counting_free, &c};
        cx_arena_t a;
        cx_arena_init(&a, &al, 1 << 24);
        int failed = 0;
        for (int i = 0; i < 10000 && !failed; i++)
            failed = cx_arena_alloc(&a, 3000) == NULL;
        assert_true(failed);
        assert_int_equal(c.calls, fail_after + 1);
        cx_arena_release(&a);
        assert_int_equal(c.live, 0);
    }
}

static void test_arena_protobuf_allocator_draws_from_arena(void **state)
{
    (void)state;
    cx_arena_t a;
    cx_arena_init(&a, NULL, 1 << 16);
    ProtobufCAllocator pa = cx_arena_protobuf_allocator(&a);
    void *p = pa.alloc(pa.allocator_data, 64);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_true(a.used >= 64);
    pa.free(pa.allocator_data, p); /* a no-op: the arena owns it */
    cx_arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names_messages_and_classes_come_from_the_map),
        cmocka_unit_test(test_error_every_code_has_name_message_and_known_class),
        cmocka_unit_test(test_error_unknown_code_is_never_null),
        cmocka_unit_test(test_error_first_error_wins),
        cmocka_unit_test(test_error_null_fmt_uses_strerror_and_null_path_is_empty),
        cmocka_unit_test(test_error_null_err_only_returns_code),
        cmocka_unit_test(test_error_long_message_and_path_are_truncated_terminated),
        cmocka_unit_test(test_buf_fixed_appends_and_stays_terminated),
        cmocka_unit_test(test_buf_fixed_exact_fit_keeps_room_for_nul),
        cmocka_unit_test(test_buf_fixed_overflow_is_enospc_and_sticky),
        cmocka_unit_test(test_buf_fixed_printf_overflow_leaves_no_partial_text),
        cmocka_unit_test(test_buf_fixed_zero_capacity_refuses_everything),
        cmocka_unit_test(test_buf_heap_grows_up_to_max),
        cmocka_unit_test(test_buf_heap_max_refuses_oversized_append_without_partial),
        cmocka_unit_test(test_buf_heap_large_printf),
        cmocka_unit_test(test_buf_truncate_and_reset),
        cmocka_unit_test(test_arena_allocations_are_aligned_and_zeroed),
        cmocka_unit_test(test_arena_zero_size_gives_distinct_pointers),
        cmocka_unit_test(test_arena_alloc_uninit_shares_alignment_and_limit),
        cmocka_unit_test(test_arena_limit_is_hard),
        cmocka_unit_test(test_arena_large_allocation_beyond_chunk_size),
        cmocka_unit_test(test_arena_strndup_copies_and_terminates),
        cmocka_unit_test(test_arena_uses_injected_allocator_and_frees_everything),
        cmocka_unit_test(test_arena_failing_allocator_returns_null_and_leaks_nothing),
        cmocka_unit_test(test_arena_protobuf_allocator_draws_from_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
