/* Validation on real generated messages: one valid and one invalid case per rule kind, each
 * asserting the exact path and rule id; format tables; the registry and the generated field
 * tables (this last check guards the generator). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cx/automation/v1/automation.cx.h"
#include "cx/calendar/v1/calendar.cx.h"
#include "cx/common/v1/common.cx.h"
#include "cx/email/v1/email.cx.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/schema.h"
#include "google/protobuf/timestamp.pb-c.h"

#define CAP 64

typedef struct {
    cx_violation_t items[CAP];
    cx_violations_t v;
    int rc;
} result_t;

static void run(const cx_msg_meta_t *meta, const ProtobufCMessage *m, result_t *r)
{
    memset(r, 0, sizeof *r);
    r->v.items = r->items;
    r->v.cap = CAP;
    r->rc = cx_validate(meta, m, &r->v);
}

static const cx_violation_t *find(const result_t *r, const char *path, const char *rule)
{
    for (size_t i = 0; i < r->v.count && i < r->v.cap; i++)
        if (strcmp(r->items[i].path, path) == 0 && strcmp(r->items[i].rule, rule) == 0)
            return &r->items[i];
    return NULL;
}

static void dump(const result_t *r)
{
    for (size_t i = 0; i < r->v.count && i < r->v.cap; i++)
        print_message("  violation %zu: %s %s: %s\n", i, r->items[i].path, r->items[i].rule,
                      r->items[i].message);
}

static void expect_valid(const result_t *r)
{
    if (r->v.count != 0)
        dump(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->v.count, 0);
}

/* Exactly one violation, at path with rule. */
static void expect_only(const result_t *r, const char *path, const char *rule)
{
    if (r->v.count != 1 || find(r, path, rule) == NULL) {
        print_message("expected only %s %s\n", path, rule);
        dump(r);
    }
    assert_int_equal(r->rc, CX_EVALIDATION);
    assert_int_equal(r->v.count, 1);
    assert_non_null(find(r, path, rule));
}

static void expect_has(const result_t *r, const char *path, const char *rule)
{
    if (find(r, path, rule) == NULL) {
        print_message("expected %s %s\n", path, rule);
        dump(r);
    }
    assert_int_equal(r->rc, CX_EVALIDATION);
    assert_non_null(find(r, path, rule));
}

static void expect_none_at(const result_t *r, const char *path)
{
    for (size_t i = 0; i < r->v.count && i < r->v.cap; i++) {
        if (strcmp(r->items[i].path, path) == 0) {
            dump(r);
            fail_msg("unexpected violation at %s", path);
        }
    }
}

/* Messages name limits, never the value. Values of a few characters ("+", "e") occur in any
 * text by chance, so only longer ones are looked for. */
static void expect_value_not_in_messages(const result_t *r, const char *value)
{
    if (strlen(value) < 4)
        return;
    for (size_t i = 0; i < r->v.count && i < r->v.cap; i++)
        assert_null(strstr(r->items[i].message, value));
}

/* ---- Fixtures --------------------------------------------------------------------------- */

typedef struct {
    Cx__Common__V1__ChannelRef channel;
    Cx__Common__V1__ConversationRef conversation;
    Cx__Common__V1__ActorRef sender;
    Google__Protobuf__Timestamp at;
    Cx__Messaging__V1__DirectMessage dm;
} dm_fixture_t;

static void dm_fixture(dm_fixture_t *f)
{
    cx__common__v1__channel_ref__init(&f->channel);
    f->channel.channel = "whatsapp";
    f->channel.account_id = "106540352242922";
    cx__common__v1__conversation_ref__init(&f->conversation);
    f->conversation.id = "16315551181";
    cx__common__v1__actor_ref__init(&f->sender);
    f->sender.id = "16315551181";
    google__protobuf__timestamp__init(&f->at);
    f->at.seconds = 1750263779;
    cx__messaging__v1__direct_message__init(&f->dm);
    f->dm.channel = &f->channel;
    f->dm.message_id = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
    f->dm.conversation = &f->conversation;
    f->dm.sender = &f->sender;
    f->dm.direction = CX__MESSAGING__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
    f->dm.content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
    f->dm.occurred_at = &f->at;
    f->dm.text = "hello";
}

#define N_ATTENDEES 3
typedef struct {
    Cx__Calendar__V1__EventTime start, end;
    Google__Protobuf__Timestamp start_at, end_at;
    Cx__Calendar__V1__Attendee attendee[N_ATTENDEES];
    Cx__Calendar__V1__Attendee *attendees[N_ATTENDEES];
    Cx__Calendar__V1__CalendarEvent ev;
} cal_fixture_t;

static void cal_fixture(cal_fixture_t *f)
{
    static const char *const emails[N_ATTENDEES] = {"ana@example.com", "bo@example.org",
                                                    "cy@example.net"};
    google__protobuf__timestamp__init(&f->start_at);
    f->start_at.seconds = 1750262400;
    google__protobuf__timestamp__init(&f->end_at);
    f->end_at.seconds = 1750266000;
    cx__calendar__v1__event_time__init(&f->start);
    f->start.value_case = CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE_TIME;
    f->start.date_time = &f->start_at;
    f->start.time_zone = "Europe/Paris";
    cx__calendar__v1__event_time__init(&f->end);
    f->end.value_case = CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE_TIME;
    f->end.date_time = &f->end_at;
    for (int i = 0; i < N_ATTENDEES; i++) {
        cx__calendar__v1__attendee__init(&f->attendee[i]);
        f->attendee[i].email = (char *)emails[i];
        f->attendees[i] = &f->attendee[i];
    }
    cx__calendar__v1__calendar_event__init(&f->ev);
    f->ev.provider = "google";
    f->ev.calendar_id = "primary";
    f->ev.event_id = "evt123";
    f->ev.status = CX__CALENDAR__V1__EVENT_STATUS__EVENT_STATUS_CONFIRMED;
    f->ev.start = &f->start;
    f->ev.end = &f->end;
    f->ev.n_attendees = N_ATTENDEES;
    f->ev.attendees = f->attendees;
}

typedef struct {
    Cx__Common__V1__ChannelRef channel;
    Cx__Common__V1__ConversationRef conversation;
    Cx__Common__V1__ActorRef reader;
    Google__Protobuf__Timestamp at, watermark;
    Cx__Messaging__V1__ReadReceipt rr;
} rr_fixture_t;

static void rr_fixture(rr_fixture_t *f)
{
    cx__common__v1__channel_ref__init(&f->channel);
    f->channel.channel = "messenger";
    f->channel.account_id = "1234567890";
    cx__common__v1__conversation_ref__init(&f->conversation);
    f->conversation.id = "24680";
    cx__common__v1__actor_ref__init(&f->reader);
    f->reader.id = "24680";
    google__protobuf__timestamp__init(&f->at);
    f->at.seconds = 1750263779;
    google__protobuf__timestamp__init(&f->watermark);
    f->watermark.seconds = 1750263000;
    cx__messaging__v1__read_receipt__init(&f->rr);
    f->rr.channel = &f->channel;
    f->rr.conversation = &f->conversation;
    f->rr.reader = &f->reader;
    f->rr.occurred_at = &f->at;
}

/* ---- Fixtures are valid ----------------------------------------------------------------- */

static void test_valid_direct_message_has_no_violations(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
    /* The typed wrapper is the same engine. */
    assert_int_equal(cx_messaging_direct_message_validate(&f.dm, NULL), 0);
}

static void test_valid_calendar_event_has_no_violations(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_valid(&r);
}

/* ---- required --------------------------------------------------------------------------- */

static void test_required_string_empty_reports_required(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.message_id = "";
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "message_id", "required");
}

static void test_required_nested_field_path_uses_proto_names(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.channel.account_id = "";
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "channel.account_id", "required");
}

static void test_required_message_null_reports_required(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.sender = NULL;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "sender", "required");
}

static void test_required_timestamp_null_reports_required(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.occurred_at = NULL;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "occurred_at", "required");
}

static void test_required_enum_zero_reports_required(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.direction = 0;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "direction", "required");
}

/* ---- required_if ------------------------------------------------------------------------ */

static void test_required_if_text_content_without_text(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.text = "";
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "text", "message.required_if");
    assert_non_null(strstr(r.items[0].message, "content_type"));
    assert_non_null(strstr(r.items[0].message, "MESSAGE_CONTENT_TYPE_TEXT"));
}

static void test_required_if_image_needs_attachments(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.text = "";
    f.dm.content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_IMAGE;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "attachments", "message.required_if");

    Cx__Common__V1__Attachment att;
    cx__common__v1__attachment__init(&att);
    att.type = CX__COMMON__V1__ATTACHMENT_TYPE__ATTACHMENT_TYPE_IMAGE;
    att.source_case = CX__COMMON__V1__ATTACHMENT__SOURCE_MEDIA_ID;
    att.media_id = "1234567890";
    Cx__Common__V1__Attachment *list[] = {&att};
    f.dm.n_attachments = 1;
    f.dm.attachments = list;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
}

static void test_required_if_other_value_does_not_require(void **state)
{
    (void)state;
    /* A location message needs a location, not text. */
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.text = "";
    f.dm.content_type = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_LOCATION;
    Cx__Messaging__V1__Location loc;
    cx__messaging__v1__location__init(&loc);
    loc.latitude = 48.8584;
    loc.longitude = 2.2945;
    f.dm.location = &loc;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
}

static void test_required_if_when_set_without_equals(void **state)
{
    (void)state;
    /* original_start is required when recurring_event_id is set (equals is empty). */
    cal_fixture_t f;
    cal_fixture(&f);
    f.ev.recurring_event_id = "series42";
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "original_start", "message.required_if");
    assert_non_null(strstr(r.items[0].message, "recurring_event_id is set"));

    Cx__Calendar__V1__EventTime orig;
    cx__calendar__v1__event_time__init(&orig);
    orig.value_case = CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE;
    orig.date = "2025-06-18";
    f.ev.original_start = &orig;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_valid(&r);
}

static void test_required_if_cancelled_event_needs_no_times(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.ev.start = NULL;
    f.ev.end = NULL;
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_has(&r, "start", "message.required_if");
    expect_has(&r, "end", "message.required_if");
    assert_int_equal(r.v.count, 2);
    f.ev.status = CX__CALENDAR__V1__EVENT_STATUS__EVENT_STATUS_CANCELLED;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_valid(&r);
}

/* ---- at_least_one_of -------------------------------------------------------------------- */

static void test_at_least_one_of_on_root_has_empty_path(void **state)
{
    (void)state;
    rr_fixture_t f;
    rr_fixture(&f);
    result_t r;
    run(&cx_messaging_read_receipt_meta, &f.rr.base, &r);
    expect_only(&r, "", "message.at_least_one_of");
    assert_non_null(strstr(r.items[0].message, "message_id, watermark"));

    f.rr.watermark = &f.watermark;
    run(&cx_messaging_read_receipt_meta, &f.rr.base, &r);
    expect_valid(&r);
    f.rr.watermark = NULL;
    f.rr.message_id = "m_abc";
    run(&cx_messaging_read_receipt_meta, &f.rr.base, &r);
    expect_valid(&r);
}

static void test_at_least_one_of_in_list_item_has_item_path(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.attendee[1].email = "";
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "attendees[1]", "message.at_least_one_of");
    f.attendee[1].id = "profile-77";
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_valid(&r);
}

static void test_at_least_one_of_counts_active_oneof_member(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.start.value_case = CX__CALENDAR__V1__EVENT_TIME__VALUE__NOT_SET;
    f.start.date_time = NULL;
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "start", "message.at_least_one_of");
}

/* ---- strings ---------------------------------------------------------------------------- */

static void test_email_format_in_repeated_submessage(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.attendee[2].email = "not-an-email";
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "attendees[2].email", "string.email");
    expect_value_not_in_messages(&r, "not-an-email");
}

static void test_string_max_len_counts_code_points(void **state)
{
    (void)state;
    /* ConversationRef.thread_id: max_len 128. 128 two-byte characters (256 bytes) fit. */
    char s[2 * 129 + 1];
    for (int i = 0; i < 129; i++)
        memcpy(s + 2 * i, "\xc3\xa9", 2);
    s[2 * 128] = '\0';
    Cx__Common__V1__ConversationRef c;
    cx__common__v1__conversation_ref__init(&c);
    c.id = "1";
    c.thread_id = s;
    result_t r;
    run(&cx_common_conversation_ref_meta, &c.base, &r);
    expect_valid(&r);
    s[2 * 128] = '\xc3';
    s[2 * 128 + 1] = '\xa9';
    s[2 * 129] = '\0';
    run(&cx_common_conversation_ref_meta, &c.base, &r);
    expect_only(&r, "thread_id", "string.max_len");
    assert_string_equal(r.items[0].message, "must be at most 128 characters");
}

static void test_string_min_len(void **state)
{
    (void)state;
    Google__Protobuf__Timestamp at;
    google__protobuf__timestamp__init(&at);
    at.seconds = 1750263779;
    Cx__Automation__V1__AuditRecord rec;
    cx__automation__v1__audit_record__init(&rec);
    rec.seq = 1;
    rec.tenant_id = "acme";
    rec.action = "email.send";
    rec.outcome = 1;
    rec.recorded_at = &at;
    char mac[65];
    memset(mac, 'a', 64);
    mac[64] = '\0';
    rec.mac = mac;
    result_t r;
    run(&cx_automation_audit_record_meta, &rec.base, &r);
    expect_valid(&r);
    mac[63] = '\0';
    run(&cx_automation_audit_record_meta, &rec.base, &r);
    expect_only(&r, "mac", "string.min_len");
}

static void test_invalid_utf8_reports_string_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "abc\xe2\x82",      /* truncated */
        "\xff",
    };
    dm_fixture_t f;
    dm_fixture(&f);
    result_t r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f.dm.text = (char *)bad[i];
        run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
        expect_only(&r, "text", "string.utf8");
    }
    f.dm.text = "\xf0\x9f\x98\x80 \xe2\x82\xac"; /* emoji and euro sign */
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
}

static void test_optional_empty_string_skips_format(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.sender.phone = ""; /* E.164 applies only to a given value */
    f.dm.tenant_id = "";
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
}

static void test_repeated_string_items_have_index_paths(void **state)
{
    (void)state;
    Cx__Email__V1__EmailMessage em;
    cx__email__v1__email_message__init(&em);
    char *refs[] = {"<a@example.com>", "missing-brackets@example.com", "<b@example.com>"};
    em.n_references = 3;
    em.references = refs;
    result_t r;
    run(&cx_email_email_message_meta, &em.base, &r);
    expect_only(&r, "references[1]", "string.message_id");
}

/* ---- repeated --------------------------------------------------------------------------- */

static void test_repeated_max_items(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    Cx__Calendar__V1__Reminder rem[6];
    Cx__Calendar__V1__Reminder *list[6];
    for (int i = 0; i < 6; i++) {
        cx__calendar__v1__reminder__init(&rem[i]);
        rem[i].method = CX__CALENDAR__V1__REMINDER_METHOD__REMINDER_METHOD_EMAIL;
        rem[i].minutes = 10 * i;
        list[i] = &rem[i];
    }
    f.ev.reminders = list;
    f.ev.n_reminders = 5;
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_valid(&r);
    f.ev.n_reminders = 6;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "reminders", "repeated.max_items");
    assert_string_equal(r.items[0].message, "must have at most 5 items");
}

static void test_repeated_min_items(void **state)
{
    (void)state;
    Cx__Email__V1__EmailDelivered d;
    cx__email__v1__email_delivered__init(&d);
    result_t r;
    run(&cx_email_email_delivered_meta, &d.base, &r);
    expect_has(&r, "recipients", "repeated.min_items");
    char *rcpt[] = {"jane@example.com"};
    d.n_recipients = 1;
    d.recipients = rcpt;
    run(&cx_email_email_delivered_meta, &d.base, &r);
    expect_none_at(&r, "recipients");
}

/* ---- enums ------------------------------------------------------------------------------ */

static void test_enum_defined_only_rejects_99(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.direction = 99;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "direction", "enum.defined_only");
    expect_value_not_in_messages(&r, "99");
}

static void test_enum_defined_only_in_nested_message(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.conversation.kind = 42;
    result_t r;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "conversation.kind", "enum.defined_only");
}

/* ---- numbers ---------------------------------------------------------------------------- */

static void test_int32_gte_and_lte(void **state)
{
    (void)state;
    Cx__Calendar__V1__Reminder rem;
    cx__calendar__v1__reminder__init(&rem);
    rem.method = CX__CALENDAR__V1__REMINDER_METHOD__REMINDER_METHOD_EMAIL;
    result_t r;
    rem.minutes = 0;
    run(&cx_calendar_reminder_meta, &rem.base, &r);
    expect_valid(&r);
    rem.minutes = 40320;
    run(&cx_calendar_reminder_meta, &rem.base, &r);
    expect_valid(&r);
    rem.minutes = -1;
    run(&cx_calendar_reminder_meta, &rem.base, &r);
    expect_only(&r, "minutes", "int32.gte");
    rem.minutes = 40321;
    run(&cx_calendar_reminder_meta, &rem.base, &r);
    expect_only(&r, "minutes", "int32.lte");
    assert_string_equal(r.items[0].message, "must be less than or equal to 40320");
}

static void test_uint32_gte_applies_to_zero(void **state)
{
    (void)state;
    Cx__Messaging__V1__OrderItem it;
    cx__messaging__v1__order_item__init(&it);
    it.product_retailer_id = "sku-1";
    it.currency = "EUR";
    result_t r;
    run(&cx_messaging_order_item_meta, &it.base, &r);
    expect_only(&r, "quantity", "uint32.gte");
    it.quantity = 1;
    run(&cx_messaging_order_item_meta, &it.base, &r);
    expect_valid(&r);
}

static void test_uint64_gte(void **state)
{
    (void)state;
    Google__Protobuf__Timestamp at;
    google__protobuf__timestamp__init(&at);
    at.seconds = 1;
    char mac[65];
    memset(mac, 'f', 64);
    mac[64] = '\0';
    Cx__Automation__V1__AuditRecord rec;
    cx__automation__v1__audit_record__init(&rec);
    rec.tenant_id = "acme";
    rec.action = "email.send";
    rec.outcome = 1;
    rec.recorded_at = &at;
    rec.mac = mac;
    result_t r;
    run(&cx_automation_audit_record_meta, &rec.base, &r);
    expect_only(&r, "seq", "uint64.gte");
    rec.seq = UINT64_MAX;
    run(&cx_automation_audit_record_meta, &rec.base, &r);
    expect_valid(&r);
}

static void test_double_bounds_and_finite(void **state)
{
    (void)state;
    Cx__Messaging__V1__Location loc;
    cx__messaging__v1__location__init(&loc);
    result_t r;
    loc.latitude = 90.0;
    loc.longitude = -180.0;
    run(&cx_messaging_location_meta, &loc.base, &r);
    expect_valid(&r);
    loc.latitude = 90.5;
    run(&cx_messaging_location_meta, &loc.base, &r);
    expect_only(&r, "latitude", "double.lte");
    loc.latitude = -91;
    run(&cx_messaging_location_meta, &loc.base, &r);
    expect_only(&r, "latitude", "double.gte");
    loc.latitude = NAN;
    run(&cx_messaging_location_meta, &loc.base, &r);
    expect_only(&r, "latitude", "double.finite");
    loc.latitude = 0;
    loc.longitude = INFINITY;
    run(&cx_messaging_location_meta, &loc.base, &r);
    expect_only(&r, "longitude", "double.finite");
}

static void test_double_gte_zero_on_price(void **state)
{
    (void)state;
    Cx__Messaging__V1__OrderItem it;
    cx__messaging__v1__order_item__init(&it);
    it.product_retailer_id = "sku-1";
    it.quantity = 2;
    it.item_price = -0.01;
    result_t r;
    run(&cx_messaging_order_item_meta, &it.base, &r);
    expect_only(&r, "item_price", "double.gte");
}

/* ---- Timestamps ------------------------------------------------------------------------- */

static void test_timestamp_range(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    result_t r;
    f.at.seconds = INT64_C(-62135596800);
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
    f.at.seconds = INT64_C(253402300799);
    f.at.nanos = 999999999;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_valid(&r);
    f.at.seconds = INT64_C(253402300800);
    f.at.nanos = 0;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "occurred_at", "timestamp.valid");
    f.at.seconds = INT64_C(-62135596801);
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "occurred_at", "timestamp.valid");
    f.at.seconds = 0;
    f.at.nanos = -1;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "occurred_at", "timestamp.valid");
    f.at.nanos = 1000000000;
    run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
    expect_only(&r, "occurred_at", "timestamp.valid");
}

static void test_timestamp_in_oneof_member(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.end_at.nanos = -5;
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    expect_only(&r, "end.date_time", "timestamp.valid");
}

/* ---- Formats on real fields ------------------------------------------------------------- */

typedef struct {
    const char *value;
    int ok;
} format_case_t;

static void test_e164_on_actor_phone(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"+14155552671", 1},     {"+33612345678", 1},    {"+12345678", 1},
        {"+123456789012345", 1}, {"14155552671", 0},     {"+1234567", 0},
        {"+04155552671", 0},     {"+1 415 555 2671", 0}, {"+", 0},
        {"++1415555267", 0},     {"+1415555267a", 0},
    };
    dm_fixture_t f;
    dm_fixture(&f);
    result_t r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.sender.phone = (char *)cases[i].value;
        run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
        if (cases[i].ok) {
            expect_valid(&r);
        } else {
            expect_has(&r, "sender.phone", "string.e164");
            expect_value_not_in_messages(&r, cases[i].value);
        }
    }
}

static void test_message_id_on_email(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"<CAFoo+bar=baz@mail.gmail.com>", 1},
        {"<1234.5678@example.com>", 1},
        {"<abc@[127.0.0.1]>", 1},
        {"<x@y>", 1},
        {"CAFoo@mail.gmail.com", 0},
        {"<CAFoo@mail.gmail.com", 0},
        {"<@example.com>", 0},
        {"<abc@>", 0},
        {"<abc>", 0},
        {"<a b@example.com>", 0},
        {"<a..b@example.com>", 0},
        {"<a@b@c>", 0},
        {"<a@[b]c]>", 0},
        {"<>", 0},
    };
    Cx__Email__V1__EmailMessage em;
    cx__email__v1__email_message__init(&em);
    result_t r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em.message_id = (char *)cases[i].value;
        run(&cx_email_email_message_meta, &em.base, &r);
        if (cases[i].ok)
            expect_valid(&r);
        else
            expect_only(&r, "message_id", "string.message_id");
    }
}

static void test_identifier_on_channel(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"whatsapp", 1}, {"google_calendar", 1},
        {"meta-v2", 1},  {"a.b", 1},
        {"1abc", 1},     {"WhatsApp", 0},
        {"_abc", 0},     {"-abc", 0},
        {".abc", 0},     {"a b", 0},
        {"a/b", 0},      {"\xc3\xa9t\xc3\xa9", 0},
    };
    dm_fixture_t f;
    dm_fixture(&f);
    result_t r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.channel.channel = (char *)cases[i].value;
        run(&cx_messaging_direct_message_meta, &f.dm.base, &r);
        if (cases[i].ok)
            expect_valid(&r);
        else
            expect_only(&r, "channel.channel", "string.identifier");
    }
}

static void test_date_on_event_time_oneof(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"2024-02-29", 1}, {"2023-12-31", 1}, {"0001-01-01", 1}, {"9999-12-31", 1},
        {"2000-02-29", 1}, {"2023-02-29", 0}, {"1900-02-29", 0}, {"2024-13-01", 0},
        {"2024-00-10", 0}, {"2024-04-31", 0}, {"2024-4-1", 0},   {"24-04-01", 0},
        {"2024/04/01", 0}, {"0000-01-01", 0}, {"2024-04-00", 0},
    };
    cal_fixture_t f;
    cal_fixture(&f);
    f.start.value_case = CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE;
    result_t r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.start.date = (char *)cases[i].value;
        run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
        if (cases[i].ok)
            expect_valid(&r);
        else
            expect_only(&r, "start.date", "string.date");
    }
}

/* ---- Every format, through a copy of Attendee's table with a format on `id` ------------ */

static int format_ok(cx_format_t format, const char *value, const char *rule)
{
    const cx_msg_meta_t *base = &cx_calendar_attendee_meta;
    size_t n = base->desc->n_fields;
    cx_field_meta_t fields[16];
    assert_true(n <= 16);
    memcpy(fields, base->fields, n * sizeof fields[0]);
    assert_string_equal(base->desc->fields[1].name, "id");
    fields[1].format = (uint8_t)format;
    fields[1].max_len = 4096;
    cx_msg_meta_t meta = *base;
    meta.fields = fields;

    Cx__Calendar__V1__Attendee a;
    cx__calendar__v1__attendee__init(&a);
    a.id = (char *)value;
    result_t r;
    run(&meta, &a.base, &r);
    if (r.v.count == 0)
        return 1;
    assert_int_equal(r.v.count, 1);
    assert_string_equal(r.items[0].path, "id");
    assert_string_equal(r.items[0].rule, rule);
    if (strlen(value) >= 4)
        assert_null(strstr(r.items[0].message, value));
    return 0;
}

static void check_format_table(cx_format_t format, const char *rule, const format_case_t *cases,
                               size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int ok = format_ok(format, cases[i].value, rule);
        if (ok != cases[i].ok)
            fail_msg("%s: '%s' should be %s", rule, cases[i].value,
                     cases[i].ok ? "accepted" : "rejected");
    }
}

#define CHECK_FORMAT(fmt, rule, cases)                                                             \
    check_format_table(fmt, rule, cases, sizeof cases / sizeof cases[0])

static void test_format_email_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"jane@example.com", 1},
        {"a.b+tag@sub.example.co.uk", 1},
        {"x@localhost", 1},
        {"user_1!#$%&'*+/=?^`{|}~-@example.org", 1},
        {"j\xc3\xb6se@ex\xc3\xa4mple.de", 1},
        {"a@b-c.d", 1},
        {"plainaddress", 0},
        {"@example.com", 0},
        {"jane@", 0},
        {"jane@@example.com", 0},
        {"jane.@example.com", 0},
        {".jane@example.com", 0},
        {"ja..ne@example.com", 0},
        {"jane@-example.com", 0},
        {"jane@example-.com", 0},
        {"jane@exa_mple.com", 0},
        {"jane@example..com", 0},
        {"Jane <jane@example.com>", 0},
        {"jane@example.com.", 0},
        {"jane doe@example.com", 0},
        {"jane@1.2.3.4", 0},
        {"jane@[1.2.3.4]", 0},
        {"\"jane\"@example.com", 0},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", 0},
    };
    CHECK_FORMAT(CX_FORMAT_EMAIL, "string.email", cases);
}

static void test_format_uri_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"https://example.com", 1},
        {"https://example.com/a/b?c=d&e=f#frag", 1},
        {"http://user:pass@host:8080/p", 1},
        {"mailto:jane@example.com", 1},
        {"tel:+1-415-555-2671", 1},
        {"urn:isbn:0451450523", 1},
        {"file:///etc/hosts", 1},
        {"http://[2001:db8::1]:80/", 1},
        {"http://[::ffff:192.0.2.1]/", 1},
        {"http://[::1]/", 1},
        {"http://[v1.fe80::a]/", 1},
        {"https://example.com/%E2%82%AC", 1},
        {"https://h/?q=a/b?c", 1},
        {"a+b-c.d:x", 1},
        {"http://example.com:/", 1},
        {"example.com", 0},
        {"/relative/path", 0},
        {"//example.com", 0},
        {"1http://x", 0},
        {"http://exa mple.com", 0},
        {"https://example.com/%zz", 0},
        {"https://example.com/%E2%8", 0},
        {"http://[2001:db8::1/", 0},
        {"http://[2001:db8:::1]/", 0},
        {"http://[1:2:3:4:5:6:7:8:9]/", 0},
        {"http://[::1.2.3.256]/", 0},
        {"http://host:80a/", 0},
        {"https://example.com/#a#b", 0},
        {"http://ex<ample.com", 0},
        {"https://example.com/\xc3\xa9", 0},
        {"http://a@b@c/", 0},
        {"http://exa\\mple.com/", 0},
    };
    CHECK_FORMAT(CX_FORMAT_URI, "string.uri", cases);
}

static void test_format_uuid_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"123e4567-e89b-12d3-a456-426614174000", 1}, {"00000000-0000-0000-0000-000000000000", 1},
        {"123E4567-E89B-12D3-A456-426614174000", 1}, {"123e4567e89b12d3a456426614174000", 0},
        {"123e4567-e89b-12d3-a456-42661417400", 0},  {"123e4567-e89b-12d3-a456-4266141740000", 0},
        {"g23e4567-e89b-12d3-a456-426614174000", 0}, {"{123e4567-e89b-12d3-a456-426614174000}", 0},
        {"123e4567-e89b-12d3-a456_426614174000", 0}, {"123e4567-e89b-12d3a-456-426614174000", 0},
    };
    CHECK_FORMAT(CX_FORMAT_UUID, "string.uuid", cases);
}

static void test_format_hostname_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"example.com", 1},
        {"a.b-c.example", 1},
        {"localhost", 1},
        {"example.com.", 1},
        {"xn--bcher-kva.example", 1},
        {"a1.b2", 1},
        {"-example.com", 0},
        {"example-.com", 0},
        {"exa_mple.com", 0},
        {"example..com", 0},
        {".example.com", 0},
        {"192.168.0.1", 0},
        {"ex ample.com", 0},
        {"b\xc3\xbc"
         "cher.example",
         0},
        {"example.com..", 0},
        {".", 0},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", 0},
    };
    CHECK_FORMAT(CX_FORMAT_HOSTNAME, "string.hostname", cases);
}

static void test_format_time_zone_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"UTC", 1},
        {"Europe/Paris", 1},
        {"America/Argentina/Buenos_Aires", 1},
        {"America/Port-au-Prince", 1},
        {"Etc/GMT+5", 1},
        {"Etc/GMT-14", 1},
        {"EST5EDT", 1},
        {"Antarctica/DumontDUrville", 1},
        {"Europe/", 0},
        {"/Europe/Paris", 0},
        {"Europe//Paris", 0},
        {"Pacific Standard Time", 0},
        {"+05:00", 0},
        {"5EST", 0},
        {"America/Very_Long_Component", 0},
        {"Europe/../Paris", 0},
        {"Europe/Paris!", 0},
    };
    CHECK_FORMAT(CX_FORMAT_TIME_ZONE, "string.time_zone", cases);
}

static void test_format_mime_type_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"text/plain", 1},
        {"image/svg+xml", 1},
        {"application/vnd.ms-excel", 1},
        {"text/plain; charset=utf-8", 1},
        {"text/plain;charset=\"utf-8\"", 1},
        {"multipart/form-data; boundary=----abc", 1},
        {"audio/ogg; codecs=opus", 1},
        {"text/plain;", 1},
        {"application/x.y; a=\"q\\\"x\"", 1},
        {"text", 0},
        {"text/", 0},
        {"/plain", 0},
        {"text/plain/extra", 0},
        {"text /plain", 0},
        {"text/plain; charset", 0},
        {"text/plain; charset=", 0},
        {"text/plain charset=utf-8", 0},
        {"text/plain; charset=\"utf-8", 0},
        {"text/pl@in", 0},
        {"text/plain; =x", 0},
    };
    CHECK_FORMAT(CX_FORMAT_MIME_TYPE, "string.mime_type", cases);
}

static void test_format_language_tag_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"en", 1},
        {"pt-BR", 1},
        {"zh-Hant-TW", 1},
        {"sr-Latn-RS", 1},
        {"es-419", 1},
        {"de-CH-1901", 1},
        {"en-US-u-ca-gregory", 1},
        {"x-private", 1},
        {"en-x-klingon", 1},
        {"i-klingon", 1},
        {"zh-min-nan", 1},
        {"art-lojban", 1},
        {"sl-rozaj-biske", 1},
        {"EN-us", 1},
        {"hy-Latn-IT-arevela", 1},
        {"zh-yue-HK", 1},
        {"en-a-bbb-x-a-ccc", 1},
        {"e", 0},
        {"pt_BR", 0},
        {"en-", 0},
        {"-en", 0},
        {"en--US", 0},
        {"toolongtag", 0},
        {"en-US-u", 0},
        {"1en", 0},
        {"en-x", 0},
        {"de-419-DE", 0},
        {"zh-Hant-Hans", 0},
        {"en-abcdefghi", 0},
        {"en-US-a-b", 0},
    };
    CHECK_FORMAT(CX_FORMAT_LANGUAGE_TAG, "string.language_tag", cases);
}

static void test_format_currency_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"USD", 1}, {"EUR", 1},  {"BRL", 1}, {"usd", 0},
        {"US", 0},  {"USDX", 0}, {"U$D", 0}, {"US1", 0},
    };
    CHECK_FORMAT(CX_FORMAT_CURRENCY, "string.currency", cases);
}

static void test_format_traceparent_table(void **state)
{
    (void)state;
    static const format_case_t cases[] = {
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 1},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later", 1},
        {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", 0},
        {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0},
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", 0},
        {"004bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x", 0},
    };
    CHECK_FORMAT(CX_FORMAT_TRACEPARENT, "string.traceparent", cases);
}

static void test_format_tables_for_shared_formats(void **state)
{
    (void)state;
    /* The formats also covered on real fields above, through the same table path. */
    static const format_case_t e164[] = {{"+14155552671", 1}, {"+1234567890123456", 0}};
    static const format_case_t msgid[] = {{"<a@b>", 1}, {"a@b", 0}};
    static const format_case_t ident[] = {{"slack", 1}, {"Slack", 0}};
    static const format_case_t date[] = {{"2024-01-31", 1}, {"2024-01-32", 0}};
    CHECK_FORMAT(CX_FORMAT_E164, "string.e164", e164);
    CHECK_FORMAT(CX_FORMAT_MESSAGE_ID, "string.message_id", msgid);
    CHECK_FORMAT(CX_FORMAT_IDENTIFIER, "string.identifier", ident);
    CHECK_FORMAT(CX_FORMAT_DATE, "string.date", date);
}

/* ---- Engine paths the schemas do not use yet: a hand-made descriptor -------------------- */

typedef struct {
    ProtobufCMessage base;
    ProtobufCBinaryData blob;
    size_t n_blobs;
    ProtobufCBinaryData *blobs;
    int64_t i64;
    uint64_t u64;
    int32_t s32;
    float f;
    protobuf_c_boolean flag;
    char *note;
    char *mode;
    char *detail;
    size_t n_times;
    Google__Protobuf__Timestamp **times;
} scalars_t;

#define FD(name, id, label, type, q, field, desc)                                                  \
    {                                                                                              \
        name, id, label, type, q, offsetof(scalars_t, field), desc, NULL, 0, 0, NULL, NULL         \
    }

static const ProtobufCFieldDescriptor scalars_fields[] = {
    FD("blob", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BYTES, 0, blob, NULL),
    FD("blobs", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, offsetof(scalars_t, n_blobs),
       blobs, NULL),
    FD("i64", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT64, 0, i64, NULL),
    FD("u64", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT64, 0, u64, NULL),
    FD("s32", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_SINT32, 0, s32, NULL),
    FD("f", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, 0, f, NULL),
    FD("flag", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BOOL, 0, flag, NULL),
    FD("note", 8, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, note, NULL),
    FD("mode", 9, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, mode, NULL),
    FD("detail", 10, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, detail, NULL),
    FD("times", 11, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE,
       offsetof(scalars_t, n_times), times, &google__protobuf__timestamp__descriptor),
};

static const ProtobufCMessageDescriptor scalars_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "cx.test.Scalars",
    "Scalars",
    "Scalars",
    "cx.test",
    sizeof(scalars_t),
    sizeof scalars_fields / sizeof scalars_fields[0],
    scalars_fields,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

#define FM(json, flags, min_len, max_len, min_items, max_items, gte, lte, gte_d, lte_d)            \
    {                                                                                              \
        json, flags, min_len, max_len, min_items, max_items, gte, lte, gte_d, lte_d, 0, 1, NULL    \
    }

static const cx_field_meta_t scalars_meta_fields[] = {
    FM("blob", 0, 2, 4, 0, 0, 0, 0, 0, 0),
    FM("blobs", 0, 0, 3, 0, 4, 0, 0, 0, 0),
    FM("i64", CX_F_HAS_GTE | CX_F_HAS_LTE, 0, 0, 0, 0, -5, 5, 0, 0),
    FM("u64", CX_F_HAS_GTE | CX_F_HAS_LTE, 0, 0, 0, 0, 0, INT64_MAX, 0, 0),
    FM("s32", CX_F_HAS_LTE, 0, 0, 0, 0, 0, -1, 0, 0),
    FM("f", CX_F_FINITE | CX_F_HAS_GTE_D, 0, 0, 0, 0, 0, 0, 0.5, 0),
    FM("flag", 0, 0, 0, 0, 0, 0, 0, 0, 0),
    FM("note", 0, 0, 64, 0, 0, 0, 0, 0, 0),
    FM("mode", 0, 0, 64, 0, 0, 0, 0, 0, 0),
    FM("detail", 0, 0, 64, 0, 0, 0, 0, 0, 0),
    {"times", CX_F_TIMESTAMP, 0, 0, 0, 4, 0, 0, 0, 0, 0, 1, NULL},
};

static const cx_required_if_t scalars_required_if[] = {
    {7, 6, "true", 0},   /* note when flag is true */
    {9, 8, "strict", 0}, /* detail when mode is "strict" */
    {1, 2, "3", 0},      /* blobs when i64 is 3 */
};

static const cx_msg_meta_t scalars_meta = {
    &scalars_desc,
    "cx.test.Scalars",
    NULL,
    NULL,
    CX_KIND_VALUE,
    0,
    scalars_meta_fields,
    NULL,
    0,
    NULL,
    0,
    scalars_required_if,
    3,
};

static void scalars_init(scalars_t *m)
{
    memset(m, 0, sizeof *m);
    m->base.descriptor = &scalars_desc;
    m->note = "";
    m->mode = "";
    m->detail = "";
    m->s32 = -1;
    m->f = 1.0f;
}

static void test_synthetic_valid(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    result_t r;
    run(&scalars_meta, &m.base, &r);
    expect_valid(&r);
}

static void test_bytes_min_and_max_len(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    uint8_t data[8] = {0};
    result_t r;
    m.blob.data = data;
    m.blob.len = 1;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "blob", "bytes.min_len");
    m.blob.len = 5;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "blob", "bytes.max_len");
    m.blob.len = 4;
    run(&scalars_meta, &m.base, &r);
    expect_valid(&r);
}

static void test_repeated_bytes_items(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    uint8_t data[8] = {0};
    ProtobufCBinaryData items[2] = {{1, data}, {4, data}};
    m.n_blobs = 2;
    m.blobs = items;
    result_t r;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "blobs[1]", "bytes.max_len");
}

static void test_int64_uint64_sint32_rule_ids(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    result_t r;
    m.i64 = -6;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "i64", "int64.gte");
    m.i64 = 6;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "i64", "int64.lte");
    m.i64 = 0;
    m.u64 = (uint64_t)INT64_MAX + 1; /* must not wrap to a negative number */
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "u64", "uint64.lte");
    m.u64 = 0;
    m.s32 = 0;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "s32", "sint32.lte");
}

static void test_float_rule_ids(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    result_t r;
    m.f = 0.25f;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "f", "float.gte");
    m.f = -INFINITY;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "f", "float.finite");
}

static void test_required_if_bool_string_and_int_conditions(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    result_t r;
    m.flag = 1;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "note", "message.required_if");
    m.note = "why";
    run(&scalars_meta, &m.base, &r);
    expect_valid(&r);
    m.mode = "strict";
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "detail", "message.required_if");
    m.mode = "strictly";
    run(&scalars_meta, &m.base, &r);
    expect_valid(&r);
    m.i64 = 3;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "blobs", "message.required_if");
}

static void test_repeated_timestamps_item_paths(void **state)
{
    (void)state;
    scalars_t m;
    scalars_init(&m);
    Google__Protobuf__Timestamp t0, t1;
    google__protobuf__timestamp__init(&t0);
    google__protobuf__timestamp__init(&t1);
    t1.nanos = 1000000000;
    Google__Protobuf__Timestamp *list[] = {&t0, &t1};
    m.n_times = 2;
    m.times = list;
    result_t r;
    run(&scalars_meta, &m.base, &r);
    expect_only(&r, "times[1]", "timestamp.valid");
}

static void test_nested_list_item_paths_carry_every_index(void **state)
{
    (void)state;
    Cx__Messaging__V1__ListRow row[4];
    Cx__Messaging__V1__ListRow *rows0[] = {&row[0]};
    Cx__Messaging__V1__ListRow *rows1[] = {&row[1], &row[2], &row[3]};
    for (int i = 0; i < 4; i++) {
        cx__messaging__v1__list_row__init(&row[i]);
        row[i].id = "r";
        row[i].title = "Row";
    }
    row[0].id = "";
    row[3].title = "A row title well past the sixty-four characters a list row allows";
    Cx__Messaging__V1__ListSection section[3];
    Cx__Messaging__V1__ListSection *sections[] = {&section[0], &section[1], &section[2]};
    for (int i = 0; i < 3; i++)
        cx__messaging__v1__list_section__init(&section[i]);
    section[0].n_rows = 1;
    section[0].rows = rows0;
    section[1].n_rows = 3;
    section[1].rows = rows1;
    Cx__Messaging__V1__InteractiveContent ic;
    cx__messaging__v1__interactive_content__init(&ic);
    ic.type = CX__MESSAGING__V1__INTERACTIVE_TYPE__INTERACTIVE_TYPE_LIST;
    ic.body_text = "Pick one";
    ic.n_sections = 3;
    ic.sections = sections;
    result_t r;
    run(&cx_messaging_interactive_content_meta, &ic.base, &r);
    if (r.v.count != 3)
        dump(&r);
    assert_int_equal(r.v.count, 3);
    assert_string_equal(r.items[0].path, "sections[0].rows[0].id");
    assert_string_equal(r.items[0].rule, "required");
    assert_string_equal(r.items[1].path, "sections[1].rows[2].title");
    assert_string_equal(r.items[1].rule, "string.max_len");
    /* A list inside a list item: the item's index, then the list's own name without one. */
    assert_string_equal(r.items[2].path, "sections[2].rows");
    assert_string_equal(r.items[2].rule, "repeated.min_items");
}

/* ---- Long paths and shared conditions: a hand-made recursive descriptor ----------------- */

typedef struct node_s {
    ProtobufCMessage base;
    char *label;
    size_t n_children;
    struct node_s **children;
    struct node_s *next;
    int32_t kind;
    char *caption;
    char *body;
} node_t;

/* Declared ahead: the message refers to itself. */
static const ProtobufCMessageDescriptor node_desc;
static const cx_msg_meta_t node_meta;

#define NODE_FD(name, id, label, type, q, field, desc)                                             \
    {                                                                                              \
        name, id, label, type, q, offsetof(node_t, field), desc, NULL, 0, 0, NULL, NULL            \
    }

static const ProtobufCFieldDescriptor node_fields[] = {
    NODE_FD("label", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, label, NULL),
    NODE_FD("children_with_a_long_name", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE,
            offsetof(node_t, n_children), children, &node_desc),
    NODE_FD("next_node_with_a_rather_long_name", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE,
            0, next, &node_desc),
    NODE_FD("kind", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_ENUM, 0, kind,
            &cx__messaging__v1__message_content_type__descriptor),
    NODE_FD("caption", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, caption, NULL),
    NODE_FD("body", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, body, NULL),
};

static const ProtobufCMessageDescriptor node_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "cx.test.Node",
    "Node",
    "Node",
    "cx.test",
    sizeof(node_t),
    sizeof node_fields / sizeof node_fields[0],
    node_fields,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

static const cx_field_meta_t node_meta_fields[] = {
    {"label", 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"childrenWithALongName", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, &node_meta},
    {"nextNodeWithARatherLongName", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, &node_meta},
    {"kind", CX_F_DEFINED_ONLY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"caption", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"body", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
};

/* Three rules on one enum field, the last without a value. */
static const cx_required_if_t node_required_if[] = {
    {4, 3, "MESSAGE_CONTENT_TYPE_TEXT", 1},  /* caption when kind is TEXT */
    {5, 3, "MESSAGE_CONTENT_TYPE_IMAGE", 2}, /* body when kind is IMAGE */
    {5, 3, NULL, 0},                         /* body when kind is set */
};

static const cx_msg_meta_t node_meta = {
    &node_desc, "cx.test.Node",   NULL, NULL, CX_KIND_VALUE, 0, node_meta_fields, NULL, 0, NULL,
    0,          node_required_if, 3,
};

static void node_init(node_t *n)
{
    memset(n, 0, sizeof *n);
    n->base.descriptor = &node_desc;
    n->label = "";
    n->caption = "";
    n->body = "";
}

#define CHAIN 12

/* Links nodes[0..depth] into a chain, every odd link through children_with_a_long_name[1] and
 * every even one through next_node_with_a_rather_long_name, with a bad label at the end; writes
 * the full, untruncated path of that label into want. */
static void node_chain(node_t *nodes, node_t *(*kids)[2], int depth, char *want, size_t cap)
{
    size_t len = 0;
    want[0] = '\0';
    for (int i = 0; i <= depth; i++)
        node_init(&nodes[i]);
    for (int i = 0; i < depth; i++) {
        if (i % 2) {
            kids[i][0] = &nodes[CHAIN]; /* a valid sibling before the followed item */
            kids[i][1] = &nodes[i + 1];
            nodes[i].n_children = 2;
            nodes[i].children = kids[i];
            len += (size_t)snprintf(want + len, cap - len, "children_with_a_long_name[1].");
        } else {
            nodes[i].next = &nodes[i + 1];
            len += (size_t)snprintf(want + len, cap - len, "next_node_with_a_rather_long_name.");
        }
    }
    snprintf(want + len, cap - len, "label");
    nodes[depth].label = "far too long";
}

static void test_long_paths_are_cut_at_the_buffer_end(void **state)
{
    (void)state;
    /* Every depth, so the cut falls inside a name, on a dot, a bracket and an index. */
    for (int depth = 0; depth < CHAIN; depth++) {
        node_t nodes[CHAIN + 1];
        node_t *kids[CHAIN][2];
        char want[2048];
        node_chain(nodes, kids, depth, want, sizeof want);
        node_init(&nodes[CHAIN]);
        result_t r;
        run(&node_meta, &nodes[0].base, &r);
        assert_int_equal(r.v.count, 1);
        assert_string_equal(r.items[0].rule, "string.max_len");
        size_t max = sizeof r.items[0].path - 1;
        if (strlen(want) > max)
            want[max] = '\0';
        assert_string_equal(r.items[0].path, want);
    }
}

static void test_path_after_a_truncated_one_is_whole(void **state)
{
    (void)state;
    node_t nodes[CHAIN + 1];
    node_t *kids[CHAIN][2];
    char want[2048];
    node_chain(nodes, kids, CHAIN - 1, want, sizeof want);
    node_init(&nodes[CHAIN]);
    nodes[0].kind = 99;
    nodes[0].body = "b";
    nodes[1].kind = 77;
    nodes[1].body = "b";
    result_t r;
    run(&node_meta, &nodes[0].base, &r);
    assert_int_equal(r.v.count, 3);
    /* Depth first: the deep label, then kind one level down, then kind at the root. */
    assert_int_equal(strlen(r.items[0].path), sizeof r.items[0].path - 1);
    assert_string_equal(r.items[0].rule, "string.max_len");
    assert_string_equal(r.items[1].path, "next_node_with_a_rather_long_name.kind");
    assert_string_equal(r.items[1].rule, "enum.defined_only");
    assert_string_equal(r.items[2].path, "kind");
}

static void test_required_if_rules_sharing_an_enum_field(void **state)
{
    (void)state;
    node_t root, child;
    node_init(&root);
    node_init(&child);
    result_t r;
    root.kind = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
    run(&node_meta, &root.base, &r);
    assert_int_equal(r.v.count, 2);
    assert_string_equal(r.items[0].path, "caption");
    assert_string_equal(r.items[0].message, "is required when kind is MESSAGE_CONTENT_TYPE_TEXT");
    assert_string_equal(r.items[1].path, "body");
    assert_string_equal(r.items[1].message, "is required when kind is set");
    root.kind = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_IMAGE;
    run(&node_meta, &root.base, &r);
    assert_int_equal(r.v.count, 2);
    assert_string_equal(r.items[0].path, "body");
    assert_string_equal(r.items[0].message, "is required when kind is MESSAGE_CONTENT_TYPE_IMAGE");
    assert_string_equal(r.items[1].path, "body");
    assert_string_equal(r.items[1].message, "is required when kind is set");
    root.body = "b";
    run(&node_meta, &root.base, &r);
    expect_valid(&r);
    /* Each message reads its own condition field, whatever the enclosing one holds. */
    root.next = &child;
    child.kind = CX__MESSAGING__V1__MESSAGE_CONTENT_TYPE__MESSAGE_CONTENT_TYPE_TEXT;
    child.body = "b";
    run(&node_meta, &root.base, &r);
    expect_only(&r, "next_node_with_a_rather_long_name.caption", "message.required_if");
    child.caption = "c";
    run(&node_meta, &root.base, &r);
    expect_valid(&r);
}

/* ---- Storage, counting, arguments ------------------------------------------------------- */

static void test_violations_past_cap_are_counted_not_stored(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    f.dm.message_id = "";
    f.dm.direction = 99;
    f.dm.occurred_at = NULL;
    f.dm.sender = NULL;
    f.channel.channel = "Bad Channel";
    cx_violation_t items[2];
    memset(items, 0x5A, sizeof items);
    cx_violations_t v = {items, 2, 0};
    assert_int_equal(cx_validate(&cx_messaging_direct_message_meta, &f.dm.base, &v),
                     CX_EVALIDATION);
    assert_int_equal(v.count, 5);
    assert_string_equal(items[0].path, "channel.channel");
    assert_string_equal(items[0].rule, "string.identifier");
    assert_string_equal(items[1].path, "message_id");
    /* A NULL sink still gives the verdict. */
    assert_int_equal(cx_validate(&cx_messaging_direct_message_meta, &f.dm.base, NULL),
                     CX_EVALIDATION);
    cx_violations_t none = {NULL, 0, 0};
    assert_int_equal(cx_validate(&cx_messaging_direct_message_meta, &f.dm.base, &none),
                     CX_EVALIDATION);
    assert_int_equal(none.count, 5);
}

static void test_all_violations_reported_in_field_order(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.ev.provider = "Google";
    f.attendee[0].email = "bad";
    f.attendee[2].response_status = 77;
    f.start.time_zone = "Paris Time";
    result_t r;
    run(&cx_calendar_calendar_event_meta, &f.ev.base, &r);
    assert_int_equal(r.v.count, 4);
    assert_string_equal(r.items[0].path, "provider");
    assert_string_equal(r.items[1].path, "start.time_zone");
    assert_string_equal(r.items[2].path, "attendees[0].email");
    assert_string_equal(r.items[3].path, "attendees[2].response_status");
    assert_string_equal(r.items[3].rule, "enum.defined_only");
}

static void test_deep_path_through_wrapper_event(void **state)
{
    (void)state;
    cal_fixture_t f;
    cal_fixture(&f);
    f.attendee[2].email = "nope";
    Cx__Calendar__V1__CalendarEventCreated ce;
    cx__calendar__v1__calendar_event_created__init(&ce);
    ce.event = &f.ev;
    result_t r;
    run(&cx_calendar_calendar_event_created_meta, &ce.base, &r);
    expect_has(&r, "event.attendees[2].email", "string.email");
}

static void test_bad_arguments_are_einval(void **state)
{
    (void)state;
    dm_fixture_t f;
    dm_fixture(&f);
    cx_violations_t v = {NULL, 0, 7};
    assert_int_equal(cx_validate(NULL, &f.dm.base, &v), CX_EINVAL);
    assert_int_equal(v.count, 0);
    assert_int_equal(cx_validate(&cx_messaging_direct_message_meta, NULL, NULL), CX_EINVAL);
    /* A message of another type. */
    assert_int_equal(cx_validate(&cx_messaging_read_receipt_meta, &f.dm.base, NULL), CX_EINVAL);
}

/* ---- Registry and generated tables ------------------------------------------------------ */

static void test_registry_finds_every_message_by_name_and_event_type(void **state)
{
    (void)state;
    size_t n = 0;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    assert_true(n > 50);
    size_t events = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(all[i - 1]->full_name, all[i]->full_name) < 0);
        assert_ptr_equal(cx_schema_find(all[i]->full_name), all[i]);
        if (all[i]->event_type != NULL) {
            assert_ptr_equal(cx_schema_find(all[i]->event_type), all[i]);
            events++;
        }
    }
    assert_true(events > 10);
    assert_ptr_equal(cx_schema_find("cx.messaging.v1.DirectMessage"),
                     &cx_messaging_direct_message_meta);
    assert_ptr_equal(cx_schema_find("cx.messaging.v1.direct_message"),
                     &cx_messaging_direct_message_meta);
    assert_null(cx_schema_find("cx.messaging.v1.Nope"));
    assert_null(cx_schema_find(""));
    assert_null(cx_schema_find(NULL));
    assert_ptr_equal(cx_schema_all(NULL), all);
}

/* proto3's JSON name: underscores dropped, the letter after each one upper-cased. */
static void json_name_of(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    int upper = 0;
    for (; *name && n + 1 < cap; name++) {
        if (*name == '_') {
            upper = 1;
            continue;
        }
        out[n++] = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 32) : *name;
        upper = 0;
    }
    out[n] = '\0';
}

static void test_generated_tables_match_descriptors(void **state)
{
    (void)state;
    size_t n = 0;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    for (size_t i = 0; i < n; i++) {
        const cx_msg_meta_t *m = all[i];
        const ProtobufCMessageDescriptor *d = m->desc;
        assert_non_null(d);
        assert_int_equal(d->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
        assert_string_equal(d->name, m->full_name);
        assert_non_null(m->fields);
        for (unsigned k = 0; k < d->n_fields; k++) {
            const ProtobufCFieldDescriptor *fd = &d->fields[k];
            const cx_field_meta_t *fm = &m->fields[k];
            if (k > 0)
                assert_true(d->fields[k - 1].id < fd->id);
            assert_non_null(fm->json_name);
            /* Rows are parallel to desc->fields: each row's json name is its field's. */
            char expect[128];
            json_name_of(fd->name, expect, sizeof expect);
            if (strcmp(expect, fm->json_name) != 0)
                fail_msg("%s: row %u is %s, field is %s", m->full_name, k, fm->json_name, fd->name);
            int is_msg = fd->type == PROTOBUF_C_TYPE_MESSAGE;
            int is_ts = is_msg && fd->descriptor == &google__protobuf__timestamp__descriptor;
            assert_int_equal((fm->flags & CX_F_TIMESTAMP) != 0, is_ts);
            if ((fm->msg != NULL) != (is_msg && !is_ts))
                fail_msg("%s.%s: msg meta %s", m->full_name, fd->name,
                         fm->msg ? "set on a non-message" : "missing");
            if (fm->msg != NULL)
                assert_ptr_equal(fm->msg->desc, fd->descriptor);
            assert_true(fm->format <= CX_FORMAT_TRACEPARENT);
        }
        for (uint8_t g = 0; g < m->n_at_least_one_of; g++)
            for (uint8_t k = 0; k < m->at_least_one_of[g].n; k++)
                assert_true(m->at_least_one_of[g].index[k] < d->n_fields);
        for (uint8_t q = 0; q < m->n_required_if; q++) {
            assert_true(m->required_if[q].field < d->n_fields);
            assert_true(m->required_if[q].when < d->n_fields);
        }
    }
}

/* ---- UTF-8, lengths and enums, exhaustively --------------------------------------------- */

/* A string in each of the three places a value can be: singular (absent when empty), a list
 * item and a oneof member (both present even when empty). The limits are set per case. */
typedef struct {
    ProtobufCMessage base;
    char *s;
    size_t n_items;
    char **items;
    uint32_t which;
    char *member;
} strs_t;

#define STRS_FD(name, id, label, type, q, field, flags)                                            \
    {                                                                                              \
        name, id, label, type, q, offsetof(strs_t, field), NULL, NULL, flags, 0, NULL, NULL        \
    }

static const ProtobufCFieldDescriptor strs_fields[] = {
    STRS_FD("s", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, s, 0),
    STRS_FD("items", 2, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_STRING,
            offsetof(strs_t, n_items), items, 0),
    STRS_FD("member", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, offsetof(strs_t, which),
            member, PROTOBUF_C_FIELD_FLAG_ONEOF),
};

static const ProtobufCMessageDescriptor strs_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "cx.test.Strings",
    "Strings",
    "Strings",
    "cx.test",
    sizeof(strs_t),
    sizeof strs_fields / sizeof strs_fields[0],
    strs_fields,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

static cx_field_meta_t strs_meta_fields[3] = {
    {"s", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"items", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"member", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
};

static const cx_msg_meta_t strs_meta = {
    &strs_desc,
    "cx.test.Strings",
    NULL,
    NULL,
    CX_KIND_VALUE,
    0,
    strs_meta_fields,
    NULL,
    0,
    NULL,
    0,
    NULL,
    0,
};

static void strs_limits(uint32_t min_len, uint32_t max_len)
{
    for (size_t i = 0; i < 3; i++) {
        strs_meta_fields[i].min_len = min_len;
        strs_meta_fields[i].max_len = max_len;
    }
}

/* The code points of s, decoded the textbook way (RFC 3629 section 3: lead byte, continuation
 * bytes, then the value's range), independently of the validator's byte-range tables; -1 when
 * s is not UTF-8. */
static long ref_utf8_count(const unsigned char *s)
{
    long n = 0;
    while (*s) {
        unsigned c = *s++;
        int extra;
        uint32_t cp, min;
        if (c < 0x80) {
            n++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        for (int k = 0; k < extra; k++, s++) {
            if ((*s & 0xC0) != 0x80)
                return -1; /* also stops at the NUL */
            cp = cp << 6 | (*s & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        n++;
    }
    return n;
}

/* Checks value in all three places against the reference: string.utf8 when it is not UTF-8,
 * else the length rules, with each limit on both sides of its length in code points. */
static void check_string_everywhere(const char *value)
{
    long cps = ref_utf8_count((const unsigned char *)value);
    uint32_t c = cps > 0 ? (uint32_t)cps : 0;
    /* {min_len, max_len}; 0 is no limit, so max_len c - 1 only applies from one character */
    const uint32_t limits[][2] = {{0, 0}, {c, 0}, {c + 1, 0}, {0, c}, {0, c - 1}, {1, 2}};
    for (int which = 0; which < 3; which++) {
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            uint32_t min_len = limits[l][0], max_len = c == 0 && l == 4 ? 0 : limits[l][1];
            strs_limits(min_len, max_len);
            strs_t m;
            memset(&m, 0, sizeof m);
            m.base.descriptor = &strs_desc;
            m.s = (char *)"";
            m.member = (char *)"";
            char *items[1] = {(char *)value};
            const char *path = which == 0 ? "s" : which == 1 ? "items[0]" : "member";
            if (which == 0)
                m.s = (char *)value;
            if (which == 1) {
                m.n_items = 1;
                m.items = items;
            }
            if (which == 2) {
                m.which = 3;
                m.member = (char *)value;
            }
            result_t r;
            run(&strs_meta, &m.base, &r);
            if (which == 0 && value[0] == '\0')
                expect_valid(&r); /* an empty singular string is absent */
            else if (cps < 0)
                expect_only(&r, path, "string.utf8");
            else if (cps < (long)min_len)
                expect_only(&r, path, "string.min_len");
            else if (max_len && cps > (long)max_len)
                expect_only(&r, path, "string.max_len");
            else
                expect_valid(&r);
        }
    }
    strs_limits(0, 0);
}

/* Every length from 0 to 40 bytes of ASCII, with one multi-byte character or one malformed
 * sequence at every position: both sides of the validator's ASCII scan, of its eight-byte words
 * and of the tails shorter than a word. */
static void test_utf8_every_length_and_position(void **state)
{
    (void)state;
    static const char *const inserts[] = {
        "\xc3\xa9",         /* U+00E9 */
        "\xe2\x82\xac",     /* U+20AC */
        "\xf0\x9f\x98\x80", /* U+1F600 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\x80",             /* a continuation byte alone */
        "\xbf",             /* another */
        "\xff",             /* never in UTF-8 */
        "\xc3",             /* a lead byte without its continuation */
        "\xe2\x82",         /* a three-byte sequence cut short */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong, three bytes */
        "\xf0\x80\x80\xaf", /* overlong, four bytes */
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf8\x88\x80\x80", /* a five-byte form */
        "\xc3\xa9\x80",     /* a stray continuation after a whole character */
    };
    char buf[64];
    for (size_t n = 0; n <= 40; n++) {
        memset(buf, 'a', n);
        buf[n] = '\0';
        check_string_everywhere(buf);
        for (size_t pos = 0; pos < n; pos++) {
            for (size_t k = 0; k < sizeof inserts / sizeof inserts[0]; k++) {
                size_t w = strlen(inserts[k]);
                memset(buf, 'a', n);
                memcpy(buf + pos, inserts[k], w);
                /* the insert stands for one character: pos before it, n - pos - 1 after it */
                memset(buf + pos + w, 'b', n - pos - 1);
                buf[n - 1 + w] = '\0';
                check_string_everywhere(buf);
            }
        }
    }
}

/* Lengths count code points: text of 0 to 40 characters of one to four bytes each, mixed. */
static void test_string_limits_at_code_point_boundaries(void **state)
{
    (void)state;
    static const char *const chars[] = {"x", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    char buf[4 * 40 + 1];
    for (size_t width = 0; width < 5; width++) {
        for (size_t n = 0; n <= 40; n++) {
            size_t len = 0;
            for (size_t i = 0; i < n; i++) {
                /* width 4 cycles through every width */
                const char *c = chars[width < 4 ? width : i % 4];
                memcpy(buf + len, c, strlen(c));
                len += strlen(c);
            }
            buf[len] = '\0';
            assert_int_equal(ref_utf8_count((const unsigned char *)buf), (long)n);
            check_string_everywhere(buf);
        }
    }
}

/* A C string ends at its first NUL: what follows is not part of the value, even malformed. */
static void test_string_ends_at_nul(void **state)
{
    (void)state;
    static const char with_nul[] = "ab\0\xff\xfe";
    static const char long_with_nul[] = "abcdefghijklmnopqrstuvwxyz\0\xff";
    static const char utf8_with_nul[] = "caf\xc3\xa9\0\xc3";
    check_string_everywhere(with_nul);
    check_string_everywhere(long_with_nul);
    check_string_everywhere(utf8_with_nul);
    strs_limits(0, 2);
    strs_t m;
    memset(&m, 0, sizeof m);
    m.base.descriptor = &strs_desc;
    m.s = (char *)with_nul;
    m.member = (char *)"";
    result_t r;
    run(&strs_meta, &m.base, &r);
    expect_valid(&r);
    strs_limits(0, 0);
}

/* A NULL string reads as "": absent when singular, present (and so too short) in a list. */
static void test_null_string_is_empty(void **state)
{
    (void)state;
    strs_limits(1, 0);
    strs_t m;
    memset(&m, 0, sizeof m);
    m.base.descriptor = &strs_desc;
    char *items[2] = {NULL, (char *)"ok"};
    m.n_items = 2;
    m.items = items;
    m.which = 3;
    result_t r;
    run(&strs_meta, &m.base, &r);
    assert_int_equal(r.v.count, 2);
    assert_string_equal(r.items[0].path, "items[0]");
    assert_string_equal(r.items[0].rule, "string.min_len");
    assert_string_equal(r.items[1].path, "member");
    assert_string_equal(r.items[1].rule, "string.min_len");
    strs_limits(0, 0);
}

/* An enum in the three places, its descriptor set per case. */
typedef struct {
    ProtobufCMessage base;
    int32_t e;
    size_t n_es;
    int32_t *es;
    uint32_t which;
    int32_t eo;
} enums_t;

#define ENUMS_FD(name, id, label, q, field, flags)                                                 \
    {                                                                                              \
        name, id, label, PROTOBUF_C_TYPE_ENUM, q, offsetof(enums_t, field), NULL, NULL, flags, 0,  \
            NULL, NULL                                                                             \
    }

static ProtobufCFieldDescriptor enums_fields[] = {
    ENUMS_FD("e", 1, PROTOBUF_C_LABEL_NONE, 0, e, 0),
    ENUMS_FD("es", 2, PROTOBUF_C_LABEL_REPEATED, offsetof(enums_t, n_es), es, 0),
    ENUMS_FD("eo", 3, PROTOBUF_C_LABEL_NONE, offsetof(enums_t, which), eo,
             PROTOBUF_C_FIELD_FLAG_ONEOF),
};

static const ProtobufCMessageDescriptor enums_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "cx.test.Enums",
    "Enums",
    "Enums",
    "cx.test",
    sizeof(enums_t),
    sizeof enums_fields / sizeof enums_fields[0],
    enums_fields,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

static const cx_field_meta_t enums_meta_fields[] = {
    {"e", CX_F_DEFINED_ONLY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"es", CX_F_DEFINED_ONLY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
    {"eo", CX_F_DEFINED_ONLY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, NULL},
};

static const cx_msg_meta_t enums_meta = {
    &enums_desc,
    "cx.test.Enums",
    NULL,
    NULL,
    CX_KIND_VALUE,
    0,
    enums_meta_fields,
    NULL,
    0,
    NULL,
    0,
    NULL,
    0,
};

/* Numbers with gaps, in four runs, negative ones included: -5 -4 | 0 1 2 | 10 | 100. */
static const ProtobufCEnumValue gapped_values[] = {
    {"MINUS_FIVE", "MINUS_FIVE", -5},
    {"MINUS_FOUR", "MINUS_FOUR", -4},
    {"ZERO", "ZERO", 0},
    {"ONE", "ONE", 1},
    {"TWO", "TWO", 2},
    {"TEN", "TEN", 10},
    {"HUNDRED", "HUNDRED", 100},
};

static const ProtobufCIntRange gapped_ranges[] = {{-5, 0}, {0, 2}, {10, 5}, {100, 6}, {0, 7}};

static const ProtobufCEnumDescriptor gapped_enum = {
    PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
    "cx.test.Gapped",
    "Gapped",
    "Gapped",
    "cx.test",
    7,
    gapped_values,
    0,
    NULL,
    4,
    gapped_ranges,
    NULL,
    NULL,
    NULL,
    NULL,
};

static void check_enum_value(const ProtobufCEnumDescriptor *ed, int32_t v)
{
    int defined = protobuf_c_enum_descriptor_get_value(ed, v) != NULL;
    for (int which = 0; which < 3; which++) {
        enums_t m;
        memset(&m, 0, sizeof m);
        m.base.descriptor = &enums_desc;
        int32_t items[1] = {v};
        const char *path = which == 0 ? "e" : which == 1 ? "es[0]" : "eo";
        if (which == 0)
            m.e = v;
        if (which == 1) {
            m.n_es = 1;
            m.es = items;
        }
        if (which == 2) {
            m.which = 3;
            m.eo = v;
        }
        result_t r;
        run(&enums_meta, &m.base, &r);
        if (defined) {
            expect_valid(&r);
        } else {
            if (r.v.count != 1)
                print_message("%s = %d\n", ed->name, (int)v);
            expect_only(&r, path, "enum.defined_only");
        }
    }
}

/* defined_only agrees with protobuf-c's lookup for every enum of every registered message, from
 * below the smallest number to above the largest, and at the ends of int32. */
static void test_enum_defined_only_matches_protobuf_c(void **state)
{
    (void)state;
    size_t n = 0, enums = 0;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    for (size_t i = 0; i <= n; i++) {
        const ProtobufCMessageDescriptor *d = i < n ? all[i]->desc : NULL;
        for (unsigned f = 0; f < (d ? d->n_fields : 1); f++) {
            const ProtobufCEnumDescriptor *ed = d ? d->fields[f].descriptor : &gapped_enum;
            if (d && d->fields[f].type != PROTOBUF_C_TYPE_ENUM)
                continue;
            enums++;
            for (int k = 0; k < 3; k++)
                enums_fields[k].descriptor = ed;
            int32_t lo = ed->values[0].value, hi = lo;
            for (unsigned v = 0; v < ed->n_values; v++) {
                lo = ed->values[v].value < lo ? ed->values[v].value : lo;
                hi = ed->values[v].value > hi ? ed->values[v].value : hi;
            }
            for (int64_t v = (int64_t)lo - 3; v <= (int64_t)hi + 3; v++)
                check_enum_value(ed, (int32_t)v);
            check_enum_value(ed, INT32_MIN);
            check_enum_value(ed, INT32_MAX);
        }
    }
    assert_true(enums > 10);
    for (int k = 0; k < 3; k++)
        enums_fields[k].descriptor = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_direct_message_has_no_violations),
        cmocka_unit_test(test_valid_calendar_event_has_no_violations),
        cmocka_unit_test(test_required_string_empty_reports_required),
        cmocka_unit_test(test_required_nested_field_path_uses_proto_names),
        cmocka_unit_test(test_required_message_null_reports_required),
        cmocka_unit_test(test_required_timestamp_null_reports_required),
        cmocka_unit_test(test_required_enum_zero_reports_required),
        cmocka_unit_test(test_required_if_text_content_without_text),
        cmocka_unit_test(test_required_if_image_needs_attachments),
        cmocka_unit_test(test_required_if_other_value_does_not_require),
        cmocka_unit_test(test_required_if_when_set_without_equals),
        cmocka_unit_test(test_required_if_cancelled_event_needs_no_times),
        cmocka_unit_test(test_at_least_one_of_on_root_has_empty_path),
        cmocka_unit_test(test_at_least_one_of_in_list_item_has_item_path),
        cmocka_unit_test(test_at_least_one_of_counts_active_oneof_member),
        cmocka_unit_test(test_email_format_in_repeated_submessage),
        cmocka_unit_test(test_string_max_len_counts_code_points),
        cmocka_unit_test(test_string_min_len),
        cmocka_unit_test(test_invalid_utf8_reports_string_utf8),
        cmocka_unit_test(test_optional_empty_string_skips_format),
        cmocka_unit_test(test_repeated_string_items_have_index_paths),
        cmocka_unit_test(test_repeated_max_items),
        cmocka_unit_test(test_repeated_min_items),
        cmocka_unit_test(test_enum_defined_only_rejects_99),
        cmocka_unit_test(test_enum_defined_only_in_nested_message),
        cmocka_unit_test(test_int32_gte_and_lte),
        cmocka_unit_test(test_uint32_gte_applies_to_zero),
        cmocka_unit_test(test_uint64_gte),
        cmocka_unit_test(test_double_bounds_and_finite),
        cmocka_unit_test(test_double_gte_zero_on_price),
        cmocka_unit_test(test_timestamp_range),
        cmocka_unit_test(test_timestamp_in_oneof_member),
        cmocka_unit_test(test_e164_on_actor_phone),
        cmocka_unit_test(test_message_id_on_email),
        cmocka_unit_test(test_identifier_on_channel),
        cmocka_unit_test(test_date_on_event_time_oneof),
        cmocka_unit_test(test_format_email_table),
        cmocka_unit_test(test_format_uri_table),
        cmocka_unit_test(test_format_uuid_table),
        cmocka_unit_test(test_format_hostname_table),
        cmocka_unit_test(test_format_time_zone_table),
        cmocka_unit_test(test_format_mime_type_table),
        cmocka_unit_test(test_format_language_tag_table),
        cmocka_unit_test(test_format_currency_table),
        cmocka_unit_test(test_format_traceparent_table),
        cmocka_unit_test(test_format_tables_for_shared_formats),
        cmocka_unit_test(test_synthetic_valid),
        cmocka_unit_test(test_bytes_min_and_max_len),
        cmocka_unit_test(test_repeated_bytes_items),
        cmocka_unit_test(test_int64_uint64_sint32_rule_ids),
        cmocka_unit_test(test_float_rule_ids),
        cmocka_unit_test(test_required_if_bool_string_and_int_conditions),
        cmocka_unit_test(test_repeated_timestamps_item_paths),
        cmocka_unit_test(test_nested_list_item_paths_carry_every_index),
        cmocka_unit_test(test_long_paths_are_cut_at_the_buffer_end),
        cmocka_unit_test(test_path_after_a_truncated_one_is_whole),
        cmocka_unit_test(test_required_if_rules_sharing_an_enum_field),
        cmocka_unit_test(test_violations_past_cap_are_counted_not_stored),
        cmocka_unit_test(test_all_violations_reported_in_field_order),
        cmocka_unit_test(test_deep_path_through_wrapper_event),
        cmocka_unit_test(test_bad_arguments_are_einval),
        cmocka_unit_test(test_registry_finds_every_message_by_name_and_event_type),
        cmocka_unit_test(test_generated_tables_match_descriptors),
        cmocka_unit_test(test_utf8_every_length_and_position),
        cmocka_unit_test(test_string_limits_at_code_point_boundaries),
        cmocka_unit_test(test_string_ends_at_nul),
        cmocka_unit_test(test_null_string_is_empty),
        cmocka_unit_test(test_enum_defined_only_matches_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
