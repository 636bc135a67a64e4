"""python -m bench [--smoke] [--out DIR] [--reps N] [--set BENCH.KEY=VALUE ...] [BENCH ...]"""
from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import argparse  # noqa: E402
import importlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from common import bootstrap  # noqa: E402

bootstrap.install()  # as every process of the project (common/bootstrap.py)

from bench import BENCHES  # noqa: E402
from bench.core import RESULTS_DIR, code_fingerprint, commit_id, environment, log, write_result  # noqa: E402

MODULES = {"drain": "bench.drain", "http": "bench.gateway_http", "replicas": "bench.replicas",
           "memory": "bench.memory", "growth": "bench.growth", "console": "bench.console",
           "api": "bench.api", "software": "bench.software"}


def describe() -> str:
    lines = ["benches (full-size parameters; --smoke uses tiny ones):"]
    for name in BENCHES:
        module = importlib.import_module(MODULES[name])
        lines.append(f"  {name:<9}{module.SUMMARY}")
        lines.append(" " * 11 + ", ".join(f"{k}={v}" for k, v in module.FULL.items()))
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Heartbeat benchmarks. Each compares figures measured side by side in one run "
                    "(against a baseline measured in the same run), repeats 3 times and keeps the "
                    "median; each uses its own RabbitMQ vhost and PostgreSQL database (the broker on "
                    "127.0.0.1:5672 with its management API, PostgreSQL as tests/harness.py finds it: "
                    "`make bench` makes sure both run). Writes <out>/<bench>.json and <out>/<bench>.png.",
        epilog=describe())
    parser.add_argument("benches", nargs="*", metavar="BENCH", help=f"which to run (default: all of {', '.join(BENCHES)})")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one repetition, results in a temporary folder (seconds; "
                             "tests/bench runs this so the benches never rot)")
    parser.add_argument("--out", type=Path, help="results folder (default: bench/results, or a "
                                                   "temporary folder with --smoke)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --smoke)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="BENCH.KEY=VALUE",
                        help="override a parameter, e.g. --set drain.n=20000 (repeatable)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    parser.add_argument("--jobs", type=int, default=None,
                        help="run up to this many benches at once, each in its own process (default 1; "
                             "with --smoke, all at once: sizes are tiny and figures meaningless anyway; "
                             "never use it for a measurement)")
    args = parser.parse_args(argv)
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    return args


def parameters(name: str, module, smoke: bool, overrides: list[str]) -> dict:
    params = dict(module.SMOKE if smoke else module.FULL)
    for item in overrides:
        key, _, value = item.partition("=")
        bench, _, field = key.partition(".")
        if bench != name:
            continue
        if field not in params:
            raise SystemExit(f"--set {item}: {name} has no parameter {field!r} ({', '.join(params)})")
        kind = type(params[field])
        params[field] = kind(float(value)) if kind is int else kind(value)
    return params


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    # SIGTERM unwinds like Ctrl-C: every bench's processes, database and vhost are removed
    signal.signal(signal.SIGTERM, _interrupt)
    out = args.out or (Path(tempfile.mkdtemp(prefix="chamados-bench-")) if args.smoke else RESULTS_DIR)
    reps = args.reps or (1 if args.smoke else 3)
    commit = commit_id()
    names = args.benches or list(BENCHES)
    jobs = args.jobs or (len(names) if args.smoke else 1)
    if jobs > 1 and len(names) > 1:
        return run_in_parallel(names, jobs, out, argv if argv is not None else sys.argv[1:])
    errors = unmet = 0
    began = time.monotonic()
    for name in names:
        module = importlib.import_module(MODULES[name])
        params = parameters(name, module, args.smoke, args.overrides)
        log(name, f"start ({'smoke' if args.smoke else 'full'}, {reps} rep(s)): {params}")
        started = time.monotonic()
        commit, fingerprint = commit_id(), code_fingerprint()
        result = {"bench": name, "commit": commit, "params": dict(params, reps=reps, smoke=args.smoke)}
        with tempfile.TemporaryDirectory(prefix=f"chamados-bench-{name}-") as workdir:
            try:
                result.update(module.run(params, reps, Path(workdir)))
            except KeyboardInterrupt:
                log(name, "interrupted")
                raise
            except Exception as exc:
                errors += 1
                result["error"] = f"{exc.__class__.__name__}: {exc}"
                result["traceback"] = traceback.format_exc()
                result.setdefault("targets", [])
                log(name, f"ERROR {result['error']}")
        result["duration_seconds"] = round(time.monotonic() - started, 1)
        if code_fingerprint() != fingerprint:  # processes started after the edit ran the new code
            result["commit_at_end"] = commit_id()
            result["warning"] = (f"the checked-out code changed during this bench ({commit} -> "
                                 f"{result['commit_at_end']}): repetitions may have measured different code")
        result["environment"] = environment()
        path = write_result(out, result)
        for line in result["targets"]:
            flag = {True: "met", False: "NOT MET", None: "-"}[line["met"]]
            log(name, f"{line['name']:<34} {str(line['measured']):>12} {line['unit']:<14} goal {line['goal']:<10} {flag}")
            unmet += line["met"] is False
        if result.get("warning"):
            log(name, f"warning: {result['warning']}")
        if result.get("failure"):
            log(name, f"failure: {result['failure'][:500]}")
        log(name, f"wrote {path} ({result['duration_seconds']}s)")
    log("all", f"{len(names)} bench(es) in {time.monotonic() - began:.1f}s, results in {out}")
    return 2 if errors else (1 if unmet and args.strict else 0)


def run_in_parallel(names, jobs: int, out: Path, argv) -> int:
    """Each bench in a child `python -m bench NAME` (same options), `jobs` at a time."""
    import subprocess

    passed, skip = [], False
    for index, arg in enumerate(argv):  # the options, without bench names or --jobs/--out
        if skip:
            skip = False
            continue
        if arg in ("--jobs", "--out"):
            skip = True
            continue
        if arg.startswith(("--jobs=", "--out=")) or arg in BENCHES:
            continue
        passed.append(arg)
    began = time.monotonic()
    pending, running, codes = list(names), {}, {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                running[name] = subprocess.Popen([sys.executable, "-m", "bench", name, "--jobs", "1", "--out",
                                                  str(out), *passed], cwd=Path(__file__).resolve().parent.parent)
            for name, process in list(running.items()):
                if process.poll() is not None:
                    codes[name] = process.returncode
                    del running[name]
            time.sleep(0.2)
    finally:  # interrupted: each child cleans up its own processes, database and vhost
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    log("all", f"{len(names)} bench(es) in {time.monotonic() - began:.1f}s ({jobs} at a time), results in {out}: "
               + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return max(codes.values(), default=0)


if __name__ == "__main__":
    sys.exit(main())
