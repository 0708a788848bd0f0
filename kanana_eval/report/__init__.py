"""Reports: the README's tables printed from stored reference data, with run rows added."""

from kanana_eval.report.render import (
    render_markdown_table,
    render_readme_table,
    render_report,
)
from kanana_eval.report.tables import RunRow, RunScore, build_table_view, load_run_row

__all__ = [
    "RunRow",
    "RunScore",
    "build_table_view",
    "load_run_row",
    "render_markdown_table",
    "render_readme_table",
    "render_report",
]
