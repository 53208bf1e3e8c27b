/* Cross-check of the two generated codecs: a message encoded by the embedded build (nanopb,
 * bounds from the generated .options) decodes with protobuf-c to the same field values, and
 * protobuf-c's encoding of it decodes with nanopb to the identical struct. One message per
 * domain, each with nested messages, enums, Timestamps, repeated fields or a oneof.
 *
 * Callback fields (large strings) are left empty here: nanopb skips them without a callback,
 * and the static bounds are what this test pins.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "cx/automation/v1/automation.pb-c.h"
#include "cx/automation/v1/automation.pb.h"
#include "cx/calendar/v1/calendar.pb-c.h"
#include "cx/calendar/v1/calendar.pb.h"
#include "cx/common/v1/common.pb-c.h"
#include "cx/common/v1/common.pb.h"
#include "cx/email/v1/email.pb-c.h"
#include "cx/email/v1/email.pb.h"
#include "cx/messaging/v1/messaging.pb-c.h"
#include "cx/messaging/v1/messaging.pb.h"
#include "cx/reactions/v1/reactions.pb-c.h"
#include "cx/reactions/v1/reactions.pb.h"
#include "cx/runtime/v1/runtime.pb-c.h"
#include "cx/runtime/v1/runtime.pb.h"

static uint8_t wire[65536];

/* nanopb encode -> protobuf-c unpack; returns the protobuf-c message (free it). */
static ProtobufCMessage *nanopb_to_pbc(const pb_msgdesc_t *fields, const void *src,
                                       const ProtobufCMessageDescriptor *desc, size_t *len)
{
    pb_ostream_t os = pb_ostream_from_buffer(wire, sizeof wire);
    assert_true(pb_encode(&os, fields, src));
    *len = os.bytes_written;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, *len, wire);
    assert_non_null(m);
    return m;
}

/* protobuf-c pack -> nanopb decode into dst (zeroed first), then compare with src. */
static void pbc_to_nanopb_equal(const ProtobufCMessage *m, const pb_msgdesc_t *fields,
                                const void *src, void *dst, size_t size, size_t nanopb_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    assert_true(n <= sizeof wire);
    assert_int_equal(protobuf_c_message_pack(m, wire), n);
    /* Both codecs write fields in number order, so the bytes agree too. */
    assert_int_equal(n, nanopb_len);
    memset(dst, 0, size);
    pb_istream_t is = pb_istream_from_buffer(wire, n);
    assert_true(pb_decode_ex(&is, fields, dst, PB_DECODE_NOINIT));
    assert_memory_equal(src, dst, size);
}

static void fill_channel(cx_common_v1_ChannelRef *c)
{
    strcpy(c->channel, "whatsapp");
    strcpy(c->account_id, "106540352242922");
    strcpy(c->business_account_id, "102290129340398");
    strcpy(c->display_phone_number, "15550783881");
}

static void check_channel(const Cx__Common__V1__ChannelRef *c)
{
    assert_non_null(c);
    assert_string_equal(c->channel, "whatsapp");
    assert_string_equal(c->account_id, "106540352242922");
    assert_string_equal(c->business_account_id, "102290129340398");
}

static void test_common_channel_ref(void **state)
{
    (void)state;
    static cx_common_v1_ChannelRef in, out;
    memset(&in, 0, sizeof in);
    fill_channel(&in);
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_common_v1_ChannelRef_fields, &in,
                                        &cx__common__v1__channel_ref__descriptor, &len);
    check_channel((Cx__Common__V1__ChannelRef *)m);
    pbc_to_nanopb_equal(m, cx_common_v1_ChannelRef_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_messaging_message_status(void **state)
{
    (void)state;
    static cx_messaging_v1_MessageStatus in, out;
    memset(&in, 0, sizeof in);
    in.has_channel = true;
    fill_channel(&in.channel);
    strcpy(in.message_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA");
    in.status = cx_messaging_v1_MessageStatusKind_MESSAGE_STATUS_KIND_READ;
    in.has_recipient = true;
    strcpy(in.recipient.id, "16315551181");
    in.recipient.kind = cx_common_v1_ActorKind_ACTOR_KIND_USER;
    in.has_occurred_at = true;
    in.occurred_at.seconds = 1750263773;
    in.occurred_at.nanos = 500000000;
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_messaging_v1_MessageStatus_fields, &in,
                                        &cx__messaging__v1__message_status__descriptor, &len);
    Cx__Messaging__V1__MessageStatus *p = (Cx__Messaging__V1__MessageStatus *)m;
    check_channel(p->channel);
    assert_string_equal(p->message_id, in.message_id);
    assert_int_equal(p->status, CX__MESSAGING__V1__MESSAGE_STATUS_KIND__MESSAGE_STATUS_KIND_READ);
    assert_string_equal(p->recipient->id, "16315551181");
    assert_int_equal(p->occurred_at->seconds, 1750263773);
    assert_int_equal(p->occurred_at->nanos, 500000000);
    pbc_to_nanopb_equal(m, cx_messaging_v1_MessageStatus_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_reactions_reaction(void **state)
{
    (void)state;
    static cx_reactions_v1_Reaction in, out;
    memset(&in, 0, sizeof in);
    in.has_channel = true;
    fill_channel(&in.channel);
    in.target_kind = cx_reactions_v1_ReactionTargetKind_REACTION_TARGET_KIND_MESSAGE;
    strcpy(in.target_id, "wamid.target");
    in.has_actor = true;
    strcpy(in.actor.id, "16315551181");
    in.kind = cx_reactions_v1_ReactionKind_REACTION_KIND_EMOJI;
    strcpy(in.emoji, "\xF0\x9F\x91\x8D"); /* thumbs up, 4-byte UTF-8 */
    in.has_occurred_at = true;
    in.occurred_at.seconds = 1700000000;
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_reactions_v1_Reaction_fields, &in,
                                        &cx__reactions__v1__reaction__descriptor, &len);
    Cx__Reactions__V1__Reaction *p = (Cx__Reactions__V1__Reaction *)m;
    check_channel(p->channel);
    assert_string_equal(p->emoji, "\xF0\x9F\x91\x8D");
    assert_string_equal(p->target_id, "wamid.target");
    assert_int_equal(p->kind, CX__REACTIONS__V1__REACTION_KIND__REACTION_KIND_EMOJI);
    pbc_to_nanopb_equal(m, cx_reactions_v1_Reaction_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_email_delivered(void **state)
{
    (void)state;
    static cx_email_v1_EmailDelivered in, out;
    memset(&in, 0, sizeof in);
    strcpy(in.provider, "ses");
    strcpy(in.tenant_id, "acme");
    strcpy(in.provider_event_id, "0100018c-evt");
    strcpy(in.reporting_mta, "a8-70.smtp-out.amazonses.com");
    in.processing_time_ms = UINT64_MAX;
    in.attempt = 2;
    in.tls = true;
    in.has_occurred_at = true;
    in.occurred_at.seconds = -62135596800; /* 0001-01-01T00:00:00Z */
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_email_v1_EmailDelivered_fields, &in,
                                        &cx__email__v1__email_delivered__descriptor, &len);
    Cx__Email__V1__EmailDelivered *p = (Cx__Email__V1__EmailDelivered *)m;
    assert_string_equal(p->provider, "ses");
    assert_string_equal(p->reporting_mta, "a8-70.smtp-out.amazonses.com");
    assert_true(p->processing_time_ms == UINT64_MAX);
    assert_int_equal(p->attempt, 2);
    assert_true(p->tls);
    assert_true(p->occurred_at->seconds == -62135596800);
    pbc_to_nanopb_equal(m, cx_email_v1_EmailDelivered_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_calendar_event_time_oneof(void **state)
{
    (void)state;
    static cx_calendar_v1_EventTime in, out;
    /* The all-day member of the oneof, then the timed one. */
    memset(&in, 0, sizeof in);
    in.which_value = cx_calendar_v1_EventTime_date_tag;
    strcpy(in.value.date, "2026-12-24");
    strcpy(in.time_zone, "Europe/Paris");
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_calendar_v1_EventTime_fields, &in,
                                        &cx__calendar__v1__event_time__descriptor, &len);
    Cx__Calendar__V1__EventTime *p = (Cx__Calendar__V1__EventTime *)m;
    assert_int_equal(p->value_case, CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE);
    assert_string_equal(p->date, "2026-12-24");
    assert_string_equal(p->time_zone, "Europe/Paris");
    pbc_to_nanopb_equal(m, cx_calendar_v1_EventTime_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);

    memset(&in, 0, sizeof in);
    in.which_value = cx_calendar_v1_EventTime_date_time_tag;
    in.value.date_time.seconds = 1798153200;
    m = nanopb_to_pbc(cx_calendar_v1_EventTime_fields, &in,
                      &cx__calendar__v1__event_time__descriptor, &len);
    p = (Cx__Calendar__V1__EventTime *)m;
    assert_int_equal(p->value_case, CX__CALENDAR__V1__EVENT_TIME__VALUE_DATE_TIME);
    assert_int_equal(p->date_time->seconds, 1798153200);
    pbc_to_nanopb_equal(m, cx_calendar_v1_EventTime_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_automation_execution_result(void **state)
{
    (void)state;
    static cx_automation_v1_AutomationExecutionResult in, out;
    memset(&in, 0, sizeof in);
    strcpy(in.integration_id, "zap-123");
    strcpy(in.idempotency_key, "k-9f1c");
    strcpy(in.action, "send_message");
    in.status = cx_automation_v1_ExecutionStatus_EXECUTION_STATUS_FAILED;
    in.has_error = true;
    strcpy(in.error.code, "131047");
    strcpy(in.error.cx_code, "REENGAGEMENT_WINDOW");
    in.attempts = 3;
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_automation_v1_AutomationExecutionResult_fields, &in,
                                        &cx__automation__v1__automation_execution_result__descriptor,
                                        &len);
    Cx__Automation__V1__AutomationExecutionResult *p =
        (Cx__Automation__V1__AutomationExecutionResult *)m;
    assert_string_equal(p->integration_id, "zap-123");
    assert_string_equal(p->error->code, "131047");
    assert_string_equal(p->error->cx_code, "REENGAGEMENT_WINDOW");
    assert_int_equal(p->attempts, 3);
    pbc_to_nanopb_equal(m, cx_automation_v1_AutomationExecutionResult_fields, &in, &out,
                        sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_runtime_manifest_repeated(void **state)
{
    (void)state;
    static cx_runtime_v1_ConnectorManifest in, out;
    memset(&in, 0, sizeof in);
    strcpy(in.id, "whatsapp");
    strcpy(in.version, "0.1.0");
    in.capabilities_count = 32; /* max_items: the static bound holds the schema's maximum */
    for (int i = 0; i < 32; i++) {
        in.capabilities[i].id = (cx_options_v1_CapabilityId)(1 + i % 17);
        in.capabilities[i].state = cx_runtime_v1_CapabilityState_CAPABILITY_STATE_ACTIVE;
    }
    in.inbound_auth = cx_runtime_v1_InboundAuth_INBOUND_AUTH_HMAC;
    size_t len;
    ProtobufCMessage *m = nanopb_to_pbc(cx_runtime_v1_ConnectorManifest_fields, &in,
                                        &cx__runtime__v1__connector_manifest__descriptor, &len);
    Cx__Runtime__V1__ConnectorManifest *p = (Cx__Runtime__V1__ConnectorManifest *)m;
    assert_string_equal(p->id, "whatsapp");
    assert_int_equal(p->n_capabilities, 32);
    assert_int_equal(p->capabilities[16]->id, 17);
    assert_int_equal(p->inbound_auth, CX__RUNTIME__V1__INBOUND_AUTH__INBOUND_AUTH_HMAC);
    pbc_to_nanopb_equal(m, cx_runtime_v1_ConnectorManifest_fields, &in, &out, sizeof in, len);
    protobuf_c_message_free_unpacked(m, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_channel_ref),
        cmocka_unit_test(test_messaging_message_status),
        cmocka_unit_test(test_reactions_reaction),
        cmocka_unit_test(test_email_delivered),
        cmocka_unit_test(test_calendar_event_time_oneof),
        cmocka_unit_test(test_automation_execution_result),
        cmocka_unit_test(test_runtime_manifest_repeated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
