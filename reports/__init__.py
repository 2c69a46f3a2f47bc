"""Turn result tables (summaries, requests) into Markdown, CSV and plotly HTML. Never imports the engine."""

from reports.table import summary_markdown, summary_rows

__all__ = ["summary_markdown", "summary_rows"]
