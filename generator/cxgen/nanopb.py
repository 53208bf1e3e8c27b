"""Static bounds for the embedded (nanopb) build, derived from the schema limits.

A field is stored inline (FT_STATIC) when its worst case is small, otherwise it becomes a
callback (FT_CALLBACK) so no struct grows to megabytes:

- string: worst case 4 bytes per code point plus the terminator; static up to
  STATIC_FIELD_MAX bytes (max_len <= 256);
- bytes: static up to STATIC_FIELD_MAX bytes;
- repeated: static when max_items x item size <= STATIC_REPEATED_MAX and the item is static;
- a oneof whose members are all small stays a union; a oneof with a large member is emitted
  with `no_unions` (nanopb cannot keep callbacks in a union), its members then following the
  rules above.
"""

from dataclasses import dataclass

STATIC_FIELD_MAX = 1025
STATIC_REPEATED_MAX = 8192
CALLBACK_SIZE = 16
SCALAR_SIZE = {"bool": 1, "int32": 4, "sint32": 4, "sfixed32": 4, "uint32": 4, "fixed32": 4,
               "float": 4, "enum": 4, "int64": 8, "sint64": 8, "sfixed64": 8, "uint64": 8,
               "fixed64": 8, "double": 8}


@dataclass(frozen=True)
class Decision:
    path: str       # the nanopb options path: cx.common.v1.ActorRef.id
    option: str     # the option text: "type:FT_STATIC max_size:1021"


def _small(f):
    if f.type == "string":
        return 4 * f.rules.max_len + 1 <= STATIC_FIELD_MAX
    if f.type == "bytes":
        return f.rules.max_len + 4 <= STATIC_FIELD_MAX
    return True


def unions_allowed(msg):
    """False when a oneof member is too large to live in a union (then: no_unions)."""
    return all(_small(f) for f in msg.fields if f.oneof)


def _item_size(model, f, memo):
    """(static?, bytes) for one value of field f."""
    if f.type == "string":
        return _small(f), 4 * f.rules.max_len + 1
    if f.type == "bytes":
        return _small(f), f.rules.max_len + 4
    if f.type == "message":
        return True, message_size(model, model.message(f.type_name), memo) + 1
    return True, SCALAR_SIZE[f.type]


def field_option(model, f, memo):
    static, size = _item_size(model, f, memo)
    if f.repeated:
        total = f.rules.max_items * size + 2
        if static and total <= STATIC_REPEATED_MAX:
            opt = "type:FT_STATIC max_count:%d" % f.rules.max_items
            if f.type in ("string", "bytes"):
                opt += " max_size:%d" % (4 * f.rules.max_len + 1 if f.type == "string"
                                         else f.rules.max_len)
            return opt, total
        return "type:FT_CALLBACK", CALLBACK_SIZE
    if f.type in ("string", "bytes"):
        if static:
            n = 4 * f.rules.max_len + 1 if f.type == "string" else f.rules.max_len
            return "type:FT_STATIC max_size:%d" % n, size
        return "type:FT_CALLBACK", CALLBACK_SIZE
    return None, size


def message_size(model, msg, memo):
    """Estimated struct size of msg in the embedded build (the real one is printed by cx-gen)."""
    if msg.full_name in memo:
        return memo[msg.full_name]
    memo[msg.full_name] = 0  # recursion guard
    total = 0
    unions = {}
    unions_ok = unions_allowed(msg)
    for f in msg.fields:
        _, size = field_option(model, f, memo)
        if f.oneof and unions_ok:
            unions[f.oneof] = max(unions.get(f.oneof, 0), size)
        else:
            total += size
    total += sum(unions.values()) + 4 * len(unions)
    memo[msg.full_name] = total
    return total


def decisions(model, file):
    memo = {}
    out = []
    for msg in file.messages:
        if not unions_allowed(msg):
            out.append(Decision(msg.full_name, "no_unions:true"))
        for f in msg.fields:
            opt, _ = field_option(model, f, memo)
            if opt:
                out.append(Decision("%s.%s" % (msg.full_name, f.name), opt))
    return out
