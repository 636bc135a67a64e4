"""How values read on the page: dates in the tenant's time zone, durations, sizes. Pure
functions, used by the templates (TEMPLATE_HELPERS) and the views."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("America/Sao_Paulo")  # the tenants' time (ENGINEERING.md conventions)


def parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def when(value, with_seconds: bool = False) -> str:
    """'30/11/2026 14:05' in São Paulo time; '—' when there is none."""
    moment = parse_time(value)
    if moment is None:
        return "—"
    shape = "%d/%m/%Y %H:%M:%S" if with_seconds else "%d/%m/%Y %H:%M"
    try:
        return moment.astimezone(LOCAL_ZONE).strftime(shape)
    except OverflowError:  # a stored date at the very edge of the calendar (a broken clock)
        return moment.astimezone(timezone.utc).strftime(shape) + " UTC"


def iso(value) -> str:
    moment = parse_time(value)
    return moment.isoformat() if moment else ""


def duration(seconds) -> str:
    """Worked time as people say it: '0 min', '45 min', '2 h 05 min', '3 d 4 h'."""
    seconds = int(seconds or 0)
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def size(count) -> str:
    """Bytes in the units people read (1 KB = 1024 B)."""
    value = float(count or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}".replace(".", ",")
        value /= 1024
    return f"{value:.1f} TB"


def join_problems(problems, label=str, say=str) -> str:
    """A field's validation problems as one line (marshmallow gives lists or nested dicts);
    `label` names a nested field, `say` words a problem, in the reader's language."""
    if isinstance(problems, dict):
        return "; ".join(f"{label(key)}: {join_problems(value, label, say)}"
                         for key, value in list(problems.items())[:4])
    if isinstance(problems, (list, tuple)):
        return "; ".join(join_problems(problem, label, say) for problem in problems[:4])
    return say(str(problems))


def person(value) -> str:
    """A person snapshot ({id, name, email}) as a name, or '—'."""
    if not value:
        return "—"
    return value.get("name") or value.get("email") or "—"


TEMPLATE_HELPERS = {"when": when, "iso": iso, "duration": duration, "size": size, "person": person}
