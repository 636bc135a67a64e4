"""chamados-agent: register this machine, then send heartbeats (metrics + inventory hash, the
full inventory when it changed, the server asked, or a day passed) over AMQP or HTTP,
spooling them on disk while the server cannot be reached.

    chamados-agent register --gateway URL --code CODE --email E --name N [--amqp URI]
    chamados-agent run [--interval 300] [--amqp URI | --http]
    chamados-agent heartbeat [--amqp URI | --http] [--full]
    chamados-agent status [--json]
    (every command takes --state-dir DIR)

Exit codes: 0 ok, 1 failure, 2 bad arguments, 3 not registered, 4 credentials rejected
(wrong provisioning code, revoked or expired token: register again), 5 not delivered
(the heartbeat waits in the spool).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from marshmallow import ValidationError

from chamados_agent import collect, service_install
from chamados_agent.errors import (OK, AgentError, CredentialsRejected, NotRegistered, Unavailable,
                          UsageError)
from chamados_agent.spool import Spool
from chamados_agent.state import (State, StateStore, default_state_dir, full_inventory_due, jittered,
                         next_sent_at, parse_time, utcnow)
from chamados_agent.transport import (REPLY_TIMEOUT, AmqpTransport, FlushResult, HttpTransport,
                             NoHardwareIdentifier, amqp_uri_problem, flush, mask, register)
from chamados_protocol import heartbeat as contract
from chamados_protocol.inventory import inventory_hash

log = logging.getLogger("chamados-agent")
UNANSWERED_BEFORE_HTTP_CHECK = 3
MIN_INTERVAL = 60.0  # seconds; shorter only with --debug-interval
# CLI flag for each registration field, so a validation error names what the user typed
REGISTRATION_FLAGS = {"provisioning_code": "--code", "collaborator": "--email/--name",
                      "access_role": "--access-role"}
COLLABORATOR_FLAGS = {"email": "--email", "name": "--name"}


# --- argument types: each says what is wrong in a sentence -------------------------------

def gateway_url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError("must be an http:// or https:// URL with a host, "
                                         "e.g. https://chamados.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise argparse.ArgumentTypeError("must be the gateway's base URL, without query, "
                                         "fragment or credentials")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def amqp_uri(value: str) -> str:
    value = value.strip()
    problem = amqp_uri_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def interval_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 1 <= seconds <= 86400:
        raise argparse.ArgumentTypeError("must be between 1 and 86400 seconds")
    return seconds


def reply_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 60:
        raise argparse.ArgumentTypeError("must be between 0 and 60 seconds")
    return seconds


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a --state-dir given before the command is not overwritten by the default
    common.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                        help=f"where the registration and spool live (default: {default_state_dir()})")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what the agent does, including the AMQP client's messages")
    parser = argparse.ArgumentParser(prog="chamados-agent", parents=[common],
                                     description="Chamados desktop agent: registration, inventory, heartbeats.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reg = commands.add_parser("register", parents=[common], help="enrol this machine with a provisioning code")
    reg.add_argument("--gateway", required=True, type=gateway_url, help="the gateway's base URL")
    reg.add_argument("--code", required=True, help="the company's provisioning code")
    reg.add_argument("--email", required=True, help="the e-mail of the person using this machine")
    reg.add_argument("--name", required=True, help="that person's name")
    reg.add_argument("--access-role", choices=contract.PERSONAS, default="collaborator",
                     help="what that person is on this machine (default: collaborator)")
    reg.add_argument("--amqp", type=amqp_uri, help="the broker's URI for heartbeats (stored); "
                     "without it heartbeats go over HTTP")
    reg.set_defaults(handler=cmd_register)

    for name, helptext in (("run", "send heartbeats every --interval seconds until stopped"),
                           ("heartbeat", "send one heartbeat now (and the spool before it), then exit")):
        sub = commands.add_parser(name, parents=[common], help=helptext)
        transport = sub.add_mutually_exclusive_group()
        transport.add_argument("--amqp", type=amqp_uri, help="use this broker instead of the stored one")
        transport.add_argument("--http", action="store_true", help="use the gateway's heartbeat route, not AMQP")
        sub.add_argument("--reply-timeout", type=reply_seconds, default=REPLY_TIMEOUT,
                         help=f"seconds to wait for the server's answer over AMQP (default {REPLY_TIMEOUT:g})")
        if name == "run":
            sub.add_argument("--interval", type=interval_seconds, default=300.0,
                             help=f"seconds between heartbeats, jittered ±10%% (default 300; at least "
                                  f"{MIN_INTERVAL:g} unless --debug-interval)")
            sub.add_argument("--debug-interval", action="store_true",
                             help="allow an interval under a minute (testing only: a fleet at that pace "
                                  "loads the server for nothing)")
            sub.add_argument("--count", type=positive_int, help="stop after this many heartbeats")
            sub.set_defaults(handler=cmd_run)
        else:
            sub.add_argument("--full", action="store_true", help="send the full inventory even if unchanged")
            sub.set_defaults(handler=cmd_heartbeat)

    status = commands.add_parser("status", parents=[common],
                                 help="registration, last successful heartbeat, spool depth")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)

    install = commands.add_parser("install-service", parents=[common],
                                  help="run the agent as a systemd service (Linux, as root; register first "
                                       f"with --state-dir {service_install.STATE_DIR})")
    install.add_argument("--user", default=service_install.SERVICE_USER,
                         help=f"the unprivileged user it runs as, made if missing (default {service_install.SERVICE_USER})")
    install.add_argument("--interval", type=interval_seconds, default=300.0,
                         help=f"seconds between heartbeats (default 300; at least {MIN_INTERVAL:g})")
    transport = install.add_mutually_exclusive_group()
    transport.add_argument("--amqp", type=amqp_uri, help="the broker URI to use instead of the registered one")
    transport.add_argument("--http", action="store_true", help="heartbeats over the gateway's route")
    install.add_argument("--no-start", action="store_true", help="enable nothing, start nothing: only install")
    install.add_argument("--root", default="/", help="write the unit under this directory and print the "
                         "commands instead of running them (nothing on this system is changed)")
    install.set_defaults(handler=cmd_install_service)
    remove = commands.add_parser("uninstall-service", parents=[common],
                                 help="stop and remove the systemd service (the registration stays unless --purge)")
    remove.add_argument("--user", default=service_install.SERVICE_USER)
    remove.add_argument("--purge", action="store_true",
                        help=f"also delete {service_install.STATE_DIR} (token, spool) and the user")
    remove.add_argument("--root", default="/", help="as for install-service")
    remove.set_defaults(handler=service_install.uninstall)
    return parser


# --- register ------------------------------------------------------------------------

def registration_problems(messages: dict) -> str:
    """marshmallow's nested messages as `--flag: problem` for what the user typed, and as a
    plain field path for what the agent collected."""
    problems = []
    for field_name, issue in sorted(messages.items()):
        if field_name == "collaborator" and isinstance(issue, dict):
            problems += [f"{COLLABORATOR_FLAGS.get(k, k)}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in sorted(issue.items())]
        else:
            text = " ".join(map(str, issue)) if isinstance(issue, list) else orjson.dumps(issue).decode()
            problems.append(f"{REGISTRATION_FLAGS.get(field_name, 'collected ' + field_name)}: {text}")
    return "; ".join(problems)


def cmd_register(args) -> int:
    store = StateStore(args.state_dir)
    identity = collect.identity()
    payload = {"provisioning_code": args.code.strip(), "hostname": identity["hostname"],
               "os": identity["os"], "mac_addresses": identity["mac_addresses"],
               "serial_numbers": identity["serial_numbers"],
               "collaborator": {"email": args.email.strip(), "name": args.name.strip()},
               "access_role": args.access_role}
    try:
        contract.Registration().load(payload)
    except ValidationError as exc:
        raise UsageError(f"cannot register: {registration_problems(exc.messages)}") from None
    if urlsplit(args.gateway).scheme == "http" and urlsplit(args.gateway).hostname not in ("127.0.0.1", "localhost", "::1"):
        print("warning: the gateway URL is not https; the machine token travels in clear", file=sys.stderr)

    with store.lock():
        try:
            previous = store.load()
        except AgentError as exc:  # registering again is the cure for a damaged state file
            print(f"warning: {exc.message}; replacing it", file=sys.stderr)
            previous = None
        try:
            enrolment = register(args.gateway, payload)
        except NoHardwareIdentifier:
            fallback = collect.installation_id()
            if fallback is None:
                raise AgentError("the server needs a physical MAC address or a hardware serial number, "
                                 "and none could be read on this machine (the firmware serial is "
                                 "readable by root/administrator only on many systems)") from None
            log.info("no hardware identifier accepted; registering with the OS installation id")
            payload["serial_numbers"] = payload["serial_numbers"][:31] + [fallback]
            try:
                enrolment = register(args.gateway, payload)
            except NoHardwareIdentifier:
                raise AgentError("the server accepted none of this machine's identifiers "
                                 "(MAC addresses, serial numbers)") from None
        now = utcnow().isoformat()
        state = State(gateway=args.gateway, machine_id=enrolment["machine_id"], token=enrolment["token"],
                      token_expires_at=enrolment["expires_at"], registered_at=now,
                      # what the user gave, else the broker the server names for agents
                      amqp_uri=args.amqp or enrolment["amqp_uri"] or (previous.amqp_uri if previous else None),
                      hostname=payload["hostname"], need_inventory=True)
        if enrolment["reused"] and enrolment["inventory_hash"]:
            # the server kept this machine's inventory: the first heartbeat sends only the hash
            # if it is still the same (full_inventory_due compares it with the current one)
            state.inventory_hash, state.need_inventory, state.last_full_at = enrolment["inventory_hash"], False, now
        discarded = 0
        if previous is not None:
            state.last_sent_at = previous.last_sent_at  # sent_at stays monotonic across re-registration
            if previous.machine_id == state.machine_id:
                state.last_success_at, state.last_success_via = previous.last_success_at, previous.last_success_via
            elif store.spool_path.exists():
                # heartbeats of another machine record must not be sent with this one's token
                with Spool(store.spool_path) as spool:
                    discarded = spool.discard_all()
        store.save(state)
    print(f"registered this machine as {state.machine_id}"
          + (" (the server recognised it: same record as before)" if enrolment["reused"] else "")
          + f"; token stored in {store.path} (owner-only), valid until {state.token_expires_at}")
    if discarded:
        print(f"discarded {discarded} spooled heartbeat(s) of the previous machine record")
    if state.amqp_uri is None:
        print("no --amqp given: heartbeats will go over HTTP to the gateway")
    print("next: chamados-agent run" + (f" --state-dir {args.state_dir}" if args.state_dir != default_state_dir() else ""))
    return OK


# --- heartbeats ----------------------------------------------------------------------

def choose_transport(args, state: State):
    """(name, factory, is_check). AMQP by default; HTTP when asked, when no broker is known,
    or to check the token after the server left several confirmed AMQP heartbeats unanswered
    (it dead-letters a revoked token's heartbeats without a reply; the HTTP route says 401)."""
    uri = getattr(args, "amqp", None) or state.amqp_uri
    if args.http or uri is None:
        return "http", lambda: HttpTransport(state.gateway), False
    if state.unanswered >= UNANSWERED_BEFORE_HTTP_CHECK:
        log.warning("the server did not answer the last %d heartbeats over AMQP; sending this one "
                    "over HTTP to check the token", state.unanswered)
        return "http", lambda: HttpTransport(state.gateway), True
    return "amqp", lambda: AmqpTransport(uri, reply_timeout=args.reply_timeout), False


def build_heartbeat(state: State, force_full: bool = False) -> tuple[dict, str, str | None]:
    """(body, inventory hash, why the full inventory is included or None)."""
    now = utcnow()
    document = collect.inventory(now)
    current_hash = inventory_hash(document)
    reason = "requested with --full" if force_full else full_inventory_due(state, current_hash, now)
    body = {"sent_at": next_sent_at(state.last_sent_at, now).isoformat(),
            "metrics": collect.metrics([part["mount"] for part in document.get("partitions", [])]),
            "inventory_hash": current_hash}
    if reason:
        body["inventory"] = document
    try:  # never spool what the server would dead-letter: check against the shared contract
        contract.Heartbeat().load(body)
    except ValidationError as exc:
        raise AgentError(f"the heartbeat built on this machine does not fit the contract: {exc.messages}") from None
    return body, current_hash, reason


def send_heartbeat(args, store: StateStore, force_full: bool = False) -> dict:
    """One cycle: build, spool, replay the spool (ending with this heartbeat), record the
    outcome. Returns a summary; raises Unavailable (spooled) or CredentialsRejected."""
    store.require()  # before the lock, which would create the directory of an unregistered agent
    with store.lock():
        state = store.require()  # again: another process may have changed it meanwhile
        body, current_hash, reason = build_heartbeat(state, force_full)
        message_id = str(uuid.uuid4())
        via, factory, checking = choose_transport(args, state)
        with Spool(store.spool_path) as spool:
            dropped_now = spool.push(message_id, body["sent_at"], orjson.dumps(body))
            # from here the spool owns the heartbeat: record it as handed off before sending,
            # so a crash cannot make the next run send a second full inventory or an older sent_at
            state.last_sent_at = body["sent_at"]
            if reason:
                state.inventory_hash, state.last_full_at, state.need_inventory = (
                    current_hash, utcnow().isoformat(), False)
            store.save(state)
            try:
                with factory() as transport:
                    result = flush(spool, transport, state.token, message_id)
            except Unavailable as exc:  # could not even connect
                result = FlushResult(error=exc)
            except CredentialsRejected as exc:
                state.token_rejected_at, state.token_rejected_reason = utcnow().isoformat(), exc.message
                state.last_error, state.last_error_at = exc.message, state.token_rejected_at
                store.save(state)
                raise
            depth, dropped = spool.depth(), spool.dropped
        now = utcnow().isoformat()
        if result.delivered:
            state.last_success_at, state.last_success_via = now, via
            state.token_rejected_at = state.token_rejected_reason = None
        if result.live_delivered:
            if result.answer is not None:
                state.need_inventory = result.answer["need_inventory"]
                state.usb_policy_pending = result.answer["usb_policy"]
                state.unanswered = 0
            elif via == "amqp":
                state.unanswered += 1
        if result.error is not None:
            state.last_error, state.last_error_at = result.error.message, now
            if checking:  # the gateway is down, not necessarily the token: back to AMQP for a while
                state.unanswered = 0
        elif result.live_delivered:
            state.last_error = state.last_error_at = None
        store.save(state)
    summary = {"message_id": message_id, "via": via, "full_inventory": reason, "inventory_hash": current_hash,
               "delivered": result.delivered, "replayed": max(result.delivered - result.live_delivered, 0),
               "rejected": result.rejected, "answer": result.answer, "spool_depth": depth,
               "dropped_now": dropped_now, "dropped_total": dropped}
    if result.live_rejected:
        raise AgentError(f"the server rejected this heartbeat as malformed ({result.live_rejected}); "
                         "the agent and the server may disagree on the heartbeat contract (versions?)")
    if result.error is not None:
        raise Unavailable(f"{result.error.message}; heartbeat spooled — {depth} waiting"
                          + (f", {dropped} dropped so far (oldest first, spool caps)" if dropped else ""))
    return summary


def describe_summary(summary: dict) -> str:
    parts = [f"heartbeat sent over {summary['via']}"]
    parts.append(f"with the full inventory ({summary['full_inventory']})" if summary["full_inventory"]
                 else "with the inventory hash")
    if summary["replayed"]:
        parts.append(f"after {summary['replayed']} spooled heartbeat(s)")
    answer = summary["answer"]
    if answer is None:
        parts.append("— taken, but the server's answer did not arrive in time" if summary["via"] == "amqp"
                     else "— taken, but the gateway's answer was not usable")
    elif answer["need_inventory"]:
        parts.append("— the server asked for the full inventory; the next heartbeat carries it")
    else:
        parts.append("— the server has this inventory")
    if answer and answer.get("usb_policy"):
        parts.append(f"(USB policy {answer['usb_policy']} waiting; this agent does not apply USB policies)")
    if summary["rejected"]:
        parts.append(f"({summary['rejected']} malformed spooled heartbeat(s) rejected by the server, dropped)")
    return " ".join(parts)


def cmd_heartbeat(args) -> int:
    summary = send_heartbeat(args, StateStore(args.state_dir), force_full=args.full)
    print(describe_summary(summary))
    return OK


def next_wait(interval: float, summary: dict | None) -> float:
    answer = (summary or {}).get("answer")
    if answer and answer["need_inventory"] and not summary["full_inventory"]:
        # the server lacks our inventory: send it soon, not in five minutes; jittered so a
        # server restored from a backup is not hit by every agent in the same second
        return jittered(min(interval, 10.0))
    return jittered(interval)


def cmd_run(args) -> int:
    if args.interval < MIN_INTERVAL and not args.debug_interval:
        raise UsageError(f"--interval {args.interval:g} is under {MIN_INTERVAL:g} seconds: give "
                         f"--debug-interval to allow it (testing only)")
    store = StateStore(args.state_dir)
    store.require()  # fail now, not after the first interval
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("stopping (signal %d)", signum)
        stop.set()

    previous = {}
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), on_signal)
    log.info("sending a heartbeat every %gs (±10%%) from %s", args.interval, store.directory)
    sent = 0
    try:
        while not stop.is_set():
            summary = None
            try:
                summary = send_heartbeat(args, store)
                log.info(describe_summary(summary))
            except Unavailable as exc:  # spooled; the next cycle replays it
                log.warning("%s", exc.message)
            sent += 1
            if args.count and sent >= args.count:
                break
            stop.wait(next_wait(args.interval, summary))
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
    return OK


# --- as a service ---------------------------------------------------------------------

def cmd_install_service(args) -> int:
    """The service's state is always STATE_DIR (under --root for a dry run): register there
    first, as root (`register --state-dir /var/lib/chamados-agent`)."""
    if args.interval < MIN_INTERVAL:
        raise UsageError(f"--interval {args.interval:g} is under {MIN_INTERVAL:g} seconds: a service runs for real")
    state_dir = Path(args.root) / service_install.STATE_DIR.relative_to("/")
    return service_install.install(args, state_dir / "state.json")


# --- status --------------------------------------------------------------------------

def cmd_status(args) -> int:
    store = StateStore(args.state_dir)
    state = store.load()
    spool = {"depth": 0, "bytes": 0, "oldest_sent_at": None, "dropped": 0, "rejected": 0}
    if store.spool_path.exists():
        with Spool(store.spool_path) as opened:
            spool = {"depth": opened.depth(), "bytes": opened.size_bytes(),
                     "oldest_sent_at": opened.oldest_sent_at(), "dropped": opened.dropped,
                     "rejected": opened.counter("rejected")}
    expires = parse_time(state.token_expires_at) if state else None
    expired = expires is not None and expires <= utcnow()
    report = {"state_dir": str(store.directory), "registered": state is not None, "spool": spool}
    if state is not None:
        public = {key: value for key, value in asdict(state).items() if key != "token"}
        public["amqp_uri"] = mask(state.amqp_uri) if state.amqp_uri else None
        report.update(public)
        report["token_expired"] = expired
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_status(report, state, expired))
    if state is None:
        return NotRegistered.exit_code
    if state.token_rejected_at or expired:
        return CredentialsRejected.exit_code
    return OK


def render_status(report: dict, state: State | None, expired: bool) -> str:
    spool = report["spool"]
    depth_line = f"spool: {spool['depth']} heartbeat(s) waiting"
    if spool["depth"]:
        depth_line += f" ({spool['bytes']} bytes, oldest {spool['oldest_sent_at']})"
    if spool["dropped"] or spool["rejected"]:
        depth_line += f"; {spool['dropped']} dropped by the caps, {spool['rejected']} rejected by the server"
    if state is None:
        return f"not registered (state directory {report['state_dir']})\n{depth_line}"
    lines = [f"registered: machine {state.machine_id} ({state.hostname}) since {state.registered_at}",
             f"gateway: {state.gateway}",
             f"broker: {report['amqp_uri'] or 'none (heartbeats over HTTP)'}"]
    if state.token_rejected_at:
        lines.append(f"token: REJECTED at {state.token_rejected_at} — register again "
                     f"(`chamados-agent register ...`): {state.token_rejected_reason}")
    elif expired:
        lines.append(f"token: EXPIRED at {state.token_expires_at} — register again")
    else:
        lines.append(f"token: valid until {state.token_expires_at}")
    lines.append(f"last successful heartbeat: {state.last_success_at} over {state.last_success_via}"
                 if state.last_success_at else "last successful heartbeat: never")
    lines.append(depth_line)
    lines.append(f"inventory: last full {state.last_full_at or 'never'}, hash {(state.inventory_hash or '-')[:12]}"
                 + (", the server asked for it" if state.need_inventory else ""))
    if state.unanswered:
        lines.append(f"the server did not answer the last {state.unanswered} AMQP heartbeat(s)")
    if state.usb_policy_pending:
        lines.append(f"USB policy waiting: {state.usb_policy_pending} (not applied by this agent version)")
    if state.last_error:
        lines.append(f"last error ({state.last_error_at}): {state.last_error}")
    lines.append(f"state: {report['state_dir']}")
    return "\n".join(lines)


# --- entry point ---------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.state_dir = getattr(args, "state_dir", None) or default_state_dir()
    verbose = getattr(args, "verbose", False)
    # a handler of our own (not the root's): messages go to this stderr even when embedded
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s" if args.command == "run"
                                           else "chamados-agent: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO if (verbose or args.command == "run") else logging.WARNING)
    # pika logs every failed connection attempt at ERROR; our own message says it once
    logging.getLogger("pika").setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        return args.handler(args)
    except AgentError as exc:
        print(f"chamados-agent: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chamados-agent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`chamados-agent status | head`): nothing left to say; stdout
        # is pointed at /dev/null so that flushing it at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


if __name__ == "__main__":
    sys.exit(main())
