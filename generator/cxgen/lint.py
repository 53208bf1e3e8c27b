"""Schema lint: every problem, each naming file, message and field, before anything is written."""

from . import keytemplate
from .model import FLOAT_TYPES, INT_TYPES

CAPABILITY_NEEDED = ("event", "command")


class LintError(Exception):
    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _where(msg, field=None):
    return "%s: %s%s" % (msg.file, msg.full_name, "." + field.name if field else "")


def _field_problems(model, msg, f):
    r = f.rules
    out = []

    def bad(text):
        out.append("%s: %s" % (_where(msg, f), text))

    if f.proto3_optional:
        bad("proto3 'optional' is not supported (Debian's protoc-c rejects it); use a oneof "
            "or a submessage for presence")
    if not r.pii:
        bad("no PII class: add (cx.options.v1.field).pii")
    elif r.pii.startswith("?"):
        bad("unknown PII class")
    if f.type in ("string", "bytes") and r.max_len == 0:
        bad("%s field without an upper bound: add (cx.options.v1.field).max_len" % f.type)
    if r.min_len and r.max_len and r.min_len > r.max_len:
        bad("min_len %d is above max_len %d" % (r.min_len, r.max_len))
    if f.type not in ("string", "bytes") and (r.min_len or r.max_len):
        bad("min_len/max_len apply to string and bytes fields only")
    if r.format and f.type != "string":
        bad("format applies to string fields only")
    if r.format.startswith("?"):
        bad("unknown format")
    if f.repeated and r.max_items == 0:
        bad("repeated field without an upper bound: add (cx.options.v1.field).max_items")
    if not f.repeated and (r.min_items or r.max_items):
        bad("min_items/max_items apply to repeated fields only")
    if r.min_items and r.max_items and r.min_items > r.max_items:
        bad("min_items %d is above max_items %d" % (r.min_items, r.max_items))
    if r.defined_only and f.type != "enum":
        bad("defined_only applies to enum fields only")
    if (r.gte is not None or r.lte is not None) and f.type not in INT_TYPES:
        bad("gte/lte apply to integer fields only")
    if r.gte is not None and r.lte is not None and r.gte > r.lte:
        bad("gte %d is above lte %d" % (r.gte, r.lte))
    if (r.finite or r.gte_double is not None or r.lte_double is not None) \
            and f.type not in FLOAT_TYPES:
        bad("finite/gte_double/lte_double apply to float and double fields only")
    if f.type == "message" and model.message(f.type_name) is None:
        bad("unknown message type %s" % f.type_name)
    return out


def _message_problems(model, msg):
    r = msg.rules
    out = []

    def bad(text):
        out.append("%s: %s" % (_where(msg), text))

    if r.kind.startswith("?"):
        bad("unknown message kind")
    if r.kind in CAPABILITY_NEEDED:
        if not r.dedupe_key:
            bad("%s message without a dedupe-key template (message option dedupe_key)" % r.kind)
        if not r.capability:
            bad("%s message without a capability" % r.kind)
        if not r.event_type:
            bad("%s message without an event type" % r.kind)
        if r.dedupe_key and r.dedupe_ttl_seconds == 0:
            bad("%s message without a dedupe TTL (dedupe_ttl_seconds)" % r.kind)
    else:
        if r.dedupe_key or r.capability or r.event_type:
            bad("only event and command messages take dedupe_key, capability and event_type")
    if r.capability.startswith("?"):
        bad("unknown capability")
    if r.event_type and not r.event_type.startswith(msg.package + "."):
        bad("event type '%s' must start with the package name '%s.'"
            % (r.event_type, msg.package))
    if r.dedupe_key:
        try:
            for seg in keytemplate.parse(r.dedupe_key):
                if isinstance(seg, keytemplate.Ref):
                    for path in seg.paths:
                        chain = keytemplate.resolve(model, msg, path)
                        if seg.bucket_seconds and not chain[-1].is_timestamp:
                            raise keytemplate.TemplateError(
                                "time bucket on '%s', which is not a Timestamp"
                                % ".".join(path))
        except keytemplate.TemplateError as e:
            bad("dedupe_key '%s': %s" % (r.dedupe_key, e))
    for group in r.at_least_one_of:
        if len(group) < 2:
            bad("at_least_one_of needs at least two fields")
        for name in group:
            if msg.field(name) is None:
                bad("at_least_one_of names unknown field '%s'" % name)
    for q in r.required_if:
        target, when = msg.field(q.field), msg.field(q.when_field)
        if target is None:
            bad("required_if names unknown field '%s'" % q.field)
        if when is None:
            bad("required_if names unknown field '%s'" % q.when_field)
        elif when.type == "enum" and q.equals:
            enum = model.enum(when.type_name)
            if enum and q.equals not in {v.name for v in enum.values}:
                bad("required_if: '%s' is not a value of %s" % (q.equals, enum.full_name))
        elif when.repeated or when.type == "message":
            if q.equals:
                bad("required_if on '%s' (a message or list) takes no 'equals'" % when.name)
    for f in msg.fields:
        out.extend(_field_problems(model, msg, f))
    return out


def lint(model):
    """Every problem as 'file: Message.field: text', sorted; empty when the schemas are clean."""
    problems = []
    event_types = {}
    for msg in model.all_messages():
        problems.extend(_message_problems(model, msg))
        et = msg.rules.event_type
        if et:
            if et in event_types:
                problems.append("%s: event type '%s' also used by %s"
                                % (_where(msg), et, event_types[et]))
            event_types[et] = msg.full_name
    return sorted(problems)


def check(model):
    problems = lint(model)
    if problems:
        raise LintError(problems)
