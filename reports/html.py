"""Render a :class:`~reports.document.Document` as one self-contained HTML page (report.html).

plotly.js is embedded once, inline, so the page opens offline and from any folder; each figure sits in
a ``<div class="figure">`` with its title, the plot and its caption (the browser test relies on it).
"""

from __future__ import annotations

from html import escape

import plotly.io as pio
from plotly.offline import get_plotlyjs

from reports.document import Document, FigureItem, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f5f5f5; }
td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
.figure { border: 1px solid #e5e5e5; border-radius: 6px; padding: 0.5em 1em; margin: 1.5em 0; }
.figure h3 { margin: 0.3em 0; }
.caption { color: #555; font-size: 0.9em; }
.skipped { color: #8a6d3b; font-size: 0.9em; }
"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_figure(item: FigureItem) -> str:
    if item.figure is None:
        return f'<p class="skipped">Figure skipped — {escape(item.title)}: {escape(item.caption)}</p>'
    plot = pio.to_html(item.figure, full_html=False, include_plotlyjs=False, div_id=f"fig-{item.name}",
                       config={"displaylogo": False, "responsive": True})
    return (f'<div class="figure" id="{escape(item.name)}"><h3>{escape(item.title)}</h3>{plot}'
            f'<p class="caption">{escape(item.caption)}</p></div>')


def render_html(doc: Document) -> str:
    parts = [f"<h1>{escape(doc.title)}</h1>"]
    for section in doc.sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
        parts += [html_table(t) for t in section.tables]
        parts += [html_figure(f) for f in section.figures]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(doc.title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{''.join(parts)}</body></html>\n"
    )
