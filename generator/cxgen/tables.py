"""Derives the C tables of one message from the model (what templates/tables.*.j2 print).

Keeps every decision out of the templates: field order (protobuf-c sorts fields by number),
flags, template segments resolved to field indexes, cross-field rules resolved to indexes.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from . import keytemplate
from .naming import Naming

FORMATS = ["", "email", "e164", "uri", "uuid", "message_id", "hostname", "identifier",
           "time_zone", "mime_type", "language_tag", "date", "currency", "traceparent"]
PII = ["", "none", "phone", "email", "name", "content", "secret"]
KINDS = {"value": "CX_KIND_VALUE", "event": "CX_KIND_EVENT", "command": "CX_KIND_COMMAND",
         "result": "CX_KIND_RESULT"}


@dataclass(frozen=True)
class FieldRow:
    name: str
    json_name: str
    flags: str
    min_len: int
    max_len: int
    min_items: int
    max_items: int
    gte: int
    lte: int
    gte_d: str
    lte_d: str
    format: int
    pii: int
    msg_meta: Optional[str]     # symbol of the submessage's meta


@dataclass(frozen=True)
class Path:
    symbol: str
    index: Tuple[int, ...]


@dataclass(frozen=True)
class Segment:
    literal: Optional[str]
    paths_symbol: Optional[str]
    n_alt: int
    bucket: int


@dataclass(frozen=True)
class Group:
    symbol: str
    index: Tuple[int, ...]
    names: str


@dataclass(frozen=True)
class RequiredIf:
    field: int
    when: int
    equals: Optional[str]
    equals_enum: int


@dataclass(frozen=True)
class MessageTables:
    msg: object
    prefix: str
    meta: str
    fields: Tuple[FieldRow, ...]
    paths: Tuple[Path, ...]
    path_lists: Tuple[Tuple[str, Tuple[str, ...]], ...]
    segments: Tuple[Segment, ...]
    groups: Tuple[Group, ...]
    required_if: Tuple[RequiredIf, ...]


def sorted_fields(msg):
    return sorted(msg.fields, key=lambda f: f.number)


def meta_symbol(model, full_name):
    return Naming.cx_prefix(model.message(full_name)) + "_meta"


def _double(v):
    return "0.0" if v is None else repr(float(v))


def _field_row(model, f):
    r = f.rules
    flags = []
    if r.required:
        flags.append("CX_F_REQUIRED")
    if r.defined_only:
        flags.append("CX_F_DEFINED_ONLY")
    if r.finite:
        flags.append("CX_F_FINITE")
    if r.gte is not None:
        flags.append("CX_F_HAS_GTE")
    if r.lte is not None:
        flags.append("CX_F_HAS_LTE")
    if r.gte_double is not None:
        flags.append("CX_F_HAS_GTE_D")
    if r.lte_double is not None:
        flags.append("CX_F_HAS_LTE_D")
    if f.is_timestamp:
        flags.append("CX_F_TIMESTAMP")
    sub = None
    if f.type == "message" and not f.is_timestamp:
        sub = meta_symbol(model, f.type_name)
    return FieldRow(f.name, f.json_name, " | ".join(flags) or "0", r.min_len, r.max_len,
                    r.min_items, r.max_items, r.gte or 0, r.lte or 0,
                    _double(r.gte_double), _double(r.lte_double), FORMATS.index(r.format),
                    PII.index(r.pii), sub)


def _index_path(model, msg, path):
    out = []
    cur = msg
    for name in path:
        fields = sorted_fields(cur)
        i = [f.name for f in fields].index(name)
        out.append(i)
        f = fields[i]
        if f.type == "message" and not f.is_timestamp:
            cur = model.message(f.type_name)
    return tuple(out)


def message_tables(model, msg):
    prefix = Naming.cx_prefix(msg)
    fields = sorted_fields(msg)
    names = [f.name for f in fields]
    paths, path_lists, segments = [], [], []
    if msg.rules.dedupe_key:
        for si, seg in enumerate(keytemplate.parse(msg.rules.dedupe_key)):
            if isinstance(seg, keytemplate.Literal):
                segments.append(Segment(seg.text, None, 0, 0))
                continue
            syms = []
            for ai, p in enumerate(seg.paths):
                sym = "%s_key%d_%d" % (prefix, si, ai)
                paths.append(Path(sym, _index_path(model, msg, p)))
                syms.append(sym)
            list_sym = "%s_key%d" % (prefix, si)
            path_lists.append((list_sym, tuple(syms)))
            segments.append(Segment(None, list_sym, len(syms), seg.bucket_seconds))
    groups = []
    for gi, group in enumerate(msg.rules.at_least_one_of):
        groups.append(Group("%s_group%d" % (prefix, gi),
                            tuple(names.index(n) for n in group), ", ".join(group)))
    rif = []
    for q in msg.rules.required_if:
        when = msg.field(q.when_field)
        equals, equals_enum = (q.equals or None), 0
        if when.type == "enum" and q.equals:
            enum = model.enum(when.type_name)
            equals_enum = {v.name: v.number for v in enum.values}[q.equals]
        rif.append(RequiredIf(names.index(q.field), names.index(q.when_field), equals,
                              equals_enum))
    return MessageTables(msg, prefix, prefix + "_meta",
                         tuple(_field_row(model, f) for f in fields), tuple(paths),
                         tuple(path_lists), tuple(segments), tuple(groups), tuple(rif))
