#!/usr/bin/python3
"""Differential test of our proto3 JSON codec against Debian's python3-protobuf json_format.

    /usr/bin/python3 tests/schema/test_json_differential.py path/to/cx_json_tool [SEED]

For every registered message type (cx_json_tool --list) it builds seeded random messages in
Python, over the descriptors, and checks both directions through cx_json_tool:

  1. Python -> C: json_format.MessageToJson(m) (in turn with proto field names, enum numbers,
     ASCII escapes, indentation) decoded by our reader and encoded again; the result parses in
     Python to a message equal to m (our reader agrees with json_format's writer, and
     json_format's parser agrees with our writer).
  2. C -> Python: m's binary encoding unpacked by protobuf-c and encoded by our writer alone;
     the JSON is the same document as json_format's (same names, omitted defaults, int64
     strings, enum names, base64, RFC 3339 text) and parses in Python to m.
  3. Our canonical form is stable: 1 and 2 produce identical bytes.

Messages are compared by deterministic binary serialisation, which also compares NaN bits.
Random strings avoid U+0000 (our reader refuses it: protobuf-c strings are NUL-terminated).
"""
import base64
import glob
import importlib
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pool
from google.protobuf import json_format
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor as FD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PER_TYPE = 24
MAX_DEPTH = 4

TS_MIN = -62135596800
TS_MAX = 253402300799


def load_modules(tmp):
    protos = sorted(glob.glob(os.path.join(ROOT, "schemas", "**", "*.proto"), recursive=True))
    rel = [os.path.relpath(p, os.path.join(ROOT, "schemas")) for p in protos]
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "schemas"), "-I", "/usr/include",
                    "--python_out", tmp] + rel, check=True)
    sys.path.insert(0, tmp)
    for r in rel:
        importlib.import_module(r[:-len(".proto")].replace("/", ".") + "_pb2")


class Filler:
    def __init__(self, rng):
        self.rng = rng

    def string(self):
        r = self.rng
        n = r.choice([0, 1, 2, 5, 12, 30]) if r.random() < 0.9 else r.randint(0, 200)
        out = []
        for _ in range(n):
            k = r.random()
            if k < 0.55:
                out.append(chr(r.randint(0x20, 0x7E)))
            elif k < 0.65:
                out.append(r.choice('"\\/\b\f\n\r\t\x01\x1f\x7f\u2028\u2029'))
            elif k < 0.75:
                out.append(chr(r.randint(0x80, 0x7FF)))
            elif k < 0.88:
                c = r.randint(0x800, 0xFFFD)
                out.append(chr(c if not 0xD800 <= c <= 0xDFFF else 0x4E2D))
            else:
                out.append(chr(r.randint(0x10000, 0x10FFFF)))
        return "".join(out)

    def double(self):
        r = self.rng
        k = r.random()
        if k < 0.15:
            return r.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308,
                             2.2250738585072014e-308, 0.1, 1e16, 1e21, 1e-7, 123456789012345678.0])
        if k < 0.5:
            return round(r.uniform(-1e6, 1e6), r.randint(0, 6))
        while True:
            d = struct.unpack("<d", r.getrandbits(64).to_bytes(8, "little"))[0]
            if not math.isnan(d):
                return d

    def float(self):
        r = self.rng
        k = r.random()
        if k < 0.15:
            return r.choice([math.nan, math.inf, -math.inf, -0.0, 1.401298464324817e-45,
                             3.4028234663852886e38, 0.1, 16777217.0])
        while True:
            f = struct.unpack("<f", r.getrandbits(32).to_bytes(4, "little"))[0]
            if not math.isnan(f):
                return f

    def scalar(self, fd):
        r = self.rng
        t = fd.type
        if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
            return r.choice([-2**31, 2**31 - 1, -1, 0, 1, r.randint(-2**31, 2**31 - 1)])
        if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
            return r.choice([0, 1, 2**32 - 1, r.randint(0, 2**32 - 1)])
        if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
            return r.choice([-2**63, 2**63 - 1, -1, 2**53 + 1, r.randint(-2**63, 2**63 - 1)])
        if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
            return r.choice([0, 2**64 - 1, 2**53 + 1, r.randint(0, 2**64 - 1)])
        if t == FD.TYPE_DOUBLE:
            return self.double()
        if t == FD.TYPE_FLOAT:
            return self.float()
        if t == FD.TYPE_BOOL:
            return r.random() < 0.5
        if t == FD.TYPE_STRING:
            return self.string()
        if t == FD.TYPE_BYTES:
            return bytes(r.getrandbits(8) for _ in range(r.choice([0, 1, 2, 3, 4, 17])))
        if t == FD.TYPE_ENUM:
            values = [v.number for v in fd.enum_type.values]
            if r.random() < 0.1:
                return r.choice([1000, -5, 2**31 - 1])  # proto3 enums are open
            return r.choice(values)
        raise AssertionError(t)

    def timestamp(self, ts):
        r = self.rng
        ts.seconds = r.choice([TS_MIN, TS_MAX, 0, -1, r.randint(TS_MIN, TS_MAX)])
        ts.nanos = r.choice([0, 0, 1000000 * r.randint(0, 999), 1000 * r.randint(0, 999999),
                             r.randint(0, 999999999)])

    def fill(self, m, depth=0):
        r = self.rng
        desc = m.DESCRIPTOR
        chosen = {}
        for oneof in desc.oneofs:
            if r.random() < 0.8:
                chosen[oneof.name] = r.choice(oneof.fields).name
        for fd in desc.fields:
            if fd.containing_oneof is not None:
                if chosen.get(fd.containing_oneof.name) != fd.name:
                    continue
            elif r.random() < 0.4:
                continue
            msg = fd.type == FD.TYPE_MESSAGE
            if fd.label == FD.LABEL_REPEATED:
                n = r.choice([0, 1, 2, 3])
                if msg and depth >= MAX_DEPTH:
                    n = 0
                for _ in range(n):
                    if msg:
                        self.message(getattr(m, fd.name).add(), fd, depth)
                    else:
                        getattr(m, fd.name).append(self.scalar(fd))
            elif msg:
                if depth >= MAX_DEPTH and fd.containing_oneof is None:
                    continue
                sub = getattr(m, fd.name)
                sub.SetInParent()
                if depth < MAX_DEPTH:
                    self.message(sub, fd, depth)
            else:
                setattr(m, fd.name, self.scalar(fd))

    def message(self, sub, fd, depth):
        if fd.message_type.full_name == "google.protobuf.Timestamp":
            self.timestamp(sub)
        else:
            self.fill(sub, depth + 1)


def message_class(name):
    desc = descriptor_pool.Default().FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(descriptor_pool.Default()).GetPrototype(desc)


def canon(m):
    return m.SerializeToString(deterministic=True)


def main():
    if len(sys.argv) < 2:
        print("usage: test_json_differential.py path/to/cx_json_tool [seed]", file=sys.stderr)
        return 2
    tool = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 20240611
    types = subprocess.run([tool, "--list"], check=True, capture_output=True,
                           text=True).stdout.split()
    assert types, "cx_json_tool --list printed no types"
    with tempfile.TemporaryDirectory() as tmp:
        load_modules(tmp)
        rng = random.Random(seed)
        filler = Filler(rng)
        cases = []
        for name in types:
            cls = message_class(name)
            for i in range(PER_TYPE):
                m = cls()
                if i > 0:
                    filler.fill(m)
                py_json = json_format.MessageToJson(m, indent=None, ensure_ascii=i % 2 == 0)
                # What our reader gets varies: proto field names, enums as numbers, pretty
                # printing; what our writer is compared with is always the default form.
                variant = json_format.MessageToJson(
                    m, indent=2 if i % 5 == 4 else None, ensure_ascii=i % 2 == 1,
                    preserving_proto_field_name=i % 3 == 1, use_integers_for_enums=i % 4 == 3)
                cases.append((name, cls, m, py_json, variant))
        lines = []
        for name, _, m, _, variant in cases:
            lines.append("%s %s" % (name, variant.replace("\n", " ")))
            lines.append("%s @%s" % (name, base64.b64encode(canon(m)).decode()))
        proc = subprocess.run([tool], input="\n".join(lines) + "\n", capture_output=True,
                              text=True, check=True)
        out = proc.stdout.split("\n")
        failures = 0
        for k, (name, cls, m, py_json, _) in enumerate(cases):
            via_json, via_bin = out[2 * k], out[2 * k + 1]
            problems = []
            if not via_json.startswith("ok "):
                problems.append("C could not decode json_format's JSON: " + via_json)
            if not via_bin.startswith("ok "):
                problems.append("C could not encode the unpacked message: " + via_bin)
            if not problems:
                c_json, c_bin_json = via_json[3:], via_bin[3:]
                for label, text in (("decode+encode", c_json), ("encode", c_bin_json)):
                    try:
                        back = json_format.Parse(text, cls())
                        if canon(back) != canon(m):
                            problems.append("%s: Python parses our JSON to another message"
                                            % label)
                    except json_format.ParseError as e:
                        problems.append("%s: Python rejects our JSON: %s" % (label, e))
                if json.loads(c_bin_json) != json.loads(py_json):
                    problems.append("our JSON differs from json_format's as a document")
                if c_json != c_bin_json:
                    problems.append("decode+encode and encode disagree")
            if problems:
                failures += 1
                if failures <= 10:
                    print("FAIL %s\n  python: %s\n  ours:   %s\n  %s" % (
                        name, py_json, via_bin, "\n  ".join(problems)))
        print("json differential: %d messages over %d types, %d failures"
              % (len(cases), len(types), failures))
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
