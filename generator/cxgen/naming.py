"""Every identifier rule in one place, exposed to templates as filters.

Templates never build names by hand: they call these.
"""

import re


def _snake(name):
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


class Naming:
    # protobuf-c's rules (FullNameToC / FullNameToLower in protobuf-c's code generator).
    @staticmethod
    def pbc_type(full_name):
        """cx.messaging.v1.DirectMessage -> Cx__Messaging__V1__DirectMessage"""
        parts = full_name.split(".")
        return "__".join(p[:1].upper() + p[1:] for p in parts)

    @staticmethod
    def pbc_lower(full_name):
        """cx.messaging.v1.DirectMessage -> cx__messaging__v1__direct_message"""
        return "__".join(_snake(p) for p in full_name.split("."))

    @classmethod
    def pbc_descriptor(cls, full_name):
        return cls.pbc_lower(full_name) + "__descriptor"

    @staticmethod
    def pbc_header(proto_file):
        return proto_file[:-len(".proto")] + ".pb-c.h"

    @staticmethod
    def nanopb_type(full_name):
        """cx.messaging.v1.DirectMessage -> cx_messaging_v1_DirectMessage"""
        return full_name.replace(".", "_")

    # Our own names.
    @staticmethod
    def domain(package):
        """cx.messaging.v1 -> messaging"""
        return package.split(".")[1]

    @classmethod
    def cx_prefix(cls, msg):
        """cx.messaging.v1.DirectMessage -> cx_messaging_direct_message"""
        return "cx_%s_%s" % (cls.domain(msg.package), _snake(msg.name))

    @staticmethod
    def snake(name):
        return _snake(name)

    @staticmethod
    def out_base(proto_file):
        """cx/messaging/v1/messaging.proto -> cx/messaging/v1/messaging"""
        return proto_file[:-len(".proto")]

    @staticmethod
    def guard(path):
        return re.sub(r"[^A-Za-z0-9]", "_", path).upper() + "_"

    @staticmethod
    def c_string(text):
        """A C string literal for text (escaped, ASCII-only output)."""
        out = []
        for b in text.encode("utf-8"):
            ch = chr(b)
            if ch in "\\\"":
                out.append("\\" + ch)
            elif 0x20 <= b < 0x7F and ch != "?":
                out.append(ch)
            else:
                out.append("\\%03o" % b)
        return '"' + "".join(out) + '"'

    FILTERS = ("pbc_type", "pbc_lower", "pbc_descriptor", "pbc_header", "nanopb_type",
               "domain", "cx_prefix", "snake", "out_base", "guard", "c_string")
