"""HTML building blocks for the report: escaping, tables, figures, sections and the page around them.

Every value that comes from a file passes through `html.escape` unless it is an `Html` fragment built
here. The page is one file: one inline <style>, images as data URIs, no script, no font or stylesheet
from elsewhere, so it opens from disk on a machine without network and reads on a phone.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class Html(str):
    """A fragment of markup built by this module: inserted as it is, never escaped again."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def num(value: float | None, digits: int = 3) -> str:
    """A number to `digits` decimals, or n/a where it is undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 3) -> str:
    return "n/a" if low is None or high is None else f"{low:.{digits}f}-{high:.{digits}f}"


def with_interval(value: float | None, low: float | None, high: float | None) -> str:
    """`0.812 [0.790, 0.833]`, the form the header and the summaries use."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> Html:
    """A captioned table; the first cell of each row is its header (scope=row), columns from `numeric_from` align
    right. Wrapped in a scrolling box so a wide table never widens the page on a phone."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        first, *rest = row
        kinds = ["num" if i + 1 >= numeric_from else "txt" for i in range(len(rest))]
        cells = "".join(f'<td class="{k}">{esc(c)}</td>' for k, c in zip(kinds, rest, strict=True))
        body.append(f'<tr><th scope="row">{esc(first)}</th>{cells}</tr>')
    return Html(
        f'<div class="scroll" tabindex="0" role="region" aria-label="{esc(caption)}"><table>'
        f"<caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def figure(uri: str, alt: str, caption: str = "", wide: bool = False) -> Html:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Html(f'<figure class="{"wide" if wide else "card"}"><img src="{esc(uri)}" alt="{esc(alt)}">{cap}</figure>')


def grid(items: Iterable[str], small: bool = False) -> Html:
    """Cards that reflow: three or four across on a desktop, one on a phone."""
    return Html(f'<div class="grid{" small" if small else ""}">{"".join(items)}</div>')


def para(text: str, cls: str = "") -> Html:
    """A paragraph of plain text; `cls` one of the page's classes (notice, warn, muted, headline)."""
    return Html(f'<p class="{esc(cls)}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>")


def details(summary: str, body: str) -> Html:
    return Html(f"<details><summary>{esc(summary)}</summary>{body}</details>")


@dataclass(frozen=True)
class Section:
    anchor: str  # id in the page, also the table of contents link
    title: str
    body: Html


def document(title: str, header: Html, sections: Sequence[Section]) -> str:
    """The whole page: header, a table of contents, the sections, one inline stylesheet."""
    nav = "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>' for s in sections)
    parts = "".join(
        f'<section id="{esc(s.anchor)}" aria-labelledby="{esc(s.anchor)}-h">'
        f'<h2 id="{esc(s.anchor)}-h">{esc(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light"><link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        '<a class="skip" href="#main">Skip to the results</a>'
        f'<header>{header}</header><nav aria-label="Sections"><ol>{nav}</ol></nav>'
        f'<main id="main">{parts}</main></body></html>\n'
    )


STYLE = """
*{box-sizing:border-box}
body{margin:0 auto;max-width:1180px;padding:0 16px 48px;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:#1b1f23;background:#fff}
h1{font-size:1.5rem;margin:20px 0 6px}
h2{font-size:1.2rem;margin:32px 0 8px;padding-top:8px;border-top:1px solid #d0d7de}
h3{font-size:1rem;margin:18px 0 6px}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px 8px;z-index:1}
a{color:#0b5cad}a:focus,summary:focus,.scroll:focus{outline:2px solid #0b5cad;outline-offset:2px}
.headline{font-size:1.15rem;margin:4px 0}.headline strong{font-size:1.35rem}
.muted{color:#57606a}
.notice{background:#f6f8fa;border-left:4px solid #57606a;padding:8px 12px;margin:10px 0}
.warn{background:#fff8e1;border-left:4px solid #b7791f;padding:8px 12px;margin:10px 0}
nav ol{display:flex;flex-wrap:wrap;gap:4px 18px;padding:0;margin:12px 0;list-style:none}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;font-size:.9rem}
caption{text-align:left;font-weight:600;padding:4px 0;caption-side:top;white-space:normal;
position:sticky;left:0;max-width:calc(100vw - 32px)}
th,td{padding:4px 8px;border-bottom:1px solid #e1e4e8;text-align:left;white-space:nowrap}
thead th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:hover{background:#f6f8fa}
figure{margin:0}figure img{max-width:100%;height:auto;display:block}
figure.wide{margin:10px 0}figcaption{font-size:.85rem;color:#57606a;padding:4px 2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;margin:10px 0}
.grid.small{grid-template-columns:repeat(auto-fill,minmax(200px,1fr))}.grid.small img{width:100%}
.card{border:1px solid #e1e4e8;border-radius:6px;padding:6px;background:#fff}
details{margin:8px 0}summary{cursor:pointer;color:#0b5cad}
@media (max-width:600px){body{font-size:14px;padding:0 10px 32px}h1{font-size:1.25rem}th,td{padding:3px 6px}}
"""
