"""The report as a document: sections of figures, tables and text, rendered to HTML and markdown.

report.html is self-contained (each PNG is embedded as a data URI and also linked to its file
under figures/), so it reads offline and can be mailed alone; report.md links the same files.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from binaryvae.stats import mean_se

__all__ = [
    "Document",
    "FigureItem",
    "Section",
    "TableItem",
    "TextItem",
    "fmt",
    "fmt_mean_se",
    "inline_html",
    "md_cell",
]

_CODE = re.compile(r"`([^`]+)`")


def inline_html(text: str) -> str:
    """Plain text with Markdown's `code` spans -> escaped HTML with <code> elements (so the
    same caption reads right in report.md and report.html)."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def md_cell(text: str) -> str:
    """A Markdown table cell: a literal ``|`` (e.g. ``KL(q || p)``) would end the cell, so it is
    escaped; newlines would end the row, so they become spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt(value, digits: int = 2) -> str:
    """A number for a table cell; missing or non-finite values are an em dash."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "—"
    return str(value)


def fmt_mean_se(values, digits: int = 2, shared: str = "") -> str:
    """"mean ± s.e." of the finite ``values`` (`binaryvae.stats.mean_se`), the value alone
    for one, an em dash for none. With ``shared`` (e.g. "one timing for the 4 seeds"), values
    that are all equal are one number stated once with that note, not a zero s.e."""
    mean, se = mean_se(values)
    if mean is None:
        return "—"
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if shared and len(finite) > 1 and len(set(finite)) == 1:
        return f"{fmt(mean, digits)} ({shared})"
    return fmt(mean, digits) if se is None else f"{fmt(mean, digits)} ± {fmt(se, digits)}"


@dataclass
class FigureItem:
    file: Path  # the PNG, inside the report's figures/ directory
    title: str
    caption: str


@dataclass
class TableItem:
    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class TextItem:
    text: str


@dataclass
class Section:
    title: str
    items: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: str
    sections: list[Section] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # what is not shown, and why

    def figures(self) -> list[FigureItem]:
        return [i for s in self.sections for i in s.items if isinstance(i, FigureItem)]

    # ------------------------------------------------------------------ HTML
    def to_html(self, root: Path) -> str:
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
            "line-height:1.4}img{max-width:100%;border:1px solid #ddd}table{border-collapse:"
            "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
            "figure{margin:1.5em 0}figcaption{color:#444;font-size:0.9em}"
            ".toc a{margin-right:1em}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
            f"<p>{inline_html(self.intro)}</p>",
            '<p class="toc">'
            + "".join(
                f'<a href="#s{i}">{e(s.title)}</a>' for i, s in enumerate(self.sections, start=1)
            )
            + "</p>",
        ]
        for i, section in enumerate(self.sections, start=1):
            parts.append(f'<h2 id="s{i}">{e(section.title)}</h2>')
            for item in section.items:
                parts.append(self._html_item(item, root))
        if self.omitted:
            parts.append("<h2>Not shown</h2><ul>")
            parts += [f"<li>{e(o)}</li>" for o in self.omitted]
            parts.append("</ul>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    @staticmethod
    def _html_item(item, root: Path) -> str:
        e = html.escape
        if isinstance(item, FigureItem):
            rel = item.file.relative_to(root).as_posix()
            data = base64.b64encode(item.file.read_bytes()).decode("ascii")
            return (
                f'<figure><a href="{e(rel)}"><img alt="{e(item.title)}" '
                f'src="data:image/png;base64,{data}" data-file="{e(rel)}"></a>'
                f"<figcaption><b>{inline_html(item.title)}.</b> "
                f"{inline_html(item.caption.strip())} "
                f'(<a href="{e(rel)}">{e(rel)}</a>)</figcaption></figure>'
            )
        if isinstance(item, TableItem):
            head = "".join(f"<th>{e(h)}</th>" for h in item.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in item.rows
            )
            cap = f"<p>{inline_html(item.caption)}</p>" if item.caption else ""
            return (
                f"<h3>{inline_html(item.title)}</h3><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>{cap}"
            )
        return f"<p>{inline_html(item.text)}</p>"

    # ------------------------------------------------------------------ markdown
    def to_markdown(self, root: Path) -> str:
        lines = [f"# {self.title}", "", self.intro, ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for item in section.items:
                if isinstance(item, FigureItem):
                    rel = item.file.relative_to(root).as_posix()
                    caption = item.caption.strip()
                    lines += [f"![{item.title}]({rel})", "", f"*{item.title}.* {caption}", ""]
                elif isinstance(item, TableItem):
                    lines += [f"### {item.title}", ""]
                    lines.append("| " + " | ".join(map(md_cell, item.header)) + " |")
                    lines.append("|" + "---|" * len(item.header))
                    lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in item.rows]
                    lines.append("")
                    if item.caption:
                        lines += [item.caption, ""]
                else:
                    lines += [item.text, ""]
        if self.omitted:
            lines += ["## Not shown", ""] + [f"- {o}" for o in self.omitted] + [""]
        return "\n".join(lines)
