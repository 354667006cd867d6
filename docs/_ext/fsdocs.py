"""Small Sphinx helpers for the funcspace documentation (no dependency beyond Sphinx).

- ``.. markdown-include:: path``: includes a Markdown file of the repository (the benchmarks'
  README) converted to reStructuredText, so its tables render as tables without a Markdown
  parser dependency. It understands the subset our READMEs use: ATX headings, paragraphs,
  ``-`` lists, fenced code blocks, pipe tables, inline code, bold, italics and links.
- Re-exported names: ``funcspace.Settings`` is documented once, as
  ``funcspace.evaluation.Settings``; a cross-reference to a name that Python resolves to an
  object documented under another name is sent there (only when the name really exists). A
  reference to a field listed in a class's Attributes section goes to the class, and a short
  name that Sphinx cannot place goes to the one documented object of that name, if there is
  exactly one. Anything else stays a broken reference (and fails the ``-W`` build).
- Constants that a package re-exports (``funcspace.optim.METHODS``) keep the ``#:`` comment
  of the module that defines them.
- Signatures: a default value whose ``repr`` is not Python (``<function f>``) is shown as
  ``...`` so the signature still parses.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import object_description
from sphinx.util.nodes import make_refnode

# --------------------------------------------------------------------------------------------
# Markdown -> reStructuredText
# --------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_TOKEN = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<ctext>.+?)(?P=ticks))"
    r"|(?P<link>\[(?P<ltext>[^\]]+)\]\((?P<url>[^)\s]+)\))"
    r"|(?P<bold>\*\*(?P<btext>.+?)\*\*)"
    r"|(?P<em>(?<![\w*\\])\*(?=\S)(?P<etext>[^*]+?)(?<=\S)\*(?![\w*]))"
)
# Characters allowed around inline markup by the reStructuredText recognition rules.
_BEFORE_OK = set(" \t\n'\"([{<-/:") | {"\u2014", "\u2013"}
_AFTER_OK = set(" \t\n'\")]}>-/:.,;!?\\") | {"\u2014", "\u2013"}
# Section adornments by Markdown level (level 1 is the document's own title).
ADORNMENTS = {1: "=", 2: "-", 3: "~", 4: "^", 5: '"', 6: "'"}


def _escape(text: str) -> str:
    """Plain text with every character that reStructuredText could read as markup escaped."""
    return re.sub(r"([\\*`|_])", r"\\\1", text)


def _strip_code(text: str) -> str:
    return re.sub(r"`+([^`]+)`+", r"\1", text)


def inline(text: str) -> str:
    """Markdown inline markup of one paragraph as reStructuredText."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        if m.group("code"):
            body = m.group("ctext").strip()
            markup = f"``{body}``" if body and "``" not in body else _escape(body)
        elif m.group("link"):
            label = _strip_code(m.group("ltext")).replace("<", "\\<")
            markup = f"`{label} <{m.group('url')}>`__"
        elif m.group("bold"):
            markup = f"**{_escape(_strip_code(m.group('btext')))}**"
        else:
            markup = f"*{_escape(_strip_code(m.group('etext')))}*"
        before = "".join(out)[-1:] or " "
        after = text[m.end() : m.end() + 1] or " "
        if before not in _BEFORE_OK:
            markup = "\\ " + markup
        if after not in _AFTER_OK:
            markup += "\\ "
        out.append(markup)
        pos = m.end()
    out.append(_escape(text[pos:]))
    result = "".join(out)
    # "(a) text" or "1. text" at the start of a paragraph would open an enumerated list.
    return re.sub(r"^(\(?\w{1,3}[.)])(\s)", r"\\\1\2", result)


def _cells(row: str) -> list[str]:
    """The cells of one pipe-table row (pipes inside code spans or escaped do not split)."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    cells, current, in_code, i = [], [], False, 0
    while i < len(row):
        ch = row[i]
        if ch == "\\" and row[i + 1 : i + 2] == "|":
            current.append("|")
            i += 2
            continue
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    cells.append("".join(current).strip())
    return cells


def markdown_to_rst(text: str, *, skip_title: bool = False) -> list[str]:
    """Convert Markdown (the subset our READMEs use) to reStructuredText lines."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    first_heading = True

    def blank() -> None:
        if out and out[-1] != "":
            out.append("")

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            marker, lang = fence.group(2), fence.group(3) or "text"
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            i += 1  # closing fence
            blank()
            out += [f".. code-block:: {lang}", ""] + ["   " + b if b else "" for b in body]
            out.append("")
            continue
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), inline(heading.group(2))
            i += 1
            if skip_title and first_heading and level == 1:
                first_heading = False
                continue
            first_heading = False
            blank()
            out += [title, ADORNMENTS[level] * (len(title) + 2), ""]
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            rows = [_cells(line)]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            width = max(len(r) for r in rows)
            blank()
            out += [".. list-table::", "   :header-rows: 1", "   :class: benchmark-table", ""]
            for row in rows:
                row = row + [""] * (width - len(row))
                for j, cell in enumerate(row):
                    lead = "   * - " if j == 0 else "     - "
                    out.append((lead + inline(cell)).rstrip())
            out.append("")
            continue
        bullet = _BULLET.match(line)
        if bullet:
            indent = len(bullet.group(1))
            item = [bullet.group(2)]
            i += 1
            while i < len(lines) and lines[i].strip():
                nxt = lines[i]
                if _BULLET.match(nxt) and len(_BULLET.match(nxt).group(1)) <= indent:
                    break
                if len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                item.append(nxt.strip())
                i += 1
            if not out or not out[-1].lstrip().startswith("- "):
                blank()
            out.append(" " * indent + "- " + inline(" ".join(item)))
            if i < len(lines) and not lines[i].strip():
                out.append("")
            continue
        para = [line.strip()]
        i += 1
        while i < len(lines) and lines[i].strip():
            nxt = lines[i]
            if _HEADING.match(nxt) or _FENCE.match(nxt) or _BULLET.match(nxt):
                break
            if (
                nxt.lstrip().startswith("|")
                and i + 1 < len(lines)
                and _TABLE_SEP.match(lines[i + 1])
            ):
                break
            para.append(nxt.strip())
            i += 1
        blank()
        out.append(inline(" ".join(para)))
        out.append("")
    return out


class MarkdownInclude(Directive):
    """``.. markdown-include:: path`` (relative to the document), ``:skip-title:`` drops its
    first level-1 heading (the including page has its own title)."""

    required_arguments = 1
    has_content = False
    option_spec = {"skip-title": directives.flag}

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        source = Path(path)
        if not source.is_file():
            raise self.error(f"markdown-include: no file {self.arguments[0]!r}")
        env.note_dependency(rel)
        converted = markdown_to_rst(
            source.read_text(encoding="utf-8"), skip_title="skip-title" in self.options
        )
        self.state_machine.insert_input(StringList(converted, str(source)), str(source))
        return []


# --------------------------------------------------------------------------------------------
# Cross-references to re-exported names
# --------------------------------------------------------------------------------------------


def _resolve_python(name: str):
    """The object ``name`` (``package.module.attr``) names, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


# Filled once per build after reading (ids of live objects: never stored in the environment).
_DOCUMENTED: dict[str, dict[int, tuple[str, str, str]]] = {}


def _documented_objects(env) -> dict[int, tuple[str, str, str]]:
    """id(object) -> (documented name, docname, node id), for every documented Python object."""
    cache = _DOCUMENTED.get("objects")
    if cache is None:
        cache = _DOCUMENTED["objects"] = {}
        domain = env.get_domain("py")
        for name, entry in sorted(domain.objects.items()):
            if entry.aliased or entry.objtype == "module":
                continue
            obj = _resolve_python(name)
            if obj is not None and (inspect.isclass(obj) or callable(obj)):
                cache.setdefault(id(obj), (name, entry.docname, entry.node_id))
    return cache


def _attribute_owner(name: str):
    """The class that lists ``name``'s last part as a field or annotated attribute, or None.

    Such attributes are documented in the class's Attributes section, which has no targets of
    its own: a reference to one goes to its class.
    """
    parent, _, attr = name.rpartition(".")
    owner = _resolve_python(parent) if parent else None
    if not inspect.isclass(owner):
        return None
    fields = getattr(owner, "__dataclass_fields__", {})
    annotated = any(attr in getattr(c, "__annotations__", {}) for c in owner.__mro__)
    return owner if attr in fields or annotated else None


def _unique_suffix(env, target: str, reftype: str):
    """The one documented object whose name ends in ``.target`` (a short name used in a
    docstring of a module that re-exports its owner), or None when there is none or several."""
    domain = env.get_domain("py")
    objtypes = set(domain.objtypes_for_role(reftype) or ())
    matches = {
        (entry.docname, entry.node_id, name)
        for name, entry in domain.objects.items()
        if name.endswith("." + target) and not entry.aliased and entry.objtype in objtypes
    }
    return matches.pop() if len(matches) == 1 else None


def resolve_reexport(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target]
    module, cls = node.get("py:module"), node.get("py:class")
    if module and cls:
        candidates.append(f"{module}.{cls}.{target}")
    if module and not target.startswith(module + "."):
        candidates.append(f"{module}.{target}")
    documented = _documented_objects(env)
    for name in candidates:
        obj = _resolve_python(name)
        if obj is None or not (inspect.isclass(obj) or callable(obj)):
            obj = _attribute_owner(name)
        if obj is None or id(obj) not in documented:
            continue
        title, docname, node_id = documented[id(obj)]
        return make_refnode(app.builder, node["refdoc"], docname, node_id, contnode, title)
    if "." not in target.strip("~."):
        found = _unique_suffix(env, target.strip("~."), node.get("reftype", ""))
        if found is not None:
            docname, node_id, title = found
            return make_refnode(app.builder, node["refdoc"], docname, node_id, contnode, title)
    return None


def _forget_cache(app, env, *args) -> None:
    _DOCUMENTED.clear()


# --------------------------------------------------------------------------------------------
# Signatures with defaults whose repr is not Python
# --------------------------------------------------------------------------------------------


def fix_signature(app, what, name, obj, options, signature, return_annotation):
    if not signature:
        return None
    try:
        ast.parse(f"def f{signature}: pass")
        return None
    except SyntaxError:
        pass
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    for param in params:
        if param.default is inspect.Parameter.empty:
            continue
        text = object_description(param.default)
        try:
            ast.parse(text, mode="eval")
        except SyntaxError:
            signature = signature.replace(text, "...")
    return signature, return_annotation


# --------------------------------------------------------------------------------------------
# Constants re-exported by a package keep the ``#:`` comment of the module that defines them
# --------------------------------------------------------------------------------------------


def doc_comment_from_origin(app, what, name, obj, options, lines) -> None:
    if what != "data":
        return
    text = "\n".join(lines).strip()
    type_doc = (inspect.getdoc(type(obj)) or "").strip()
    if text and text != type_doc:  # its own doc comment (a str's or dict's doc is not)
        return
    lines[:] = []
    modname, _, attr = name.rpartition(".")
    root = modname.split(".")[0]
    for other in sorted(sys.modules):
        module = sys.modules[other]
        if other == modname or not other.startswith(root + ".") or module is None:
            continue
        names = [key for key, value in vars(module).items() if value is obj]
        if not names:
            continue
        try:
            docs = ModuleAnalyzer.for_module(other).find_attr_docs()
        except PycodeError:
            continue
        for key in names:
            if ("", key) in docs:
                lines[:] = [*docs[("", key)], ""]
                return


def setup(app):
    app.add_directive("markdown-include", MarkdownInclude)
    app.connect("missing-reference", resolve_reexport)
    app.connect("env-updated", _forget_cache)
    app.connect("autodoc-process-signature", fix_signature)
    app.connect("autodoc-process-docstring", doc_comment_from_origin)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
