"""A small document model rendered two ways: markdown (figures as PNG files beside it) and a self-contained
HTML page (inline CSS, figures as base64 data URIs, no scripts, nothing fetched)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from tam.io import atomic_write


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file name of the PNG, e.g. "curves.png"
    png: bytes
    caption: str = ""


@dataclass
class Checks:
    """Expectations with their verdicts ('yes', 'NO', 'not run')."""

    items: list[tuple[str, str]]


Block = str | Table | Figure | Checks | list


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: list[str]
    sections: list[Section]


def _md_block(b: Block) -> str:
    if isinstance(b, Table):
        lines = ([f"*{b.caption}*", ""] if b.caption else []) + ["| " + " | ".join(b.header) + " |",
                                                                  "|" + "---|" * len(b.header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in b.rows])
    if isinstance(b, Figure):
        return f"![{b.caption}]({b.name})" + (f"\n\n*{b.caption}*" if b.caption else "")
    if isinstance(b, Checks):
        return "\n".join(f"- {text}: **{verdict}**" for text, verdict in b.items)
    if isinstance(b, list):
        return "\n".join(f"- {x}" for x in b)
    return b


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}", *doc.intro]
    for s in doc.sections:
        parts += [f"## {s.title}"] + [_md_block(b) for b in s.blocks]
    return "\n\n".join(parts) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{border-bottom:2px solid #3b6ea5;padding-bottom:.3em}h2{margin-top:2em;color:#24466b}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}caption{text-align:left;font-style:italic;
padding-bottom:.4em;color:#4a5568}th,td{border:1px solid #cbd5e0;padding:.35em .7em;text-align:right}
th{background:#edf2f7}td.t{text-align:left}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#f7fafc}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #e2e8f0}figcaption{color:#4a5568;font-size:.9em}
.yes{color:#22753a;font-weight:bold}.NO{color:#b42318;font-weight:bold}.notrun{color:#718096;font-weight:bold}
.warn{background:#fff5d6;border-left:4px solid #d69e2e;padding:.6em 1em}
"""


_NUMERIC = re.compile(r"^[-+\d.,±—% ()]*$")  # cells right-aligned; text cells (class t) left-aligned


def _html_block(b: Block) -> str:
    e = html.escape
    if isinstance(b, Table):
        head = "".join(f"<th>{e(h)}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td{'' if _NUMERIC.match(c) else ' class=t'}>{e(c)}</td>" for c in r)
                       + "</tr>" for r in b.rows)
        cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(b.caption)}</figcaption></figure>")
    if isinstance(b, Checks):
        items = "".join(f'<li>{e(t)}: <span class="{v.replace(" ", "")}">{e(v)}</span></li>' for t, v in b.items)
        return f"<ul>{items}</ul>"
    if isinstance(b, list):
        return "<ul>" + "".join(f"<li>{e(x)}</li>" for x in b) + "</ul>"
    cls = ' class="warn"' if b.startswith("**") else ""
    return f"<p{cls}>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(b.strip("*"))) + "</p>"


def to_html(doc: Document) -> str:
    e = html.escape
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(doc.title)}</title><style>{CSS}</style></head><body>", f"<h1>{e(doc.title)}</h1>"]
    parts += [_html_block(p) for p in doc.intro]
    for s in doc.sections:
        parts += [f"<h2>{e(s.title)}</h2>"] + [_html_block(b) for b in s.blocks]
    return "\n".join(parts + ["</body></html>"]) + "\n"


def write_document(doc: Document, folder: str | Path) -> dict[str, Path]:
    """Write index.md, index.html and the figures' PNG files into `folder` (atomically); return the paths."""
    folder = Path(folder)
    for s in doc.sections:
        for b in s.blocks:
            if isinstance(b, Figure):
                atomic_write(folder / b.name, lambda p, data=b.png: p.write_bytes(data))
    md, page = folder / "index.md", folder / "index.html"
    atomic_write(md, lambda p: p.write_text(to_markdown(doc), encoding="utf-8"))
    atomic_write(page, lambda p: p.write_text(to_html(doc), encoding="utf-8"))
    return {"md": md, "html": page}
