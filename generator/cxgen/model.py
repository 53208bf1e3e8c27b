"""The immutable schema model every later stage reads.

Built once from the FileDescriptorProtos protoc hands us (with source info for comments).
Nothing downstream touches descriptors directly: templates and the lint see only this model.
"""

from dataclasses import dataclass, field as dc_field
from typing import Optional, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from . import wire

OPTIONS_FILE = "cx/options/v1/options.proto"
OPTIONS_PKG = "cx.options.v1"
EXT_NUMBER = 51001
TIMESTAMP = "google.protobuf.Timestamp"

_FDP = descriptor_pb2.FieldDescriptorProto
SCALAR_NAMES = {
    _FDP.TYPE_DOUBLE: "double", _FDP.TYPE_FLOAT: "float", _FDP.TYPE_INT64: "int64",
    _FDP.TYPE_UINT64: "uint64", _FDP.TYPE_INT32: "int32", _FDP.TYPE_FIXED64: "fixed64",
    _FDP.TYPE_FIXED32: "fixed32", _FDP.TYPE_BOOL: "bool", _FDP.TYPE_STRING: "string",
    _FDP.TYPE_BYTES: "bytes", _FDP.TYPE_UINT32: "uint32", _FDP.TYPE_SFIXED32: "sfixed32",
    _FDP.TYPE_SFIXED64: "sfixed64", _FDP.TYPE_SINT32: "sint32", _FDP.TYPE_SINT64: "sint64",
    _FDP.TYPE_ENUM: "enum", _FDP.TYPE_MESSAGE: "message",
}
INT_TYPES = {"int32", "sint32", "sfixed32", "int64", "sint64", "sfixed64",
             "uint32", "fixed32", "uint64", "fixed64"}
FLOAT_TYPES = {"float", "double"}


@dataclass(frozen=True)
class FieldRules:
    required: bool = False
    min_len: int = 0
    max_len: int = 0
    format: str = ""          # "" or the lower-case format name ("email", "e164", ...)
    min_items: int = 0
    max_items: int = 0
    defined_only: bool = False
    gte: Optional[int] = None
    lte: Optional[int] = None
    finite: bool = False
    gte_double: Optional[float] = None
    lte_double: Optional[float] = None
    pii: str = ""             # "" (unspecified) or "none", "phone", "email", ...


@dataclass(frozen=True)
class RequiredIf:
    field: str
    when_field: str
    equals: str


@dataclass(frozen=True)
class MessageRules:
    kind: str = "value"       # value | event | command | result
    dedupe_key: str = ""
    dedupe_ttl_seconds: int = 0
    capability: str = ""      # "" or the capability id ("inbound_messages")
    event_type: str = ""
    at_least_one_of: Tuple[Tuple[str, ...], ...] = ()
    required_if: Tuple[RequiredIf, ...] = ()


@dataclass(frozen=True)
class Field:
    name: str
    number: int
    json_name: str
    type: str                 # a SCALAR_NAMES value
    repeated: bool
    type_name: str            # full name (no leading dot) for enum and message fields
    oneof: str                # oneof name, "" when not in a oneof
    proto3_optional: bool
    rules: FieldRules
    comment: str

    @property
    def is_timestamp(self):
        return self.type == "message" and self.type_name == TIMESTAMP


@dataclass(frozen=True)
class Message:
    full_name: str
    name: str
    file: str
    package: str
    fields: Tuple[Field, ...]
    oneofs: Tuple[str, ...]
    rules: MessageRules
    comment: str

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class EnumValue:
    name: str
    number: int
    comment: str


@dataclass(frozen=True)
class Enum:
    full_name: str
    name: str
    file: str
    package: str
    values: Tuple[EnumValue, ...]
    comment: str


@dataclass(frozen=True)
class File:
    name: str
    package: str
    dependencies: Tuple[str, ...]
    messages: Tuple[Message, ...]
    enums: Tuple[Enum, ...]
    comment: str


@dataclass(frozen=True)
class Model:
    files: Tuple[File, ...]               # the files to generate, sorted by name
    messages: dict = dc_field(hash=False)  # full name -> Message (generated and imported)
    enums: dict = dc_field(hash=False)     # full name -> Enum

    def message(self, full_name):
        return self.messages.get(full_name)

    def enum(self, full_name):
        return self.enums.get(full_name)

    def all_messages(self):
        return [m for f in self.files for m in f.messages]


def _comments(fdp):
    out = {}
    for loc in fdp.source_code_info.location:
        text = loc.leading_comments.strip()
        if text:
            out[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
    return out


def _enum_suffix(enum_desc, value_name):
    """`PII_CLASS_PHONE` of enum PiiClass -> `phone`."""
    prefix = ""
    for ch in enum_desc.name:
        if ch.isupper() and prefix:
            prefix += "_"
        prefix += ch.upper()
    prefix += "_"
    name = value_name[len(prefix):] if value_name.startswith(prefix) else value_name
    return name.lower()


class _OptionReader:
    """Parses our extensions out of serialized descriptor options."""

    def __init__(self, file_protos):
        self.pool = descriptor_pool.DescriptorPool()
        for fdp in file_protos:
            self.pool.Add(fdp)
        try:
            self.field_desc = self.pool.FindMessageTypeByName(OPTIONS_PKG + ".FieldRules")
            self.msg_desc = self.pool.FindMessageTypeByName(OPTIONS_PKG + ".MessageRules")
        except KeyError:
            self.field_desc = self.msg_desc = None
        factory = message_factory.MessageFactory(self.pool)
        self.field_cls = factory.GetPrototype(self.field_desc) if self.field_desc else None
        self.msg_cls = factory.GetPrototype(self.msg_desc) if self.msg_desc else None

    def _enum_name(self, msg, fname):
        fd = msg.DESCRIPTOR.fields_by_name[fname]
        value = getattr(msg, fname)
        ev = fd.enum_type.values_by_number.get(value)
        if ev is None:
            return "?%d" % value
        if value == 0:
            return ""
        return _enum_suffix(fd.enum_type, ev.name)

    def field_rules(self, options):
        if self.field_cls is None:
            return FieldRules()
        raw = wire.extract_field(options.SerializeToString(), EXT_NUMBER)
        r = self.field_cls.FromString(raw)
        return FieldRules(
            required=r.required, min_len=r.min_len, max_len=r.max_len,
            format=self._enum_name(r, "format"), min_items=r.min_items,
            max_items=r.max_items, defined_only=r.defined_only,
            gte=r.gte if r.HasField("gte") else None,
            lte=r.lte if r.HasField("lte") else None,
            finite=r.finite,
            gte_double=r.gte_double if r.HasField("gte_double") else None,
            lte_double=r.lte_double if r.HasField("lte_double") else None,
            pii=self._enum_name(r, "pii"))

    def message_rules(self, options):
        if self.msg_cls is None:
            return MessageRules()
        raw = wire.extract_field(options.SerializeToString(), EXT_NUMBER)
        r = self.msg_cls.FromString(raw)
        kind = self._enum_name(r, "kind") or "value"
        return MessageRules(
            kind=kind, dedupe_key=r.dedupe_key, dedupe_ttl_seconds=r.dedupe_ttl_seconds,
            capability=self._enum_name(r, "capability"), event_type=r.event_type,
            at_least_one_of=tuple(tuple(a.fields) for a in r.at_least_one_of),
            required_if=tuple(RequiredIf(q.field, q.when_field, q.equals)
                              for q in r.required_if))


def build(file_protos, generate):
    """Model of `generate` (file names) given every FileDescriptorProto they need."""
    reader = _OptionReader(file_protos)
    messages, enums, files = {}, {}, []
    for fdp in file_protos:
        comments = _comments(fdp)
        pkg = fdp.package
        fmsgs, fenums = [], []

        def add_enum(ed, path, scope):
            full = scope + "." + ed.name if scope else ed.name
            values = tuple(EnumValue(v.name, v.number, comments.get(path + (2, i), ""))
                           for i, v in enumerate(ed.value))
            e = Enum(full, ed.name, fdp.name, pkg, values, comments.get(path, ""))
            enums[full] = e
            fenums.append(e)

        def add_message(md, path, scope):
            full = scope + "." + md.name if scope else md.name
            oneofs = tuple(o.name for o in md.oneof_decl)
            fields = []
            for i, fd in enumerate(md.field):
                ftype = SCALAR_NAMES[fd.type]
                oneof = ""
                if fd.HasField("oneof_index") and not fd.proto3_optional:
                    oneof = oneofs[fd.oneof_index]
                fields.append(Field(
                    name=fd.name, number=fd.number, json_name=fd.json_name or fd.name,
                    type=ftype, repeated=fd.label == _FDP.LABEL_REPEATED,
                    type_name=fd.type_name.lstrip("."), oneof=oneof,
                    proto3_optional=fd.proto3_optional,
                    rules=reader.field_rules(fd.options),
                    comment=comments.get(path + (2, i), "")))
            m = Message(full, md.name, fdp.name, pkg, tuple(fields), oneofs,
                        reader.message_rules(md.options), comments.get(path, ""))
            messages[full] = m
            fmsgs.append(m)
            for j, nested in enumerate(md.nested_type):
                if not nested.options.map_entry:
                    add_message(nested, path + (3, j), full)
            for j, ed in enumerate(md.enum_type):
                add_enum(ed, path + (4, j), full)

        for i, md in enumerate(fdp.message_type):
            add_message(md, (4, i), pkg)
        for i, ed in enumerate(fdp.enum_type):
            add_enum(ed, (5, i), pkg)
        if fdp.name in generate:
            file_comment = comments.get((12,), "") or comments.get((2,), "")
            files.append(File(fdp.name, pkg, tuple(fdp.dependency), tuple(fmsgs),
                              tuple(fenums), file_comment))
    files.sort(key=lambda f: f.name)
    return Model(tuple(files), messages, enums)
