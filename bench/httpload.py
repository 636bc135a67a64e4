"""HTTP load at a fixed number of concurrent keep-alive connections (closed loop), for a
fixed time: requests per second of 2xx answers, latency percentiles, errors.

The generator is `wrk` (Debian package `wrk`, C, a few µs of CPU per request) with a Lua
script that builds each heartbeat; where wrk is absent and cannot be installed (not root,
or --smoke, which never installs anything) a multi-process Python client does the same
(`http.client`, one process per connection) at a much higher CPU cost per request, which it
takes from the measured services on a small machine. The result says which was used.
Both are closed-loop: latency excludes the time a request would have waited to be sent
(coordinated omission), so p99 is a lower bound under overload.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HEARTBEAT_PATH = "/api/machines/heartbeat"


def load_generator(params: dict) -> str | None:
    """The wrk binary a bench drives its load with, or None for the Python generator
    (`load_generator`: wrk | python | auto; `install_wrk`: may install Debian's package)."""
    wrk = None if params["load_generator"] == "python" else ensure_wrk(bool(params["install_wrk"]))
    if params["load_generator"] == "wrk" and not wrk:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return wrk


def ensure_wrk(allow_install: bool) -> str | None:
    """The wrk binary, installing Debian's package when allowed (root, apt-get)."""
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    installed = subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True,
                               timeout=300)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, timeout=300)
    return shutil.which("wrk")


class HeartbeatFeed:
    """Heartbeat bodies split around `sent_at`: connection c of C sends for the machines
    i ≡ c (mod C) in turn, machine i's k-th heartbeat at base + k seconds (+ i µs), so
    sent_at strictly increases per machine whatever the interleaving."""

    def __init__(self, tokens: list[str], head: str, tail: str, base: datetime):
        self.tokens, self.head, self.tail = tokens, head, tail
        self.base = int(base.timestamp())

    def body(self, machine: int, round_: int) -> bytes:
        moment = datetime.fromtimestamp(self.base + round_, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.head}{moment}.{machine:06d}+00:00{self.tail}".encode()


# --- wrk ------------------------------------------------------------------------------------

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def heartbeat_lua(feed: HeartbeatFeed, threads: int) -> str:
    tokens = ",\n".join(_lua_string(t) for t in feed.tokens)
    return f"""
local tokens = {{ {tokens} }}
local head, tail, base, threads = {_lua_string(feed.head)}, {_lua_string(feed.tail)}, {feed.base}, {threads}
local next_id = 0
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local counter = 0
request = function()
  local mine = math.floor((#tokens - id - 1) / threads) + 1
  local slot = counter % mine
  local round = math.floor(counter / mine)
  counter = counter + 1
  local machine = id + slot * threads
  local body = head .. os.date("!%Y-%m-%dT%H:%M:%S", base + round) .. string.format(".%06d+00:00", machine) .. tail
  return wrk.format("POST", "{HEARTBEAT_PATH}", {{["Authorization"] = "Bearer " .. tokens[machine + 1],
                    ["Content-Type"] = "application/json"}}, body)
end
""" + LUA_DONE


def run_wrk(wrk: str, url: str, *, connections: int, seconds: float, threads: int = 2,
            lua: str = LUA_DONE, headers: dict | None = None) -> dict:
    """`headers`: sent with every request (e.g. a Cookie), for a script that builds none."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    try:
        done = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                               "--timeout", "10s", *extra, "-s", script.name, url],
                              capture_output=True, text=True, timeout=seconds + 60)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    raw = json.loads(line[len("RESULT "):])
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = max(0, raw["requests"] - raw["status"] - errors)
    return {"tool": "wrk", "requests": raw["requests"], "ok": ok, "non_2xx_3xx": raw["status"],
            "socket_errors": errors, "seconds": round(seconds_run, 3),
            "req_per_s": ok / seconds_run if seconds_run else None,
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000}


# --- the Python fallback --------------------------------------------------------------------

class FixedRequest:
    """The same request every time (e.g. a POST with a JSON body), for `run_python(requester=…)`.
    A requester's `request(connection_index, connections, counter)` gives (method, path, body,
    headers) of that connection's `counter`-th request (picklable: it goes to each process)."""

    def __init__(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.method, self.path, self.body, self.headers = method, path, body, dict(headers or {})

    def request(self, connection_index: int, connections: int, counter: int):
        return self.method, self.path, self.body, self.headers


def _client(args) -> dict:
    host, port, path, seconds, connection_index, connections, feed, fixed_headers, requester = args
    conn = http.client.HTTPConnection(host, port, timeout=10)
    latencies, statuses, errors = [], {}, 0
    mine = list(range(connection_index, len(feed.tokens), connections)) if feed else []
    counter = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if requester is not None:
            method, path, body, headers = requester.request(connection_index, connections, counter)
        elif feed:
            machine = mine[counter % len(mine)]
            body = feed.body(machine, counter // len(mine))
            headers = {"Authorization": f"Bearer {feed.tokens[machine]}", "Content-Type": "application/json"}
            method = "POST"
        else:
            body, headers, method = None, dict(fixed_headers or {}), "GET"
        counter += 1
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.close()
    return {"latencies": latencies, "statuses": statuses, "errors": errors}


def _default_sigterm() -> None:
    """A client process ends quietly when the pool is done with it (it would inherit
    `python -m bench`'s SIGTERM handler, and print a KeyboardInterrupt traceback)."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_python(url: str, *, connections: int, seconds: float, feed: HeartbeatFeed | None,
               headers: dict | None = None, requester=None) -> dict:
    """`headers`: sent with every GET (when there is no feed nor requester); `requester`: builds
    each request instead (FixedRequest, or any object with its `request` method)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    jobs = [(parts.hostname, parts.port, path, seconds, i, connections, feed, headers, requester)
            for i in range(connections)]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(connections, initializer=_default_sigterm) as pool:
        results = pool.map(_client, jobs)
    elapsed = time.monotonic() - started
    latencies = sorted(l for r in results for l in r["latencies"])
    statuses: dict = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    ok = sum(count for status, count in statuses.items() if 200 <= status < 400)

    def percentile(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None
    run_seconds = min(seconds, elapsed)
    return {"tool": "python", "requests": len(latencies), "ok": ok,
            "non_2xx_3xx": len(latencies) - ok, "socket_errors": sum(r["errors"] for r in results),
            "seconds": round(run_seconds, 3), "req_per_s": ok / run_seconds if run_seconds else None,
            "p50_ms": percentile(0.5), "p90_ms": percentile(0.9), "p99_ms": percentile(0.99),
            "max_ms": latencies[-1] * 1000 if latencies else None,
            "statuses": {str(k): v for k, v in statuses.items()}}
