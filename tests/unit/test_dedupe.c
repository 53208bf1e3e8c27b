/* Dedupe keys: the template grammar on real generated messages (docs/dedupe-keys.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cx/cx.h"
#include "cx/dedupe_store.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/reactions/v1/reactions.cx.h"
#include "cx/schema.h"

static const unsigned char KEY[] = "test-pseudonym-key-0123456789abcdef";
static const cx_keyring_t KEYRING = {KEY, sizeof KEY - 1};

typedef struct {
    Cx__Common__V1__ChannelRef channel;
    Cx__Common__V1__ConversationRef conversation;
    Cx__Common__V1__ActorRef actor;
    Google__Protobuf__Timestamp at;
} parts_t;

static void init_parts(parts_t *p)
{
    cx__common__v1__channel_ref__init(&p->channel);
    p->channel.channel = "whatsapp";
    p->channel.account_id = "106540352242922";
    cx__common__v1__conversation_ref__init(&p->conversation);
    p->conversation.id = "16315551181";
    cx__common__v1__actor_ref__init(&p->actor);
    p->actor.id = "16315551181";
    google__protobuf__timestamp__init(&p->at);
    p->at.seconds = 1750263779;
}

static const char *key_of(const cx_msg_meta_t *meta, const ProtobufCMessage *m, char *mem,
                          size_t cap, int *rc, cx_error_t *err)
{
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, cap);
    cx_error_clear(err);
    *rc = cx_dedupe_key(meta, m, &KEYRING, &b, err);
    return b.data;
}

static void test_direct_message_key_follows_convention(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_direct_message_t dm;
    cx_messaging_direct_message_init(&dm);
    dm.channel = &p.channel;
    dm.message_id = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
    char mem[512];
    int rc;
    cx_error_t err;
    const char *k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(k, "dm:whatsapp:106540352242922:msg:"
                           "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
}

static void test_colon_and_percent_are_escaped(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_direct_message_t dm;
    cx_messaging_direct_message_init(&dm);
    dm.channel = &p.channel;
    dm.message_id = "a:b%c";
    char mem[256];
    int rc;
    cx_error_t err;
    const char *k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(k, "dm:whatsapp:106540352242922:msg:a%3Ab%25c");
    /* Wherever the byte falls in the 8-byte steps of the scan, alone or with a second one. */
    for (size_t at = 0; at < 20; at++) {
        for (int second = 0; second < 2; second++) {
            char id[32], want[128];
            memset(id, 'x', 20);
            id[20] = '\0';
            id[at] = at % 2 ? ':' : '%';
            if (second)
                id[19 - at % 8] = ':';
            size_t o = (size_t)snprintf(want, sizeof want, "dm:whatsapp:106540352242922:msg:");
            for (size_t i = 0; i < 20; i++)
                o += (size_t)snprintf(want + o, sizeof want - o, "%s",
                                      id[i] == ':' ? "%3A" : id[i] == '%' ? "%25" : "x");
            dm.message_id = id;
            k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
            assert_int_equal(rc, 0);
            assert_string_equal(k, want);
        }
    }
}

/* No store takes a key longer than CX_DEDUPE_KEY_MAX: such a key is refused here, for its item
 * alone, and the caller's buffer is left as it was. */
static void test_key_longer_than_the_store_limit_is_refused(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_direct_message_t dm;
    cx_messaging_direct_message_init(&dm);
    dm.channel = &p.channel;
    const char *prefix = "dm:whatsapp:106540352242922:msg:";
    size_t room = CX_DEDUPE_KEY_MAX - strlen(prefix);
    char id[CX_DEDUPE_KEY_MAX + 1];
    memset(id, 'i', room);
    id[room] = '\0';
    dm.message_id = id;
    char mem[2048];
    int rc;
    cx_error_t err;
    const char *k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(k), CX_DEDUPE_KEY_MAX); /* exactly the limit: accepted */
    id[room] = 'i';
    id[room + 1] = '\0';
    k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, CX_ELIMIT);
    /* Escaping counts: 200 ':' are 600 bytes of key. */
    memset(id, ':', 200);
    id[200] = '\0';
    k = key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, CX_ELIMIT);
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_buf_puts(&b, "kept");
    assert_int_equal(
        cx_dedupe_key(&cx_messaging_direct_message_meta, &dm.base, &KEYRING, &b, &err), CX_ELIMIT);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "kept");
}

static void test_missing_value_is_an_error_never_an_empty_segment(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_direct_message_t dm;
    cx_messaging_direct_message_init(&dm);
    dm.channel = &p.channel; /* message_id left empty */
    char mem[256] = "previous";
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_error_t err;
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_key(&cx_messaging_direct_message_meta, &dm.base, &KEYRING, &b, &err),
                     CX_EDEDUPE_KEY);
    assert_string_equal(err.path, "message_id");
    assert_int_equal(b.len, 0); /* nothing half-written */

    /* A missing submessage on the path is empty too. */
    dm.channel = NULL;
    dm.message_id = "wamid.1";
    cx_buf_reset(&b);
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_key(&cx_messaging_direct_message_meta, &dm.base, &KEYRING, &b, &err),
                     CX_EDEDUPE_KEY);
    assert_string_equal(err.path, "channel.channel");
}

static void test_alternatives_first_non_empty_wins(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_read_receipt_t rr;
    cx_messaging_read_receipt_init(&rr);
    rr.channel = &p.channel;
    rr.conversation = &p.conversation;
    rr.watermark = &p.at;
    char mem[256], a[256];
    int rc;
    cx_error_t err;
    /* No message id: the watermark stands in. */
    const char *k = key_of(&cx_messaging_read_receipt_meta, &rr.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(k, ":1750263779"));
    strcpy(a, k);
    /* With a message id, it wins over the watermark. */
    rr.message_id = "m_1";
    k = key_of(&cx_messaging_read_receipt_meta, &rr.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(k, ":m_1"));
    assert_null(strstr(k, "1750263779"));
    /* Neither: an error naming the first alternative. */
    rr.message_id = "";
    rr.watermark = NULL;
    k = key_of(&cx_messaging_read_receipt_meta, &rr.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, CX_EDEDUPE_KEY);
    assert_string_equal(err.path, "message_id");
}

static void test_pii_segments_are_pseudonymised(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_read_receipt_t rr;
    cx_messaging_read_receipt_init(&rr);
    rr.channel = &p.channel;
    rr.conversation = &p.conversation; /* its id is a phone number (WhatsApp wa_id) */
    rr.message_id = "m_1";
    char mem[256];
    int rc;
    cx_error_t err;
    const char *k = key_of(&cx_messaging_read_receipt_meta, &rr.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, 0);
    assert_null(strstr(k, "16315551181"));
    assert_null(strstr(k, "5551181"));
    char pseudo[17];
    assert_int_equal(cx_pseudonym(&KEYRING, "16315551181", 11, pseudo), 0);
    char want[256];
    snprintf(want, sizeof want, "dm:whatsapp:106540352242922:read:%s:m_1", pseudo);
    assert_string_equal(k, want);

    /* Without a keyring the key is refused, not built with the raw number. */
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_error_clear(&err);
    assert_int_equal(cx_dedupe_key(&cx_messaging_read_receipt_meta, &rr.base, NULL, &b, &err),
                     CX_EINVAL);
    assert_string_equal(err.path, "conversation.id");
    assert_int_equal(b.len, 0);
}

static void test_time_bucket_groups_ten_seconds(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_typing_indicator_t t;
    cx_messaging_typing_indicator_init(&t);
    t.channel = &p.channel;
    t.conversation = &p.conversation;
    t.actor = &p.actor;
    t.occurred_at = &p.at;
    char m1[256], m2[256], m3[256];
    int rc;
    cx_error_t err;
    p.at.seconds = 1750263770;
    key_of(&cx_messaging_typing_indicator_meta, &t.base, m1, sizeof m1, &rc, &err);
    assert_int_equal(rc, 0);
    p.at.seconds = 1750263779;
    p.at.nanos = 999999999;
    key_of(&cx_messaging_typing_indicator_meta, &t.base, m2, sizeof m2, &rc, &err);
    assert_string_equal(m1, m2);
    size_t n = strlen(m1);
    assert_true(n > 11 && strcmp(m1 + n - 11, ":1750263770") == 0);
    p.at.seconds = 1750263780;
    key_of(&cx_messaging_typing_indicator_meta, &t.base, m3, sizeof m3, &rc, &err);
    assert_string_not_equal(m1, m3);
}

static void test_reaction_and_removal_share_prefix(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_reactions_reaction_t r;
    cx_reactions_reaction_init(&r);
    r.channel = &p.channel;
    r.target_kind = CX__REACTIONS__V1__REACTION_TARGET_KIND__REACTION_TARGET_KIND_MESSAGE;
    r.target_id = "wamid.target";
    r.actor = &p.actor;
    r.emoji = "\xF0\x9F\x91\x8D";
    r.occurred_at = &p.at;
    cx_reactions_reaction_removed_t rm;
    cx_reactions_reaction_removed_init(&rm);
    rm.channel = &p.channel;
    rm.target_kind = r.target_kind;
    rm.target_id = r.target_id;
    rm.actor = &p.actor;
    rm.emoji = r.emoji;
    rm.occurred_at = &p.at;
    char a[512], b[512];
    int rc;
    cx_error_t err;
    key_of(&cx_reactions_reaction_meta, &r.base, a, sizeof a, &rc, &err);
    assert_int_equal(rc, 0);
    key_of(&cx_reactions_reaction_removed_meta, &rm.base, b, sizeof b, &rc, &err);
    assert_int_equal(rc, 0);
    assert_true(strncmp(a, "react:whatsapp:106540352242922:message:wamid.target:", 52) == 0);
    const char *prefix_end = a + 52 + 16; /* the actor's pseudonym */
    assert_memory_equal(a, b, (size_t)(prefix_end - a));
    size_t nb = strlen(b);
    assert_string_equal(b + nb - 8, ":removed");
    assert_string_not_equal(a, b);
}

static void test_value_message_has_no_key(void **state)
{
    (void)state;
    Cx__Common__V1__ChannelRef c;
    cx__common__v1__channel_ref__init(&c);
    char mem[64];
    cx_buf_t b;
    cx_buf_init_fixed(&b, mem, sizeof mem);
    cx_error_t err;
    cx_error_clear(&err);
    const cx_msg_meta_t *meta = cx_schema_find("cx.common.v1.ChannelRef");
    assert_non_null(meta);
    assert_int_equal(cx_dedupe_key(meta, &c.base, &KEYRING, &b, &err), CX_EINVAL);
}

static void test_small_buffer_reports_enospc(void **state)
{
    (void)state;
    parts_t p;
    init_parts(&p);
    cx_messaging_direct_message_t dm;
    cx_messaging_direct_message_init(&dm);
    dm.channel = &p.channel;
    dm.message_id = "wamid.1";
    char mem[16];
    int rc;
    cx_error_t err;
    key_of(&cx_messaging_direct_message_meta, &dm.base, mem, sizeof mem, &rc, &err);
    assert_int_equal(rc, CX_ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct_message_key_follows_convention),
        cmocka_unit_test(test_colon_and_percent_are_escaped),
        cmocka_unit_test(test_key_longer_than_the_store_limit_is_refused),
        cmocka_unit_test(test_missing_value_is_an_error_never_an_empty_segment),
        cmocka_unit_test(test_alternatives_first_non_empty_wins),
        cmocka_unit_test(test_pii_segments_are_pseudonymised),
        cmocka_unit_test(test_time_bucket_groups_ten_seconds),
        cmocka_unit_test(test_reaction_and_removal_share_prefix),
        cmocka_unit_test(test_value_message_has_no_key),
        cmocka_unit_test(test_small_buffer_reports_enospc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
