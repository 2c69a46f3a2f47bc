"""A report as plain data (sections of paragraphs, tables and figures), so the Markdown and HTML
writers render the same content and cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field

import plotly.graph_objects as go


@dataclass
class Table:
    """Already-formatted cells: the writers only lay them out."""

    headers: list[str]
    rows: list[list[str]]


@dataclass
class FigureItem:
    """A rendered figure (``figure`` set) or a skipped one (``figure`` None, ``caption`` says why)."""

    name: str
    title: str
    caption: str
    figure: go.Figure | None = None


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
