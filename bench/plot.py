"""One PNG per bench: its curves (when it has some), its bar charts (`bars`: {title: {label:
value}}, when it has some) and every target as measured ÷ goal (for "lower is better" goals,
goal ÷ measured), so 1.0 is the goal and longer is better."""
from __future__ import annotations

from pathlib import Path


def headroom(line: dict) -> float | None:
    """≥ 1 when the target is met."""
    measured, goal = line.get("measured"), line.get("goal", "")
    if measured is None or not isinstance(goal, str) or " " not in goal:
        return None
    op, _, value = goal.partition(" ")
    try:
        value = float(value)
    except ValueError:
        return None
    if op in (">=", ">"):
        return measured / value if value else None
    if op in ("<", "<="):
        return value / measured if measured else float("inf")
    if op == "==":
        return 1.0 if measured == value else 0.0
    return None


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result.get("series") or {}
    bars = result.get("bars") or {}
    goals = [line for line in result.get("targets", []) if headroom(line) is not None]
    panels = (1 if series else 0) + len(bars) + 1
    columns = min(panels, 2)
    rows = (panels + columns - 1) // columns
    figure, grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    axes = list(grid.flat)
    for spare in axes[panels:]:
        spare.set_axis_off()
    axes = axes[:panels]
    title = f"{result['bench']} @ {result.get('commit', '?')}"
    if result.get("error") or result.get("failure"):
        title += "  (" + ("error" if result.get("error") else "failure") + ")"
    figure.suptitle(title)
    if series:
        ax = axes[0]
        for label, points in series.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, linestyle="--" if "raw" in label or "1 " in label else "-")
        x_label, y_label = result.get("series_axes", ["seconds", "count"])
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax, (bar_title, values) in zip(axes[(1 if series else 0):], bars.items()):
        labels, numbers = list(values), [value or 0 for value in values.values()]
        drawn = ax.barh(labels, numbers, color="tab:blue")
        for bar, value in zip(drawn, values.values()):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    " -" if value is None else f" {value:g}", va="center", fontsize=8)
        ax.set_title(bar_title, fontsize=9)
        positive = [number for number in numbers if number > 0]
        if positive and max(positive) > 30 * min(positive):  # a baseline far above the rest
            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 2, max(positive) * 4)
        else:
            ax.set_xlim(0, max(numbers + [1]) * 1.25)
        ax.grid(alpha=0.3, axis="x")
        ax.invert_yaxis()
    ax = axes[-1]
    if goals:
        names = [line["name"] for line in goals]
        values = [min(headroom(line), 10.0) for line in goals]
        colours = ["tab:green" if line["met"] else "tab:red" for line in goals]
        bars = ax.barh(names, values, color=colours)
        ax.axvline(1.0, color="black", linewidth=1)
        for bar, line in zip(bars, goals):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {line['measured']:g} {line['unit']} (goal {line['goal']})", va="center", fontsize=8)
        ax.set_xlabel("measured ÷ goal (lower-is-better goals inverted); 1 = goal")
        ax.set_xlim(0, max(2.0, max(values) * 1.9))
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, result.get("error") or result.get("failure") or "no targets measured",
                ha="center", va="center", wrap=True, fontsize=8)
        ax.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
