"""A cost report as a file: CSV (exact figures, for chargeback systems and spreadsheets) and
PDF (rounded to cents, for people; drawn with fpdf2, pure Python)."""

from __future__ import annotations

import csv
import io

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from billing.reports import CostReport, Line, usd

CSV_COLUMNS = (
    "tenant",
    "month",
    "section",
    "id",
    "name",
    "requests",
    "errors",
    "unpriced_requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "cache_savings_usd",
    # Added after the first columns so existing readers by position keep working.
    "response_cache_hits",
    "response_cache_saved_usd",
)
SECTIONS = (("application", "by_application"), ("key", "by_key"), ("model", "by_model"))


def filename(report: CostReport, extension: str) -> str:
    return f"waystation-cost-{report.tenant_slug}-{report.label}.{extension}"


def report_csv(report: CostReport) -> bytes:
    """One row for the total, one per application, key and model (each section sums to the
    total) and one for the previous month's cost. Money unrounded."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)

    def row(section: str, line: Line, only: tuple[str, ...] = CSV_COLUMNS) -> None:
        """The line's figures under their column names; columns not in `only` stay empty."""
        data = line.as_dict()
        data.update(
            tenant=report.tenant_slug,
            month=report.label,
            section=section,
            id="" if data["id"] is None else data["id"],
        )
        writer.writerow([data[name] if name in only else "" for name in CSV_COLUMNS])

    row("total", report.total)
    for section, attribute in SECTIONS:
        for line in getattr(report, attribute):
            row(section, line)
    # The previous month has a cost only (the trend); the other figures would read as zeros.
    previous = Line(label=report.trend.previous_month, cost=report.trend.previous_cost)
    row("previous_month", previous, only=("tenant", "month", "section", "id", "name", "cost_usd"))
    return out.getvalue().encode("utf-8")


# --- PDF ---------------------------------------------------------------------------------


def _text(value: object) -> str:
    """fpdf2's core fonts take Latin-1: anything else becomes "?"."""
    return str(value).replace("…", "...").encode("latin-1", "replace").decode("latin-1")


def report_pdf(report: CostReport) -> bytes:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_text(f"Cost report {report.tenant_slug} {report.label}"))
    pdf.set_author("Waystation")
    pdf.set_creator("Waystation")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def line(text: str, size: int = 10, style: str = "", height: float = 6) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.cell(0, height, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line(f"Cost report: {report.tenant_name}", size=16, style="B", height=9)
    line(
        f"{report.title} ({report.period_start:%Y-%m-%d} to {report.period_end:%Y-%m-%d} UTC, "
        f"end exclusive); generated {report.generated_at:%Y-%m-%d %H:%M} UTC",
        size=9,
    )
    pdf.ln(3)
    total, trend = report.total, report.trend
    line(f"Total cost: {usd(total.cost)}", size=13, style="B", height=8)
    line(
        f"{total.requests:,} requests ({total.errors:,} errors), "
        f"{total.input_tokens:,} input tokens ({total.cached_input_tokens:,} cached), "
        f"{total.output_tokens:,} output tokens"
    )
    line(f"Saved by prompt caching: {usd(total.cache_savings)}")
    line(
        f"Saved by the response cache: {usd(total.response_cache_saved)} "
        f"({total.response_cache_hits:,} answers from the cache)"
    )
    line(
        f"Previous month ({trend.previous_month}): {usd(trend.previous_cost)}; "
        f"change {trend.change_display} ({trend.change_pct_display})"
    )
    if total.unpriced_requests:
        line(f"{total.unpriced_requests:,} requests had no price and cost nothing here.")
    for title, lines in (
        ("By application", report.by_application),
        ("By key", report.by_key),
        ("By model", report.by_model),
    ):
        pdf.ln(4)
        line(title, size=12, style="B", height=8)
        _table(pdf, lines)
    return bytes(pdf.output())


def _table(pdf: FPDF, lines: tuple[Line, ...]) -> None:
    pdf.set_font("Helvetica", "", 9)
    if not lines:
        pdf.cell(0, 6, "No usage.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    heading = (
        "Name",
        "Requests",
        "Input tokens",
        "Output tokens",
        "Saved by prompt caching",
        "Response cache hits",
        "Saved by the response cache",
        "Cost",
    )
    with pdf.table(
        col_widths=(44, 18, 22, 22, 21, 19, 21, 23),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        line_height=5.5,
    ) as table:
        header = table.row()
        for text in heading:
            header.cell(text)
        for item in lines:
            row = table.row()
            for text in (
                _text(item.label),
                f"{item.requests:,}",
                f"{item.input_tokens:,}",
                f"{item.output_tokens:,}",
                usd(item.cache_savings),
                f"{item.response_cache_hits:,}",
                usd(item.response_cache_saved),
                usd(item.cost),
            ):
                row.cell(text)
