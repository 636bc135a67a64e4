"""Charts drawn on the server: this module does the arithmetic (pure, unit-tested in
tests/unit/test_console_charts.py) and the template writes the SVG, so a page needs no
script and no inline style (the CSP forbids both)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

WIDTH, HEIGHT = 600, 200  # drawn at half size on a phone: labels stay readable
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 26  # room for the axes' labels
PERCENT_TICKS = (0, 25, 50, 75, 100)
MAX_HOUR_LABELS = 8
HOUR_STEPS = (1, 2, 3, 6, 12, 24)  # hours between two labels of the time axis


@dataclass(frozen=True)
class Line:
    name: str
    segments: tuple[str, ...]  # SVG `points` of each run of consecutive hours
    dots: tuple[tuple[float, float], ...]  # hours with no neighbour: a line needs two points


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, str], ...]  # (y, "50%")
    x_ticks: tuple[tuple[float, str], ...]  # (x, "14h" or "30/11")


def hourly_line_chart(series: dict[str, dict[datetime, float | None]], since: datetime, hours: int,
                      zone: tzinfo) -> LineChart:
    """Percentages (0–100) per hour, `hours` hours from `since` (aware, on the hour), as
    lines. Each hour has a slot of the same width and its point in the slot's middle; an
    hour without a value breaks the line. The time axis is labelled in `zone`."""
    hours = max(hours, 1)
    slot = (WIDTH - LEFT - RIGHT) / hours
    plot_height = HEIGHT - TOP - BOTTOM

    def x_of(index: int) -> float:
        return round(LEFT + (index + 0.5) * slot, 1)

    def y_of(value: float) -> float:
        return round(TOP + (1 - min(max(value, 0.0), 100.0) / 100) * plot_height, 1)

    lines = []
    for name, values in series.items():
        runs, run = [], []
        for index in range(hours):
            value = values.get(since + timedelta(hours=index))
            if value is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((x_of(index), y_of(value)))
        if run:
            runs.append(run)
        lines.append(Line(name,
                          tuple(" ".join(f"{x:g},{y:g}" for x, y in run) for run in runs if len(run) > 1),
                          tuple(run[0] for run in runs if len(run) == 1)))

    step = next((step for step in HOUR_STEPS if hours / step <= MAX_HOUR_LABELS), HOUR_STEPS[-1])
    x_ticks = []
    for index in range(hours):
        local = (since + timedelta(hours=index)).astimezone(zone)
        if local.hour % step == 0:
            x_ticks.append((x_of(index), local.strftime("%d/%m" if step == 24 else "%Hh")))
    y_ticks = tuple((y_of(value), f"{value}%") for value in PERCENT_TICKS)
    return LineChart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM, tuple(lines),
                     y_ticks, tuple(x_ticks))
