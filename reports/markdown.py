"""Render a :class:`~reports.document.Document` as Markdown (report.md): tables in full, figures by
name and caption (the plots themselves live in report.html)."""

from __future__ import annotations

from reports.document import Document, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |",
             "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def render_markdown(doc: Document) -> str:
    out = [f"# {doc.title}\n"]
    for section in doc.sections:
        out.append(f"## {section.title}\n")
        out += [f"{p}\n" for p in section.paragraphs]
        out += [markdown_table(t) for t in section.tables]
        for fig in section.figures:
            if fig.figure is None:
                out.append(f"- **{fig.title}** — skipped: {fig.caption}")
            else:
                out.append(f"- **{fig.title}** (`{fig.name}` in report.html) — {fig.caption}")
        if section.figures:
            out.append("")
    return "\n".join(out).rstrip() + "\n"
