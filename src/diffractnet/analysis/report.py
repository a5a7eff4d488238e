"""A self-contained HTML report: sections of paragraphs, tables and figures (PNG files beside the page).

Example::

    sections = [Section("Overview", paragraphs=["Top-1 accuracy 91 %."],
                        tables=[Table("Per class", [{"label": 225, "recall": 0.93}])],
                        figures=[FigureRef("Confusion matrix", "confusion.png")])]
    write_report(out_dir, "Space-group classifier", sections)  # -> out_dir / "report.html"

Plain ``(caption, rows)`` and ``(caption, filename)`` tuples work in place of ``Table`` and ``FigureRef``.
All text is HTML-escaped; the page has inline CSS only, no scripts and no external links.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from diffractnet.analysis._atomic import write_text_atomic
from diffractnet.errors import DataError

REPORT_NAME = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
nav ul { padding-left: 1.2em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: .92em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .92em; color: #555; }
"""


class Table(NamedTuple):
    """A table: its caption and its rows (dicts of column name → value; columns in first-seen order)."""

    caption: str
    rows: list[dict]


class FigureRef(NamedTuple):
    """A figure: its caption and an image file in the report folder (path relative to it)."""

    caption: str
    filename: str


@dataclass
class Section:
    """One heading with its paragraphs, then tables, then figures (in that order)."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)


def write_report(out_dir: str | Path, title: str, sections: list[Section]) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path.

    Figures must already be files inside ``out_dir`` (given relative to it, or absolute); the page
    links them by relative path, so the folder can be moved or zipped as a whole.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise DataError(f"report folder {out_dir} does not exist; write the figures there first")
    body = [f"<h1>{_esc(title)}</h1>"]
    if len(sections) > 1:
        items = "".join(f'<li><a href="#s{i}">{_esc(s.heading)}</a></li>' for i, s in enumerate(sections, 1))
        body.append(f"<nav><ul>{items}</ul></nav>")
    for i, section in enumerate(sections, 1):
        body.append(_section_html(section, f"s{i}", out_dir))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    return write_text_atomic(out_dir / REPORT_NAME, page)


def _section_html(section: Section, anchor: str, out_dir: Path) -> str:
    """The HTML of one section."""
    if not isinstance(section, Section):
        raise DataError(f"sections must be Section objects, got {type(section).__name__}")
    parts = [f'<section id="{anchor}">', f"<h2>{_esc(section.heading)}</h2>"]
    parts += [f"<p>{_esc(text)}</p>" for text in section.paragraphs]
    parts += [_table_html(*table) for table in section.tables]
    parts += [_figure_html(*figure, out_dir=out_dir) for figure in section.figures]
    parts.append("</section>")
    return "\n".join(parts)


def _table_html(caption: str, rows: list[dict]) -> str:
    """An HTML table from dict rows; the columns are the keys in first-seen order."""
    if any(not isinstance(row, dict) for row in rows):
        raise DataError(f"table '{caption}' rows must be dicts of column name → value")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_esc(col)}</th>" for col in columns)
    body = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td class="num">{_cell(value)}</td>' if numeric else f"<td>{_cell(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not rows:
        body.append("<tr><td>(no rows)</td></tr>")
    return (f"<table>\n<caption>{_esc(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>")


def _figure_html(caption: str, filename: str | Path, out_dir: Path) -> str:
    """A ``<figure>`` linking an image file inside ``out_dir`` by its relative path."""
    relative = _relative_inside(Path(filename), out_dir)
    src = html.escape(quote(relative.as_posix()), quote=True)
    return (f'<figure>\n<img src="{src}" alt="{_esc(caption)}">\n'
            f"<figcaption>{_esc(caption)}</figcaption>\n</figure>")


def _relative_inside(filename: Path, out_dir: Path) -> Path:
    """``filename`` relative to ``out_dir``; it must exist there (no escaping the folder)."""
    full = (filename if filename.is_absolute() else out_dir / filename).resolve()
    try:
        relative = full.relative_to(out_dir.resolve())
    except ValueError:
        raise DataError(f"figure {filename} is outside the report folder {out_dir}; save it there") from None
    if not full.is_file():
        raise DataError(f"figure {filename} not found in the report folder {out_dir}")
    return relative


def _cell(value) -> str:
    """One escaped table cell: floats to 4 significant digits, None and NaN as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return _esc(f"{value:.4g}")
    return _esc(str(value))


def _esc(text) -> str:
    """HTML-escape any value's text, quotes included."""
    return html.escape(str(text), quote=True)
