"""Shared by the Python-side schema tests: compile every schema to Python modules (Debian's
python3-protobuf) in a temporary directory and load them, plus the schema model."""

import importlib
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.path.join(ROOT, "schemas")
sys.path.insert(0, os.path.join(ROOT, "generator"))


def schema_files():
    out = []
    for dirpath, _, files in os.walk(SCHEMAS):
        for f in files:
            if f.endswith(".proto"):
                out.append(os.path.relpath(os.path.join(dirpath, f), SCHEMAS))
    return sorted(out)


def load():
    """{full message name: Python class} for every message in our schemas."""
    tmp = tempfile.mkdtemp(prefix="cx-pb2-")
    files = schema_files()
    subprocess.run(["protoc", "-I", SCHEMAS, "-I", "/usr/include", "--python_out=" + tmp] + files,
                   check=True)
    for dirpath, _, _ in os.walk(tmp):
        init = os.path.join(dirpath, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    sys.path.insert(0, tmp)
    classes = {}
    for f in files:
        mod = importlib.import_module(f[:-len(".proto")].replace("/", ".") + "_pb2")
        for desc in mod.DESCRIPTOR.message_types_by_name.values():
            _collect(desc, mod, classes)
    return classes


def _collect(desc, mod, classes):
    from google.protobuf import message_factory
    classes[desc.full_name] = message_factory.GetMessageClass(desc) \
        if hasattr(message_factory, "GetMessageClass") else \
        message_factory.MessageFactory().GetPrototype(desc)
    for nested in desc.nested_types:
        _collect(nested, mod, classes)


def model():
    """The generator's schema model of every schema file."""
    from google.protobuf import descriptor_pb2
    from cxgen import model as cxmodel
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run(["protoc", "-I", SCHEMAS, "-I", "/usr/include", "--include_imports",
                        "--include_source_info", "-o", out] + schema_files(), check=True)
        fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    names = set(schema_files()) - {cxmodel.OPTIONS_FILE}
    return cxmodel.build(list(fds.file), names)
