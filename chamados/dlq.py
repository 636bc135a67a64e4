"""`chamados dlq list|show|replay|purge`: the dead-letter queue for operators, as tables.

The work is common/deadletters.py's; this module only parses, prints and picks the exit
status: 0 done, 1 the broker is unreachable or something asked for was not done (an id not
found, a message that could not be replayed), 2 a selection that says nothing.
"""
from __future__ import annotations

import json
import sys

from common import deadletters

SELECTION_HELP = "IDs, or --queue/--reason to select by filter, or --all"


def add_parser(commands) -> None:
    dlq = commands.add_parser(
        "dlq", help="look into the dead-letter queue; replay or purge what is there",
        description="The dead-letter queue (chamados.dead-letter): list and show leave every "
                    "message in place; replay puts messages back on their original queue "
                    "(confirmed, then the parked copy is dropped); purge drops them for good. "
                    "Two kinds cannot be replayed and are refused by name: a heartbeat (its "
                    "machine token is kept only as a SHA-256, so it could not be authenticated "
                    "again: the agent sends its spool anew) and a message whose body was over "
                    "the 1 MiB parking bound (only its first MiB was kept). A parked copy keeps "
                    "its message_id and timestamp.")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = actions.add_parser("list", help="parked messages, oldest first")
    listing.add_argument("--queue", help="only those from this original queue")
    listing.add_argument("--reason", help="only those whose reason contains this text (any case)")
    listing.add_argument("--limit", type=int, default=deadletters.DEFAULT_LIST_LIMIT,
                         help="show at most N (default %(default)s)")
    show = actions.add_parser("show", help="one message: headers, properties, body")
    show.add_argument("id")
    for name, verb in (("replay", "put back on their original queue"), ("purge", "drop for good")):
        action = actions.add_parser(name, help=f"{verb}: {SELECTION_HELP}")
        action.add_argument("ids", nargs="*", metavar="ID")
        action.add_argument("--queue", help="every message from this original queue")
        action.add_argument("--reason", help="every message whose reason contains this text")
        action.add_argument("--all", action="store_true", dest="everything",
                            help="every message (needed to act without ids or a filter)")
    for action in actions.choices.values():
        action.add_argument("--scan-limit", type=int, default=deadletters.DEFAULT_SCAN_LIMIT,
                            help="read at most N messages of the queue (default %(default)s)")


def run(settings, args) -> int:
    try:
        if args.dlq_command == "list":
            return list_command(settings.amqp_uri, args)
        if args.dlq_command == "show":
            return show_command(settings.amqp_uri, args)
        return settle_command(settings.amqp_uri, args)
    except deadletters.BrokerUnavailable as exc:
        print(f"chamados: {exc} (AMQP_URI)", file=sys.stderr)
        return 1


def cut(text, width: int) -> str:
    text = "" if text is None else " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def table(rows: list[list[str]], headings: list[str]) -> str:
    widths = [max(len(heading), *(len(row[i]) for row in rows)) if rows else len(heading)
              for i, heading in enumerate(headings)]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()
             for row in [headings, *rows]]
    return "\n".join(lines)


def coverage(report) -> str:
    seen = "the whole queue" if report.complete else \
        f"{report.scanned} of {report.queue_depth} (--scan-limit): there may be more"
    return f"read {seen}"


def list_command(amqp_uri: str, args) -> int:
    listing = deadletters.list_letters(amqp_uri, queue=args.queue, reason=args.reason,
                                       limit=max(1, args.limit), scan_limit=args.scan_limit)
    rows = [[letter.id, cut(letter.queue, 64), str(letter.attempts if letter.attempts is not None else "-"),
             (letter.dead_lettered_at or "-")[:19].replace("T", " "), str(letter.body_bytes),
             cut(letter.reason, 70)]
            for letter in listing.items]
    if rows:
        print(table(rows, ["ID", "QUEUE", "ATTEMPTS", "PARKED AT (UTC)", "BYTES", "REASON"]))
    print(f"{len(rows)} shown, {listing.matched} matching, {listing.queue_depth} waiting; "
          f"{coverage(listing)}")
    return 0


def show_command(amqp_uri: str, args) -> int:
    letter = deadletters.get_letter(amqp_uri, args.id, scan_limit=args.scan_limit)
    if letter is None:
        print(f"chamados: no dead letter {args.id!r} (ids are 32 hex digits; see `chamados dlq list`)",
              file=sys.stderr)
        return 1
    detail = letter.detail()
    for key in ("id", "queue", "reason", "attempts", "dead_lettered_at", "tenant_id", "body_bytes"):
        print(f"{key}: {detail[key] if detail[key] is not None else '-'}")
    for section in ("headers", "properties"):
        print(f"{section}:")
        for key, value in sorted(detail[section].items()):
            print(f"  {key}: {value}")
    body = detail["body"]
    if detail["body_encoding"] == "json" and not detail["body_truncated"]:
        body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    cut_note = ", cut" if detail["body_truncated"] else ""
    print(f"body ({detail['body_encoding']}{cut_note}):")
    print(body)
    return 0


def settle_command(amqp_uri: str, args) -> int:
    try:
        selection = deadletters.Selection.of(args.ids, args.queue, args.reason, args.everything)
    except deadletters.BadSelection as exc:
        print(f"chamados dlq {args.dlq_command}: {exc} ({SELECTION_HELP})", file=sys.stderr)
        return 2
    act = deadletters.replay if args.dlq_command == "replay" else deadletters.purge
    outcome = act(amqp_uri, selection, scan_limit=args.scan_limit)
    for letter_id in outcome.done:
        print(f"{outcome.action} {letter_id}")
    for failure in outcome.failed:
        print(f"chamados: not replayed {failure['id']} ({failure['queue']}): {failure['error']}",
              file=sys.stderr)
    for letter_id in outcome.not_found:
        print(f"chamados: no dead letter {letter_id}", file=sys.stderr)
    print(f"{outcome.action} {len(outcome.done)}, failed {len(outcome.failed)}, "
          f"not found {len(outcome.not_found)}; {coverage(outcome)}")
    return 1 if outcome.failed or outcome.not_found else 0
