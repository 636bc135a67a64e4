"""The device page's pure parts: the hourly chart's geometry (console/charts.py) and how an
inventory and its change records are laid out for reading (views/devices.py)."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.gateway.console import charts
from services.gateway.console.views.devices import (CHANGES_SHOWN, INVENTORY_CHARS_SHOWN, INVENTORY_VALUES_SHOWN,
                                                    VALUE_CHARS_SHOWN,
                                                    inventory_sections, percent, plain, readable_changes)

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
SINCE = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)  # 00:00 in São Paulo


def hour(index: int) -> datetime:
    return SINCE + timedelta(hours=index)


def points(segment: str) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in segment.split()]


def test_values_are_scaled_into_the_plot_one_slot_per_hour():
    chart = charts.hourly_line_chart({"cpu": {hour(0): 0.0, hour(1): 50.0, hour(2): 100.0}}, SINCE, 4, SAO_PAULO)
    (line,) = chart.lines
    assert line.name == "cpu" and line.dots == ()
    (segment,) = line.segments
    xs, ys = zip(*points(segment))
    slot = (chart.plot_right - chart.plot_left) / 4
    assert xs == tuple(round(chart.plot_left + (index + 0.5) * slot, 1) for index in range(3))
    assert ys == (chart.plot_bottom, (chart.plot_top + chart.plot_bottom) / 2, chart.plot_top)


def test_a_missing_hour_breaks_the_line_and_a_lone_hour_is_a_dot():
    values = {hour(0): 10.0, hour(1): 20.0, hour(3): 30.0, hour(5): 40.0, hour(6): None, hour(7): 50.0}
    (line,) = charts.hourly_line_chart({"memory": values}, SINCE, 8, SAO_PAULO).lines
    assert [len(points(segment)) for segment in line.segments] == [2]
    assert len(line.dots) == 3  # hours 3, 5 and 7 have no neighbour


def test_values_outside_0_to_100_stay_inside_the_plot_and_other_hours_are_ignored():
    chart = charts.hourly_line_chart({"cpu": {hour(0): -5.0, hour(1): 180.0, hour(-1): 50.0, hour(9): 50.0}},
                                     SINCE, 2, SAO_PAULO)
    (segment,) = chart.lines[0].segments
    assert [y for _, y in points(segment)] == [chart.plot_bottom, chart.plot_top]


def test_no_values_draw_nothing():
    chart = charts.hourly_line_chart({"cpu": {}, "memory": {}}, SINCE, 24, SAO_PAULO)
    assert all(line.segments == () and line.dots == () for line in chart.lines)


def test_the_time_axis_is_labelled_in_local_time_a_day_by_hours_a_week_by_dates():
    day = charts.hourly_line_chart({}, SINCE, 24, SAO_PAULO)
    assert [label for _, label in day.x_ticks] == ["00h", "03h", "06h", "09h", "12h", "15h", "18h", "21h"]
    week = charts.hourly_line_chart({}, SINCE, 168, SAO_PAULO)
    assert [label for _, label in week.x_ticks] == [f"{day:02d}/{month:02d}" for day, month in
                                                    ((30, 11), (1, 12), (2, 12), (3, 12), (4, 12), (5, 12), (6, 12))]
    assert [label for _, label in day.y_ticks] == ["0%", "25%", "50%", "75%", "100%"]


def test_percent_and_plain_values_read_as_people_write_them():
    assert (percent(41.0), percent(41.25), percent(None)) == ("41%", "41,2%", "—")
    assert plain(17_179_869_184, "memory_bytes") == "16,0 GB"
    assert plain(8, "cores") == "8"
    assert plain(True) == "Sim" and plain(None) == "—" and plain([]) == "—"
    assert plain(["10.0.0.1", "10.0.0.2"]) == "10.0.0.1, 10.0.0.2"
    assert plain({"vendor": "Dell", "size_bytes": 1024}) == "vendor: Dell; size_bytes: 1,0 KB"


def test_an_inventory_reads_as_sections_facts_and_tables():
    document = {
        "hostname": "recepcao-01",
        "os": {"name": "Windows 11 Pro", "build": "26100"},
        "hardware": {"cpu": {"model": "i7", "cores": 8}, "memory_bytes": 1024,
                     "modules": [{"slot": "A1", "size_bytes": 1024}]},
        "network": [{"name": "Ethernet", "ipv4": ["10.0.0.15"]}, {"name": "Wi-Fi", "mac": "3c:52"}],
        "custom": {"asset": "PAT-1"},
        "extras": {},
    }
    sections = {section.key: section for section in inventory_sections(document)}
    assert list(sections) == ["", "os", "hardware", "network", "custom"]
    assert sections[""].title == "Geral" and sections[""].facts == [("hostname", "recepcao-01"), ("extras", "—")]
    assert sections["os"].title == "Sistema operacional"
    assert sections["custom"].title == "custom"  # a part the catalogue does not know keeps its name
    hardware = sections["hardware"]
    assert hardware.facts == [("cpu › model", "i7"), ("cpu › cores", "8"), ("memory_bytes", "1,0 KB")]
    (modules,) = hardware.tables
    assert (modules.label, modules.columns, modules.rows) == ("modules", ["slot", "size_bytes"], [["A1", "1,0 KB"]])
    (interfaces,) = sections["network"].tables
    assert interfaces.label == ""  # the section's own table: its title says what it is
    assert interfaces.columns == ["name", "mac", "ipv4"]  # what names an item first
    assert interfaces.rows == [["Ethernet", "—", "10.0.0.15"], ["Wi-Fi", "3c:52", "—"]]
    assert all(section.short for section in sections.values())


def test_a_long_list_starts_folded():
    packages = [{"name": f"package-{index}", "version": "1.0"} for index in range(300)]
    (software,) = inventory_sections({"software": {"manager": "dpkg", "packages": packages}})
    assert software.facts == [("manager", "dpkg")]
    assert software.tables[0].total == 300 and not software.short


def rendered_values(sections) -> int:
    return sum(len(section.facts) + sum(len(row) for table in section.tables for row in table.rows)
               for section in sections)


@pytest.mark.parametrize("document", [
    {"registry": {f"key-{index}": index for index in range(45_000)}},  # one object, 45,000 keys
    {f"top-{index}": "x" for index in range(45_000)},  # 45,000 loose values
    {"software": [{f"column-{c}": c for c in range(50)} for _ in range(2_000)]},  # wide and long
    {"a": {f"k{i}": i for i in range(5_000)}, "b": [{"name": i} for i in range(5_000)], "c": {"x": 1}},
    {"notes": {f"n{i}": "long " * 70 for i in range(2_000)}},  # few values, many characters
])
def test_a_huge_inventory_renders_a_bounded_page_and_says_how_much_it_left_out(document):
    sections = inventory_sections(document)
    shown = rendered_values(sections)
    hidden = sum(section.hidden for section in sections)
    assert shown <= INVENTORY_VALUES_SHOWN + 50  # the budget, and one last row at most
    chars = sum(len(text) for section in sections for _, text in section.facts) + sum(
        len(cell) for section in sections for table in section.tables for row in table.rows for cell in row)
    assert chars <= INVENTORY_CHARS_SHOWN + 50 * VALUE_CHARS_SHOWN
    total = sum(1 if not isinstance(v, (dict, list)) else
                sum(len(item) for item in v) if isinstance(v, list) else len(v) for v in document.values())
    assert shown + hidden == total and hidden > 0
    assert all(len(table.columns) <= 24 for section in sections for table in section.tables)


def test_a_long_value_is_cut():
    (general,) = inventory_sections({"note": "x" * 100_000})
    [(_, text)] = general.facts
    assert len(text) == VALUE_CHARS_SHOWN and text.endswith("…")


def test_a_change_record_reads_as_path_old_new_added_removed():
    record = {"changed_at": "2026-11-30T12:00:00+00:00", "version": 4, "initial": False, "changes": {
        "changed": {"software/packages[name=7zip]/version": ["23.01", "24.08"]},
        "added": {"hardware/asset_tag": "PAT-1", "disks[name=sdb]/size_bytes": 2048},
        "removed": {"hardware/swap_bytes": 0}}}
    view = readable_changes(record)
    assert view["initial"] is False
    assert [(group["kind"], group["more"]) for group in view["kinds"]] == [("changed", 0), ("added", 0), ("removed", 0)]
    changed, added, removed = (group["lines"] for group in view["kinds"])
    assert changed == [{"path": "software/packages[name=7zip]/version", "old": "23.01", "new": "24.08"}]
    assert {"path": "disks[name=sdb]/size_bytes", "value": "2,0 KB"} in added
    assert removed == [{"path": "hardware/swap_bytes", "value": "0 B"}]


def test_a_first_inventory_and_a_huge_change_stay_short():
    empty = {"added": {}, "removed": {}, "changed": {}}
    assert readable_changes({"changed_at": "x", "version": 1, "initial": True, "changes": empty}) == \
        {"changed_at": "x", "version": 1, "initial": True, "kinds": []}
    many = {f"software/packages[name=p{index}]/version": "1" for index in range(CHANGES_SHOWN + 7)}
    (group,) = readable_changes({"changed_at": "x", "version": 2, "initial": False,
                                 "changes": {**empty, "added": many}})["kinds"]
    assert len(group["lines"]) == CHANGES_SHOWN and group["more"] == 7
