/* The arena JSON reader for connectors (cx/json_reader.h): what it accepts and refuses, the
 * tree and its lookups, numbers, strings, limits, and a failing-allocator pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cx/json_reader.h"

static cx_arena_t arena;
/* What *out holds before a parse, to see that a failure resets it. */
static const cx_mj_t sentinel;

static int setup(void **state)
{
    (void)state;
    cx_arena_init(&arena, NULL, (size_t)16 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cx_arena_release(&arena);
    return 0;
}

/* Parses a NUL-terminated text; asserts success. */
static const cx_mj_t *ok(const char *text)
{
    const cx_mj_t *v = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_mj_parse(&arena, text, strlen(text), &v, &err), 0);
    assert_non_null(v);
    return v;
}

/* Parses text[0..len); returns the code and checks err carries it with a message. */
static int fails(const char *text, size_t len)
{
    const cx_mj_t *v = &sentinel;
    cx_error_t err;
    cx_error_clear(&err);
    int rc = cx_mj_parse(&arena, text, len, &v, &err);
    assert_int_not_equal(rc, 0);
    assert_null(v);
    assert_int_equal(err.code, rc);
    assert_true(err.message[0] != '\0');
    return rc;
}

static int fails_str(const char *text)
{
    return fails(text, strlen(text));
}

/* Parses text[0..len); asserts the code and the message. */
static void fails_why(const char *text, size_t len, int code, const char *why)
{
    const cx_mj_t *v = &sentinel;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_mj_parse(&arena, text, len, &v, &err), code);
    assert_null(v);
    assert_int_equal(err.code, code);
    assert_string_equal(err.message, why);
}

/* ---- structure -------------------------------------------------------------------------- */

static void test_object_members_items_and_lookups(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("{\"account\":\"acc-1\",\"items\":[{\"id\":\"m1\"},2,null,true,false]}");
    assert_true(cx_mj_is(v, CX_MJ_OBJECT));
    assert_int_equal(cx_mj_len(v), 2);
    assert_string_equal(cx_mj_gets(v, "account"), "acc-1");
    const cx_mj_t *items = cx_mj_get(v, "items");
    assert_true(cx_mj_is(items, CX_MJ_ARRAY));
    assert_int_equal(cx_mj_len(items), 5);
    assert_string_equal(cx_mj_gets(cx_mj_at(items, 0), "id"), "m1");
    assert_true(cx_mj_is(cx_mj_at(items, 1), CX_MJ_NUMBER));
    assert_true(cx_mj_is(cx_mj_at(items, 2), CX_MJ_NULL));
    assert_true(cx_mj_true(cx_mj_at(items, 3)));
    assert_false(cx_mj_true(cx_mj_at(items, 4)));
    assert_true(cx_mj_is(cx_mj_at(items, 4), CX_MJ_FALSE));
}

static void test_lookups_on_missing_or_wrong_types_are_null(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("{\"a\":[1],\"s\":\"x\"}");
    assert_null(cx_mj_get(v, "absent"));
    assert_null(cx_mj_get(NULL, "a"));
    assert_null(cx_mj_get(cx_mj_get(v, "a"), "a")); /* an array has no members */
    assert_null(cx_mj_at(v, 0));                    /* an object has no items */
    assert_null(cx_mj_at(cx_mj_get(v, "a"), 1));    /* past the end */
    assert_null(cx_mj_at(NULL, 0));
    assert_null(cx_mj_gets(v, "a")); /* not a string */
    assert_null(cx_mj_str(NULL));
    assert_int_equal(cx_mj_len(cx_mj_get(v, "s")), 0);
    /* Names sharing a first byte, a prefix, and the empty name. */
    v = ok("{\"ab\":1,\"aa\":2,\"\":3,\"a\":4}");
    assert_string_equal(cx_mj_gets(ok("{\"ab\":\"x\",\"aa\":\"y\"}"), "aa"), "y");
    double d = 0;
    assert_int_equal(cx_mj_number(cx_mj_get(v, "aa"), &d), 0);
    assert_true(d == 2);
    assert_int_equal(cx_mj_number(cx_mj_get(v, ""), &d), 0);
    assert_true(d == 3);
    assert_int_equal(cx_mj_number(cx_mj_get(v, "a"), &d), 0);
    assert_true(d == 4);
    assert_null(cx_mj_get(v, "abc"));
    assert_int_equal(cx_mj_len(NULL), 0);
    assert_false(cx_mj_is(NULL, CX_MJ_NULL));
    assert_false(cx_mj_true(NULL));
}

static void test_empty_containers_and_surrounding_whitespace(void **state)
{
    (void)state;
    const cx_mj_t *v = ok(" \t\r\n{ \"a\" : [ ] , \"b\" : { } } \n");
    assert_int_equal(cx_mj_len(cx_mj_get(v, "a")), 0);
    assert_true(cx_mj_is(cx_mj_get(v, "a"), CX_MJ_ARRAY));
    assert_true(cx_mj_is(cx_mj_get(v, "b"), CX_MJ_OBJECT));
    assert_true(cx_mj_is(ok("[]"), CX_MJ_ARRAY));
    assert_true(cx_mj_is(ok("{}"), CX_MJ_OBJECT));
}

static void test_any_value_at_top_level(void **state)
{
    (void)state;
    assert_string_equal(cx_mj_str(ok("\"x\"")), "x");
    assert_true(cx_mj_is(ok("null"), CX_MJ_NULL));
    assert_true(cx_mj_true(ok("true")));
    assert_int_equal(ok(" 42 ")->u.num.i, 42);
}

static void test_duplicate_keys_are_kept_and_lookup_returns_first(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("{\"id\":\"first\",\"id\":\"second\"}");
    assert_int_equal(cx_mj_len(v), 2);
    assert_string_equal(cx_mj_gets(v, "id"), "first");
    assert_string_equal(v->u.members[1].key, "id");
    assert_string_equal(cx_mj_str(&v->u.members[1].value), "second");
}

static void test_large_array_of_containers_keeps_order(void **state)
{
    (void)state;
    /* more children than the parser's inline scratch stack, nested, so it grows on the heap */
    size_t n = 1000;
    char *text = malloc(n * 32 + 16);
    assert_non_null(text);
    size_t o = 0;
    text[o++] = '[';
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(text + o, "%s{\"i\":%zu,\"a\":[%zu]}", i ? "," : "", i, i);
    text[o++] = ']';
    text[o] = '\0';
    const cx_mj_t *v = ok(text);
    free(text);
    assert_int_equal(cx_mj_len(v), n);
    for (size_t i = 0; i < n; i++) {
        const cx_mj_t *item = cx_mj_at(v, i);
        assert_int_equal(cx_mj_get(item, "i")->u.num.i, (int64_t)i);
        assert_int_equal(cx_mj_at(cx_mj_get(item, "a"), 0)->u.num.i, (int64_t)i);
    }
}

/* ---- strings ---------------------------------------------------------------------------- */

static void test_string_escapes_are_unescaped_once(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]");
    const cx_mj_t *s = cx_mj_at(v, 0);
    assert_string_equal(cx_mj_str(s), "a\"b\\c/d\b\f\n\r\t");
    assert_int_equal(s->n, 12);
}

static void test_unicode_escapes_become_utf8_and_pairs_combine(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
    assert_string_equal(cx_mj_str(v), "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(v->n, 10);
}

static void test_raw_utf8_is_kept_as_is(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("\"h\xc3\xa9llo \xf0\x9f\x98\x80\"");
    assert_string_equal(cx_mj_str(v), "h\xc3\xa9llo \xf0\x9f\x98\x80");
}

static void test_string_bad_escapes_are_ejson(void **state)
{
    (void)state;
    assert_int_equal(fails_str("\"\\x\""), CX_EJSON);
    assert_int_equal(fails_str("\"\\u12\""), CX_EJSON);
    assert_int_equal(fails_str("\"\\u12g4\""), CX_EJSON);
    assert_int_equal(fails_str("\"abc\\"), CX_EJSON);
}

static void test_lone_surrogates_and_nul_escape_are_ejson(void **state)
{
    (void)state;
    assert_int_equal(fails_str("\"\\ud800\""), CX_EJSON);
    assert_int_equal(fails_str("\"\\ud800x\""), CX_EJSON);
    assert_int_equal(fails_str("\"\\ud800\\u0041\""), CX_EJSON);
    assert_int_equal(fails_str("\"\\udc00\""), CX_EJSON);
    assert_int_equal(fails_str("\"a\\u0000b\""), CX_EJSON);
}

static void test_invalid_utf8_and_control_characters_are_ejson(void **state)
{
    (void)state;
    assert_int_equal(fails_str("\"\xc0\xaf\""), CX_EJSON);         /* overlong */
    assert_int_equal(fails_str("\"\xed\xa0\x80\""), CX_EJSON);     /* encoded surrogate */
    assert_int_equal(fails_str("\"\xf5\x80\x80\x80\""), CX_EJSON); /* past U+10FFFF */
    assert_int_equal(fails_str("\"\xe2\x82\""), CX_EJSON);         /* truncated */
    assert_int_equal(fails_str("\"\xff\""), CX_EJSON);
    assert_int_equal(fails_str("\"a\x01z\""), CX_EJSON);
    assert_int_equal(fails_str("\"a\nz\""), CX_EJSON);
    assert_int_equal(fails("\"a\0z\"", 5), CX_EJSON); /* a raw NUL is a control character */
}

static void test_unterminated_string_is_ejson(void **state)
{
    (void)state;
    assert_int_equal(fails_str("\"abc"), CX_EJSON);
    assert_int_equal(fails_str("{\"abc"), CX_EJSON);
}

/* Strings are produced in place in the reader's copy of the input: these pin what that can get
 * wrong (a NUL or an unescaped byte landing on a neighbour, a run moved to the wrong place, the
 * 8-byte scan missing a special byte or reading past the end). */

static void test_escape_at_the_very_end_of_a_string(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[\"abc\\n\",\"\\\\\",\"x\\u00e9\",\"y\\ud83d\\ude00\",\"\\\"\"]");
    const char *want[] = {"abc\n", "\\", "x\xc3\xa9", "y\xf0\x9f\x98\x80", "\""};
    assert_int_equal(cx_mj_len(v), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(cx_mj_str(cx_mj_at(v, i)), want[i]);
        assert_int_equal(cx_mj_at(v, i)->n, strlen(want[i]));
    }
    assert_string_equal(cx_mj_str(ok("\"\\t\"")), "\t");
}

static void test_adjacent_strings_keep_their_own_bytes(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[\"a\",\"\",\"bc\",\"\\n\",\"\\u0041\",\"d\"]");
    const char *want[] = {"a", "", "bc", "\n", "A", "d"};
    assert_int_equal(cx_mj_len(v), 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(cx_mj_str(cx_mj_at(v, i)), want[i]);
        assert_int_equal(cx_mj_at(v, i)->n, strlen(want[i]));
    }
    v = ok("{\"a\":\"b\",\"c\\t\":\"d\\\"\",\"\":\"\"}");
    assert_string_equal(cx_mj_gets(v, "a"), "b");
    assert_string_equal(cx_mj_gets(v, "c\t"), "d\"");
    assert_string_equal(cx_mj_gets(v, ""), "");
}

static void test_unicode_escapes_of_every_width_between_plain_runs(void **state)
{
    (void)state;
    /* 6 input bytes give 1, 2 and 3 output bytes, 12 give 4: the plain runs between them move
     * back by the difference, which grows along the string */
    const cx_mj_t *v = ok("\"ab\\u0041cdefghij\\u00e9klmnopqr\\u20acstuvwxyz0\\ud83d\\ude00"
                          "123456789\\ud83d\\ude00\\u20ac\\u00e9\\u0041!\"");
    const char *want = "abAcdefghij\xc3\xa9klmnopqr\xe2\x82\xacstuvwxyz0\xf0\x9f\x98\x80"
                       "123456789\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9"
                       "A!";
    assert_string_equal(cx_mj_str(v), want);
    assert_int_equal(v->n, strlen(want));
}

static void test_surrogate_pairs_at_start_end_and_in_a_row(void **state)
{
    (void)state;
    const cx_mj_t *v =
        ok("[\"\\ud83d\\ude00x\",\"x\\uD83D\\uDE00\",\"\\ud800\\udc00\\udbff\\udfff\"]");
    assert_string_equal(cx_mj_str(cx_mj_at(v, 0)), "\xf0\x9f\x98\x80x");
    assert_string_equal(cx_mj_str(cx_mj_at(v, 1)), "x\xf0\x9f\x98\x80");
    assert_string_equal(cx_mj_str(cx_mj_at(v, 2)), "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
    assert_int_equal(cx_mj_at(v, 2)->n, 8);
}

static void test_keys_with_escapes_are_unescaped(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("{\"a\\u0062c\":1,\"\\n\":2,\"\\u00e9t\\u00e9\":3,\"q\\\"\":\"x\"}");
    assert_int_equal(cx_mj_get(v, "abc")->u.num.i, 1);
    assert_int_equal(cx_mj_get(v, "\n")->u.num.i, 2);
    assert_int_equal(cx_mj_get(v, "\xc3\xa9t\xc3\xa9")->u.num.i, 3);
    assert_string_equal(cx_mj_gets(v, "q\""), "x");
}

static void test_string_without_closing_quote_at_end_of_input(void **state)
{
    (void)state;
    const char *bad[] = {"\"",
                         "\"abc",
                         "[\"abc",
                         "{\"a\":\"b",
                         "{\"a",
                         "\"ab\\n",
                         "\"ab\\u00e9",
                         "\"\\ud83d\\ude00",
                         "\"\xc3\xa9",
                         "\"\\\\",
                         "\"0123456789abcdef"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        fails_why(bad[i], strlen(bad[i]), CX_EJSON, "unterminated string");
    fails_why("\"ab\\", 4, CX_EJSON, "unterminated string");
    fails_why("\"ab\\u12", 7, CX_EJSON, "bad \\u escape");
    fails_why("\"ab\\ud83d\\ude0", 14, CX_EJSON, "lone surrogate in a \\u escape");
    fails_why("\"ab\xe2\x82", 5, CX_EJSON, "invalid UTF-8 in a string");
    /* the closing quote just past len is not read */
    fails_why("\"abc\"", 4, CX_EJSON, "unterminated string");
}

static void test_nul_bytes_inside_the_input_are_refused_where_they_stand(void **state)
{
    (void)state;
    fails_why("\"a\0b\"", 5, CX_EJSON, "control character in a string");
    fails_why("\"\0", 2, CX_EJSON, "control character in a string");
    fails_why("[\0]", 3, CX_EJSON, "bad number");
    fails_why("[1\0]", 4, CX_EJSON, "expected ',' or ']'");
    fails_why("{\0}", 3, CX_EJSON, "expected a member name");
    fails_why("{\"a\"\0:1}", 8, CX_EJSON, "expected ':'");
    fails_why("1\0", 2, CX_EJSON, "trailing bytes after the JSON value");
    fails_why("tru\0", 4, CX_EJSON, "unexpected character");
    fails_why("", 0, CX_EJSON, "unexpected end of input");
    fails_why("[1", 2, CX_EJSON, "unterminated container");
    fails_why("[", 1, CX_EJSON, "unexpected end of input");
    fails_why("nul", 3, CX_EJSON, "unexpected character");
}

/* The 8-byte scan: a special byte at every offset 0..15 of a string that starts at every
 * offset 0..7 of the input, so it falls in every lane of the first, second and third word. */
static void test_special_byte_at_every_offset_and_alignment(void **state)
{
    (void)state;
    static const struct {
        const char *in;  /* what stands at the offset */
        const char *out; /* what it becomes, NULL when refused */
        const char *why; /* the message when refused */
    } specials[] = {
        {"\\n", "\n", NULL},
        {"\\\"", "\"", NULL},
        {"\\u00e9", "\xc3\xa9", NULL},
        {"\\ud83d\\ude00", "\xf0\x9f\x98\x80", NULL},
        {"\xc3\xa9", "\xc3\xa9", NULL},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", NULL},
        {"\x7f", "\x7f", NULL}, /* DEL is a plain byte */
        {" ", " ", NULL},
        {"!", "!", NULL}, /* '"' - 1 and '"' + 1, '\\' - 1 and '\\' + 1 */
        {"#", "#", NULL},
        {"[", "[", NULL},
        {"]", "]", NULL},
        {"\x1f", NULL, "control character in a string"},
        {"\x01", NULL, "control character in a string"},
        {"\xc3", NULL, "invalid UTF-8 in a string"},
        {"\x80", NULL, "invalid UTF-8 in a string"},
        {"\\x", NULL, "bad escape"},
    };
    char text[128], want[128];
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        for (size_t align = 0; align < 8; align++) {
            for (size_t off = 0; off < 16; off++) {
                size_t o = 0, w = 0;
                memset(text, ' ', align);
                o = align;
                text[o++] = '[';
                text[o++] = '"';
                for (size_t i = 0; i < off; i++)
                    text[o++] = want[w++] = (char)('a' + i);
                memcpy(text + o, specials[k].in, strlen(specials[k].in));
                o += strlen(specials[k].in);
                if (specials[k].out) {
                    memcpy(want + w, specials[k].out, strlen(specials[k].out));
                    w += strlen(specials[k].out);
                }
                for (size_t i = 0; i < 17; i++)
                    text[o++] = want[w++] = (char)('A' + i);
                want[w] = '\0';
                memcpy(text + o, "\",\"z\"]", 6);
                o += 6;
                if (specials[k].out == NULL) {
                    fails_why(text, o, CX_EJSON, specials[k].why);
                    continue;
                }
                const cx_mj_t *v = NULL;
                assert_int_equal(cx_mj_parse(&arena, text, o, &v, NULL), 0);
                assert_string_equal(cx_mj_str(cx_mj_at(v, 0)), want);
                assert_int_equal(cx_mj_at(v, 0)->n, w);
                assert_string_equal(cx_mj_str(cx_mj_at(v, 1)), "z");
            }
        }
    }
}

/* A string ending at every offset 0..23 of the input without its closing quote: the scan stops
 * at the end of the input whatever its alignment. */
static void test_unterminated_string_of_every_length(void **state)
{
    (void)state;
    char text[32];
    for (size_t n = 0; n < 24; n++) {
        text[0] = '"';
        memset(text + 1, 'x', n);
        text[n + 1] = '"'; /* past len: not part of the input */
        fails_why(text, n + 1, CX_EJSON, "unterminated string");
        assert_int_equal(cx_mj_parse(&arena, text, n + 2, &(const cx_mj_t *){NULL}, NULL), 0);
    }
}

static void test_tree_does_not_reference_the_input(void **state)
{
    (void)state;
    const char *json = "{\"k\\u0065y\":[\"plain\",\"esc\\naped\",12,\"\"],\"b\":true}";
    size_t len = strlen(json);
    char *text = malloc(len);
    assert_non_null(text);
    memcpy(text, json, len);
    const cx_mj_t *v = NULL;
    assert_int_equal(cx_mj_parse(&arena, text, len, &v, NULL), 0);
    memset(text, '#', len);
    free(text);
    const cx_mj_t *a = cx_mj_get(v, "key");
    assert_string_equal(cx_mj_str(cx_mj_at(a, 0)), "plain");
    assert_string_equal(cx_mj_str(cx_mj_at(a, 1)), "esc\naped");
    assert_int_equal(cx_mj_at(a, 2)->u.num.i, 12);
    assert_string_equal(cx_mj_str(cx_mj_at(a, 3)), "");
    assert_true(cx_mj_true(cx_mj_get(v, "b")));
}

/* ---- numbers ---------------------------------------------------------------------------- */

static void test_integers_that_fit_int64_are_exact(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[0,-0,7,-7,123456789012345678,9223372036854775806,"
                          "-9223372036854775807]");
    int64_t want[] = {0,
                      0,
                      7,
                      -7,
                      123456789012345678,
                      INT64_C(9223372036854775806),
                      -INT64_C(9223372036854775807)};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const cx_mj_t *n = cx_mj_at(v, i);
        assert_true(cx_mj_is(n, CX_MJ_NUMBER));
        assert_true(n->is_int);
        assert_true(n->u.num.i == want[i]);
        assert_true(n->u.num.d == (double)want[i]);
    }
}

static void test_fractions_exponents_and_huge_integers_are_doubles(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[0.5,-1.25e2,1E+3,1e-3,99999999999999999999,1.0]");
    double want[] = {0.5, -125.0, 1000.0, 0.001, 1e20, 1.0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const cx_mj_t *n = cx_mj_at(v, i);
        assert_false(n->is_int);
        assert_true(n->u.num.d == want[i]);
    }
}

static void test_bad_numbers_are_ejson(void **state)
{
    (void)state;
    const char *bad[] = {"01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "-a", "1.e3", "NaN"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(fails_str(bad[i]), CX_EJSON);
}

static void test_number_text_longer_than_limit_is_elimit(void **state)
{
    (void)state;
    char text[1200];
    memset(text, '1', sizeof text - 1);
    text[1] = '.';
    text[sizeof text - 1] = '\0';
    assert_int_equal(fails_str(text), CX_ELIMIT);
}

static void test_text_renders_strings_and_integers(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("{\"s\":\"123\",\"i\":-9007199254740993,\"d\":1.5,\"n\":null}");
    int nomem = 0;
    assert_string_equal(cx_mj_text(&arena, cx_mj_get(v, "s"), &nomem), "123");
    assert_string_equal(cx_mj_text(&arena, cx_mj_get(v, "i"), &nomem), "-9007199254740993");
    assert_null(cx_mj_text(&arena, cx_mj_get(v, "d"), &nomem));
    assert_null(cx_mj_text(&arena, cx_mj_get(v, "n"), &nomem));
    assert_null(cx_mj_text(&arena, NULL, &nomem));
    assert_int_equal(nomem, 0);
}

static void test_number_accepts_numbers_and_decimal_strings(void **state)
{
    (void)state;
    const cx_mj_t *v = ok("[37.44,\"37.44\",\"-2\",\"abc\",\"1e999\",\"\",null,1e999]");
    double d = 0;
    assert_int_equal(cx_mj_number(cx_mj_at(v, 0), &d), 0);
    assert_true(d == 37.44);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 1), &d), 0);
    assert_true(d == 37.44);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 2), &d), 0);
    assert_true(d == -2.0);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 3), &d), -1);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 4), &d), -1); /* not finite */
    assert_int_equal(cx_mj_number(cx_mj_at(v, 5), &d), -1);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 6), &d), -1);
    assert_int_equal(cx_mj_number(cx_mj_at(v, 7), &d), -1);
    assert_int_equal(cx_mj_number(NULL, &d), -1);
}

/* ---- refusals and limits ---------------------------------------------------------------- */

static void test_not_json_is_ejson(void **state)
{
    (void)state;
    const char *bad[] = {"",          " ",        "{",     "[1,]",        "[1 2]",
                         "{\"a\" 1}", "{\"a\":}", "{a:1}", "{\"a\":1,}",  "tru",
                         "nul",       "falsey",   "[1]]",  "{\"a\":1} x", "'a'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(fails_str(bad[i]), CX_EJSON);
    const cx_mj_t *v = &sentinel;
    assert_int_equal(cx_mj_parse(&arena, NULL, 0, &v, NULL), CX_EJSON);
    assert_null(v);
}

static void test_nesting_to_max_depth_is_accepted_one_more_is_elimit(void **state)
{
    (void)state;
    const size_t max = CX_MJ_MAX_DEPTH;
    char text[2 * (CX_MJ_MAX_DEPTH + 1) + 1];
    memset(text, '[', max);
    memset(text + max, ']', max);
    text[2 * max] = '\0';
    ok(text);
    memset(text, '[', max + 1);
    memset(text + max + 1, ']', max + 1);
    text[2 * (max + 1)] = '\0';
    assert_int_equal(fails_str(text), CX_ELIMIT);
}

static void test_error_text_never_quotes_the_payload(void **state)
{
    (void)state;
    const char *text = "{\"token\":\"s3cr3t-value\" \"x\"}";
    cx_error_t err;
    cx_error_clear(&err);
    const cx_mj_t *v;
    assert_int_equal(cx_mj_parse(&arena, text, strlen(text), &v, &err), CX_EJSON);
    assert_null(strstr(err.message, "s3cr3t"));
    assert_null(strstr(err.message, "token"));
}

static void test_arena_limit_is_enospc(void **state)
{
    (void)state;
    cx_arena_t small;
    cx_arena_init(&small, NULL, 512);
    char text[4096];
    size_t o = 0;
    text[o++] = '[';
    for (int i = 0; i < 200; i++)
        o += (size_t)sprintf(text + o, "%s\"v%d\"", i ? "," : "", i);
    text[o++] = ']';
    const cx_mj_t *v;
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_mj_parse(&small, text, o, &v, &err), CX_ENOSPC);
    assert_int_equal(err.code, CX_ENOSPC);
    cx_arena_release(&small);
}

/* An allocator failing after a number of calls; counts what is still allocated. */
typedef struct {
    int left;
    int live;
} failing_t;

static void *failing_alloc(void *ud, size_t size)
{
    failing_t *f = ud;
    if (f->left-- <= 0)
        return NULL;
    void *p = malloc(size);
    if (p)
        f->live++;
    return p;
}

static void failing_free(void *ud, void *ptr)
{
    failing_t *f = ud;
    if (ptr)
        f->live--;
    free(ptr);
}

static void test_failing_allocator_is_enospc_at_every_step_and_leaks_nothing(void **state)
{
    (void)state;
    /* Large enough to need several arena chunks and the heap scratch stack. */
    size_t cap = 200000, o = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    o += (size_t)sprintf(text + o, "{\"items\":[");
    for (int i = 0; i < 3000; i++)
        o +=
            (size_t)sprintf(text + o, "%s{\"id\":\"m%d\",\"t\":\"\\u00e9%d\"}", i ? "," : "", i, i);
    o += (size_t)sprintf(text + o, "]}");
    int succeeded = 0;
    for (int budget = 0; budget < 64 && !succeeded; budget++) {
        failing_t f = {budget, 0};
        cx_allocator_t al = {failing_alloc, failing_free, &f};
        cx_arena_t a;
        cx_arena_init(&a, &al, (size_t)64 << 20);
        const cx_mj_t *v;
        int rc = cx_mj_parse(&a, text, o, &v, NULL);
        if (rc == 0) {
            succeeded = 1;
            assert_int_equal(cx_mj_len(cx_mj_get(v, "items")), 3000);
        } else {
            assert_int_equal(rc, CX_ENOSPC);
        }
        cx_arena_release(&a);
        assert_int_equal(f.live, 0);
    }
    assert_true(succeeded);
    free(text);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_object_members_items_and_lookups),
        T(test_lookups_on_missing_or_wrong_types_are_null),
        T(test_empty_containers_and_surrounding_whitespace),
        T(test_any_value_at_top_level),
        T(test_duplicate_keys_are_kept_and_lookup_returns_first),
        T(test_large_array_of_containers_keeps_order),
        T(test_string_escapes_are_unescaped_once),
        T(test_unicode_escapes_become_utf8_and_pairs_combine),
        T(test_raw_utf8_is_kept_as_is),
        T(test_string_bad_escapes_are_ejson),
        T(test_lone_surrogates_and_nul_escape_are_ejson),
        T(test_invalid_utf8_and_control_characters_are_ejson),
        T(test_unterminated_string_is_ejson),
        T(test_escape_at_the_very_end_of_a_string),
        T(test_adjacent_strings_keep_their_own_bytes),
        T(test_unicode_escapes_of_every_width_between_plain_runs),
        T(test_surrogate_pairs_at_start_end_and_in_a_row),
        T(test_keys_with_escapes_are_unescaped),
        T(test_string_without_closing_quote_at_end_of_input),
        T(test_nul_bytes_inside_the_input_are_refused_where_they_stand),
        T(test_special_byte_at_every_offset_and_alignment),
        T(test_unterminated_string_of_every_length),
        T(test_tree_does_not_reference_the_input),
        T(test_integers_that_fit_int64_are_exact),
        T(test_fractions_exponents_and_huge_integers_are_doubles),
        T(test_bad_numbers_are_ejson),
        T(test_number_text_longer_than_limit_is_elimit),
        T(test_text_renders_strings_and_integers),
        T(test_number_accepts_numbers_and_decimal_strings),
        T(test_not_json_is_ejson),
        T(test_nesting_to_max_depth_is_accepted_one_more_is_elimit),
        T(test_error_text_never_quotes_the_payload),
        T(test_arena_limit_is_enospc),
        T(test_failing_allocator_is_enospc_at_every_step_and_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
