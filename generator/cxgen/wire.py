"""Just enough of the protobuf wire format to pull one extension out of serialized options.

The extensions of `google.protobuf.FieldOptions` / `MessageOptions` arrive as unknown fields
(our options module is not compiled into Python), so we scan the serialized options for the
extension's tag and parse its payload with a class built from the request's own descriptors.
"""


def _varint(buf, pos):
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def extract_field(buf, number):
    """Concatenated payloads of every length-delimited occurrence of field `number`."""
    out = b""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if field == number:
                out += buf[pos:pos + n]
            pos += n
        else:
            raise ValueError("unsupported wire type %d in options" % wire)
    return out
