"""The HTML report: one self-contained page (inline CSS and SVG charts; nothing loaded at view time).

Rendered with Jinja2 (autoescaping on: every value from the FHIR server is text, never markup). The charts
are horizontal bar charts computed here: estimated amount per code, units per therapist, estimated
amount per payer, findings per code (coloured by severity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from integration import __version__
from integration.review.summary import CountRow, Row, Summary
from integration.review.text import FEE_NOTE, FEE_NOTE_PLACEHOLDER, money

BAR = "#2f6fab"
SEVERITY_COLOURS = {"high": "#c0392b", "moderate": "#d68910", "low": "#7f8c8d"}
MAX_BARS = 15
LABEL_CHARS = 32  # what fits the label column at 12 px


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    value_text: str
    width: float
    y: int
    color: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    bars: tuple[Bar, ...]
    width: int = 680
    label_width: int = 230
    bar_height: int = 18
    gap: int = 6
    top: int = 26

    @property
    def height(self) -> int:
        return self.top + len(self.bars) * (self.bar_height + self.gap) + 4


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float, str, str]],  # (label, value, value text, colour)
) -> Chart:
    """Bars scaled to the largest value; at most MAX_BARS (the rest are summed into 'other')."""
    items = list(items)
    if len(items) > MAX_BARS:
        rest = items[MAX_BARS - 1 :]
        total = sum(v for _, v, _, _ in rest)
        items = [*items[: MAX_BARS - 1], (f"other ({len(rest)})", total, f"{total:g}", "#9aa5b1")]
    base = Chart(chart_id, title, ())
    room = base.width - base.label_width - 90  # space for the value text
    top = max((v for _, v, _, _ in items), default=0) or 1
    bars = tuple(
        Bar(
            label=label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…",
            value=value,
            value_text=text,
            width=round(max(1.0, room * value / top), 1) if value > 0 else 0.0,
            y=base.top + i * (base.bar_height + base.gap),
            color=colour,
        )
        for i, (label, value, text, colour) in enumerate(items)
    )
    return Chart(chart_id, title, bars)


def _amount_items(rows: Sequence[Row]) -> list[tuple[str, float, str, str]]:
    return [(r.key, r.amount, money(r.amount), BAR) for r in rows if r.amount > 0]


def charts(s: Summary) -> dict[str, Chart]:
    units = sorted(s.by_therapist, key=lambda r: (-r.units, r.key))
    findings: Sequence[CountRow] = s.findings
    return {
        "code": bar_chart("chart-code", "Estimated amount by code", _amount_items(s.by_code)),
        "therapist": bar_chart(
            "chart-therapist", "Units by therapist", [(r.key, r.units, str(r.units), BAR) for r in units]
        ),
        "payer": bar_chart("chart-payer", "Estimated amount by payer", _amount_items(s.by_payer)),
        "findings": bar_chart(
            "chart-findings",
            "Findings by code",
            [(f.code, f.count, str(f.count), SEVERITY_COLOURS.get(f.severity, BAR)) for f in findings],
        ),
    }


_env = Environment(
    loader=PackageLoader("integration.review", "templates"),
    autoescape=select_autoescape(["html", "j2"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(s: Summary, *, server: str, generated: datetime | None = None) -> str:
    template = _env.get_template("report.html.j2")
    return template.render(
        s=s,
        charts=charts(s),
        money=money,
        server=server,
        version=__version__,
        generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        fee_note=FEE_NOTE_PLACEHOLDER if s.placeholder_fees else FEE_NOTE,
        unpriced=any(r.unpriced_lines for r in s.by_code),
    )
