#!/usr/bin/python3
"""Writes fixtures/canonical/<full name>.json: one golden canonical JSON per event and command.

Every field is filled with a deterministic value that satisfies its rules (formats, bounds,
cross-field rules), one member per oneof, two items per repeated field, so the golden files
exercise every field a consumer may read. Then each is canonicalised by our own encoder
(cx_json_tool) so the contract test can compare bytes. Run after a schema change and review
the diff: a change that breaks consumers shows up there.

usage: tests/schema/make_canonical.py BUILD_DIR/tests/cx_json_tool
"""

import json
import os
import subprocess
import sys

import pbpy

FORMAT_VALUES = {
    "email": "jane.doe@example.com", "e164": "+14155550123", "uri": "https://example.com/a/b",
    "uuid": "3f8e2a1c-9b4d-4e6f-8a7b-1c2d3e4f5a6b", "message_id": "<20261129.abc@mail.example.com>",
    "hostname": "mx.example.com", "identifier": "acme", "time_zone": "Europe/Paris",
    "mime_type": "image/jpeg", "language_tag": "en-US", "date": "2026-11-29",
    "currency": "USD", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


COUNTER = [0]


def value(model, f, depth, i):
    r = f.rules
    if f.is_timestamp:
        return "2026-11-29T10:15:%02d.250Z" % (30 + i)
    if f.type == "message":
        return fill(model, model.message(f.type_name), depth + 1)
    if f.type == "enum":
        enum = model.enum(f.type_name)
        return [v for v in enum.values if v.number != 0][0].name
    if f.type == "string":
        if r.format:
            return FORMAT_VALUES[r.format]
        COUNTER[0] += 1  # a distinct value per field, so a leak into a key is unambiguous
        text = "%s-%04d" % (f.name.replace("_", "-"), COUNTER[0])
        return text[:r.max_len] if r.max_len else text
    if f.type == "bytes":
        return "AQID"
    if f.type == "bool":
        return True
    if f.type in ("double", "float"):
        lo = r.gte_double if r.gte_double is not None else -1e9
        hi = r.lte_double if r.lte_double is not None else 1e9
        return min(max(48.8566 + i, lo), hi)
    lo = r.gte if r.gte is not None else 0
    hi = r.lte if r.lte is not None else 1 << 31
    v = min(max(7 + i, lo), hi)
    return str(v) if f.type in ("int64", "uint64", "sint64", "fixed64", "sfixed64") else v


def fill(model, msg, depth=0):
    out = {}
    seen_oneofs = set()
    for f in sorted(msg.fields, key=lambda x: x.number):
        if f.oneof:
            if f.oneof in seen_oneofs:
                continue
            seen_oneofs.add(f.oneof)
        if f.type == "message" and not f.is_timestamp and depth > 4:
            continue
        if f.repeated:
            n = min(2, f.rules.max_items)
            out[f.json_name] = [value(model, f, depth, i) for i in range(n)]
        else:
            out[f.json_name] = value(model, f, depth, 0)
    return out


def main():
    tool = sys.argv[1]
    model = pbpy.model()
    outdir = os.path.join(pbpy.ROOT, "fixtures", "canonical")
    os.makedirs(outdir, exist_ok=True)
    n = 0
    for msg in model.all_messages():
        if msg.rules.kind not in ("event", "command"):
            continue
        doc = json.dumps(fill(model, msg), ensure_ascii=False)
        proc = subprocess.run([tool], input=("%s\n%s" % (msg.full_name, doc)).encode(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = proc.stdout.decode()
        if proc.returncode != 0 or not out.startswith("ok "):
            sys.stderr.write("%s: %s%s\n" % (msg.full_name, out, proc.stderr.decode()))
            sys.exit(1)
        with open(os.path.join(outdir, msg.full_name + ".json"), "w") as fh:
            fh.write(out[3:].rstrip("\n") + "\n")
        n += 1
    print("wrote %d canonical fixtures to fixtures/canonical/" % n)


if __name__ == "__main__":
    main()
