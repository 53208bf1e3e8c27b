"""Rendering: one jinja2 template per output kind, fed only from the model."""

import os

import jinja2

from . import GEN_ABI, VERSION, nanopb, tables
from .naming import Naming

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def environment():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    for name in Naming.FILTERS:
        env.filters[name] = getattr(Naming, name)
    env.globals.update(version=VERSION, gen_abi=GEN_ABI)
    return env


def render_nanopb_options(env, model):
    """{path: text} of the nanopb .options file of every schema file."""
    out = {}
    for f in model.files:
        out["nanopb/" + Naming.out_base(f.name) + ".options"] = env.get_template("nanopb.options.j2").render(
            file=f, decisions=nanopb.decisions(model, f))
    return out


def _cx_header(proto_file):
    return Naming.out_base(proto_file) + ".cx.h"


def render_c(env, model):
    """The meta tables and typed wrappers of every file, and the registry."""
    out = {}
    generated = {f.name for f in model.files}
    metas = []
    for f in model.files:
        ts = [tables.message_tables(model, m) for m in f.messages]
        deps = [_cx_header(d) for d in f.dependencies if d in generated]
        base = "tables/" + Naming.out_base(f.name)
        out[base + ".cx.h"] = env.get_template("tables.h.j2").render(
            file=f, tables=ts, deps=deps)
        out[base + ".cx.c"] = env.get_template("tables.c.j2").render(
            file=f, tables=ts, kinds=tables.KINDS)
        metas.extend((m.full_name, t.meta) for m, t in zip(f.messages, ts))
    out["tables/registry.cx.c"] = env.get_template("registry.c.j2").render(
        headers=sorted(_cx_header(f.name) for f in model.files),
        metas=[sym for _, sym in sorted(metas)])
    return out


KINDS = {
    "nanopb_options": render_nanopb_options,
    "c": render_c,
}


def render(model, kinds):
    env = environment()
    out = {}
    for kind in kinds:
        out.update(KINDS[kind](env, model))
    return out
