"""The dedupe-key template grammar (docs/dedupe-keys.md).

    template := ( literal | "{" ref "}" )*
    ref      := path ( "|" path )* [ "/" bucket ]
    path     := ident ( "." ident )*
    bucket   := digits ( "s" | "m" | "h" )      (only with a single Timestamp path)
    literal  := any characters but "{" and "}"

Parsing is pure; resolving paths against a message is in `resolve`.
"""

import re
from dataclasses import dataclass
from typing import Tuple

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_BUCKET = re.compile(r"^([1-9][0-9]*)([smh])$")
_UNIT = {"s": 1, "m": 60, "h": 3600}


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Ref:
    paths: Tuple[Tuple[str, ...], ...]
    bucket_seconds: int          # 0 when no bucket


def parse(text):
    if not text:
        raise TemplateError("empty template")
    segments = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "}":
            raise TemplateError("unbalanced '}' at offset %d" % pos)
        if ch != "{":
            end = pos
            while end < len(text) and text[end] not in "{}":
                end += 1
            segments.append(Literal(text[pos:end]))
            pos = end
            continue
        end = text.find("}", pos)
        if end < 0:
            raise TemplateError("unterminated '{' at offset %d" % pos)
        body = text[pos + 1:end]
        if "{" in body:
            raise TemplateError("nested '{' at offset %d" % pos)
        bucket = 0
        if "/" in body:
            body, _, b = body.partition("/")
            m = _BUCKET.match(b)
            if not m:
                raise TemplateError("bad time bucket '%s' (want e.g. 10s, 5m, 1h)" % b)
            bucket = int(m.group(1)) * _UNIT[m.group(2)]
        paths = []
        for alt in body.split("|"):
            parts = alt.split(".")
            if not all(_IDENT.match(p) for p in parts):
                raise TemplateError("bad field path '%s'" % alt)
            paths.append(tuple(parts))
        if bucket and len(paths) != 1:
            raise TemplateError("a time bucket takes exactly one field")
        segments.append(Ref(tuple(paths), bucket))
        pos = end + 1
    if not any(isinstance(s, Ref) for s in segments):
        raise TemplateError("template references no field")
    return tuple(segments)


def resolve(model, message, path):
    """The chain of model.Field objects a path walks; raises TemplateError."""
    chain = []
    msg = message
    for i, name in enumerate(path):
        f = msg.field(name) if msg else None
        if f is None:
            raise TemplateError("unknown field '%s' in '%s'" % (name, ".".join(path)))
        if f.repeated:
            raise TemplateError("'%s' is repeated; keys cannot reference repeated fields"
                                % ".".join(path[:i + 1]))
        chain.append(f)
        last = i == len(path) - 1
        if f.type == "message" and not f.is_timestamp:
            if last:
                raise TemplateError("'%s' is a message; reference one of its fields"
                                    % ".".join(path))
            msg = model.message(f.type_name)
        elif not last:
            raise TemplateError("'%s' is not a message" % ".".join(path[:i + 1]))
        elif f.type == "bytes":
            raise TemplateError("'%s' is bytes; keys take text, numbers, enums, timestamps"
                                % ".".join(path))
    return tuple(chain)
