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


def _type_of(f):
    t = "`%s`" % f.type_name if f.type in ("message", "enum") else f.type
    if f.repeated:
        t = "repeated " + t
    if f.oneof:
        t += " (oneof `%s`)" % f.oneof
    return t


def _rules_of(f):
    r = f.rules
    out = []
    if r.required:
        out.append("required")
    if r.min_len:
        out.append("min_len %d" % r.min_len)
    if r.max_len:
        out.append("max_len %d" % r.max_len)
    if r.format:
        out.append(r.format)
    if r.min_items:
        out.append("min_items %d" % r.min_items)
    if r.max_items:
        out.append("max_items %d" % r.max_items)
    if r.defined_only:
        out.append("defined_only")
    if r.gte is not None:
        out.append("gte %d" % r.gte)
    if r.lte is not None:
        out.append("lte %d" % r.lte)
    if r.finite:
        out.append("finite")
    if r.gte_double is not None:
        out.append("gte %g" % r.gte_double)
    if r.lte_double is not None:
        out.append("lte %g" % r.lte_double)
    return ", ".join(out)


def render_docs(env, model):
    """docs/schemas/<domain>.md: every message, field, rule, PII class and dedupe key."""
    by_domain = {}
    for f in model.files:
        by_domain.setdefault(Naming.domain(f.package), []).append(f)
    tpl = env.get_template("domain.md.j2")
    return {"docs/schemas/%s.md" % d: tpl.render(domain=d, files=fs, type_of=_type_of,
                                                 rules_of=_rules_of)
            for d, fs in sorted(by_domain.items())}


KINDS = {
    "nanopb_options": render_nanopb_options,
    "c": render_c,
    "docs": render_docs,
}


def render(model, kinds):
    env = environment()
    out = {}
    for kind in kinds:
        out.update(KINDS[kind](env, model))
    return out
