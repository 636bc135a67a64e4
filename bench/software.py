"""software: the fleet-wide software search (`GET /api/admin/software`) over `machines`
machines of one tenant with `packages` packages each, in the software index as the
heartbeat consumer keeps it (`software_versions`, `machine_software`).

The index is written straight into the bench's database: the fleet's image (bench/fleet.py's
packages) on every machine, plus `firefox` at one of `target_versions` versions (machine n
has version n mod target_versions, so each version is on an equal share of the fleet).
The tables are then vacuumed as the storage-maintenance job does every 15 minutes (the GIN
index's pending list merged). Then each search runs `requests` times, one after the other, through the gateway as an
admin (authentication included), and its client-side p50/p99 is measured; repeated `reps`
times, the median kept. Searches: versions older than the middle one (half the fleet, a page
of 50 and the counts), one exact version (a share), the same in one company, and a package
every machine has (the whole fleet).

Beside it, one machine's own inventory routes (issue 15 item 4: under 50 ms): a simulated
machine of the same tenant (bench/fleet.py: ~92 KB of inventory) sends `inventory_changes`
changed inventories spread over the last 89 days through the real heartbeat pipeline, then
`GET /api/admin/machines/{id}/inventory` (the current document), `.../inventory/changes`
(the newest 50) and its second page are timed like the searches.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import requests

from bench.console import ADMIN_EMAIL, ADMIN_PASSWORD
from bench.core import BenchFailure, Stack, log, median, target
from bench.fleet import applied_count, base_packages, heartbeats, publish, seed_machines
from services.devices.software import version_key

NAME = "software"
SUMMARY = ("GET /api/admin/software over N machines x 600 packages (index kept on change), and one machine's "
           "inventory and its changes: p50/p99 per request")
FULL = {"machines": 10_000, "packages": 600, "companies": 40, "target_versions": 8, "requests": 100,
        "inventory_changes": 300}
SMOKE = {"machines": 120, "packages": 40, "companies": 3, "target_versions": 3, "requests": 5,
         "inventory_changes": 4}
GOAL_MS = 100
MACHINE_GOAL_MS = 50  # one machine's inventory or its changes
TARGET = "firefox"
SERVICES = ("accounts", "devices", "gateway")


def seed(stack: Stack, tenant_id: str, p: dict) -> dict:
    now = datetime.now(timezone.utc)
    companies = [uuid.uuid4() for _ in range(p["companies"])]
    machines = [(uuid.uuid4(), companies[n % len(companies)], f"ws-{n:05d}") for n in range(p["machines"])]
    image = base_packages(p["packages"] - 1)
    targets = [f"{100 + n}.0.{n}" for n in range(p["target_versions"])]
    with psycopg.connect(stack.dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY devices.machines (id, tenant_id, company_id, hostname, os_name, os_version, os_build, "
                      "os_arch, persona, machine_user_id, created_at, updated_at) FROM STDIN") as copy:
            for machine_id, company_id, hostname in machines:
                copy.write_row((machine_id, tenant_id, company_id, hostname, "Ubuntu", "22.04", "", "x86_64",
                                "collaborator", uuid.uuid4(), now, now))
        pairs = sorted({(pkg["name"], pkg["version"]) for pkg in image} | {(TARGET, v) for v in targets})
        cur.executemany("INSERT INTO devices.software_versions (name, version, version_key) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING", [(name, version, version_key(version)) for name, version in pairs])
        ids = {(name, version): id_ for id_, name, version in
               cur.execute("SELECT id, name, version FROM devices.software_versions").fetchall()}
        common = sorted(ids[(pkg["name"], pkg["version"])] for pkg in image)
        with cur.copy("COPY devices.machine_software (machine_id, version_ids) FROM STDIN") as copy:
            for n, (machine_id, _, _) in enumerate(machines):
                copy.write_row((machine_id, common + [ids[(TARGET, targets[n % len(targets)])]]))
    # as the storage-maintenance job leaves them (every 15 minutes in production): the GIN
    # index's pending entries merged, statistics fresh
    with psycopg.connect(stack.dsn, autocommit=True) as conn, conn.cursor() as cur:
        for table in ("machines", "software_versions", "machine_software"):
            cur.execute(f"VACUUM (ANALYZE) devices.{table}")
        size = cur.execute("SELECT pg_total_relation_size('devices.machine_software') "
                           "+ pg_total_relation_size('devices.software_versions')").fetchone()[0]
    return {"companies": companies, "targets": targets, "everywhere": image[0]["name"], "index_bytes": size}


def machine_with_history(stack, tenant_id: str, changes: int) -> str:
    """A machine of the tenant whose inventory changed `changes` times over the last 89 days,
    applied by the devices service from real heartbeats; its id."""
    machine = seed_machines(stack, 1, tenant_id=uuid.UUID(tenant_id))[0]
    now = datetime.now(timezone.utc)
    span = timedelta(days=89)
    published = publish(stack.amqp_uri, heartbeats([machine], changes, change_rate=1.0, full=False,
                                                    start=now - span, interval=span / changes, seed=15),
                        expect_in=())
    deadline = time.monotonic() + 600
    while applied_count(stack) < published:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{applied_count(stack)} of {published} heartbeats applied in 600 s")
        time.sleep(0.5)
    return str(machine.id)


def sign_in(base: str) -> requests.Response:
    """The admin's session, once accounts answers (its RPC consumer may start after /healthz)."""
    deadline = time.monotonic() + 60
    while True:
        signed = requests.post(f"{base}/api/auth/sign-in", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                               timeout=30)
        if signed.status_code == 200 or time.monotonic() > deadline:
            signed.raise_for_status()
            return signed
        time.sleep(0.5)


def timed(session: requests.Session, url: str, params: dict, count: int) -> dict:
    latencies, matched = [], None
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, params=params, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise BenchFailure(f"GET {url} {params} answered {response.status_code}: {response.text[:300]}")
        answer = response.json()
        matched = sum(v["machines"] for v in answer["versions"]) if "versions" in answer else None
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "machines_matched": matched}


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    with Stack(NAME, workdir, extra_env={"CHAMADOS_ADMIN_EMAIL": ADMIN_EMAIL,
                                         "CHAMADOS_ADMIN_PASSWORD": ADMIN_PASSWORD}) as stack:
        for service in SERVICES:  # what a search needs, not the whole system (lighter in the smoke run)
            stack.system.start_service(service)
        for service in SERVICES:
            stack.wait_ready(service, stack.system.metrics_url(service), stack.system.processes[service], 90)
        base = stack.system.base_url
        created = stack.system.cli("create-admin")
        if created.returncode != 0:
            raise BenchFailure(f"create-admin failed: {created.stdout[-1000:]} {created.stderr[-2000:]}")
        signed = sign_in(base)
        started = time.monotonic()
        seeded = seed(stack, signed.json()["user"]["tenant_id"], p)
        log(NAME, f"seeded {p['machines']} machines x {p['packages']} packages in "
                  f"{time.monotonic() - started:.1f}s (index {seeded['index_bytes'] / 2 ** 20:.1f} MB)")
        middle = seeded["targets"][len(seeded["targets"]) // 2]
        searches = {
            "older_than_middle": {"name": TARGET, "version_lt": middle},
            "one_version": {"name": TARGET, "version": seeded["targets"][0]},
            "one_version_one_company": {"name": TARGET, "version": seeded["targets"][0],
                                        "company_id": str(seeded["companies"][0])},
            "package_on_every_machine": {"name": seeded["everywhere"]},
        }
        started = time.monotonic()
        machine_id = machine_with_history(stack, signed.json()["user"]["tenant_id"], p["inventory_changes"])
        log(NAME, f"one machine's {p['inventory_changes']} inventory changes applied in "
                  f"{time.monotonic() - started:.1f}s")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {signed.json()['token']}"
        machine_url = f"{base}/api/admin/machines/{machine_id}/inventory"
        first_page = session.get(f"{machine_url}/changes", params={"limit": 50}, timeout=30).json()
        if len(first_page["items"]) < min(50, p["inventory_changes"]):
            raise BenchFailure(f"the machine shows {len(first_page['items'])} changes")
        requests_by_name = {name: (f"{base}/api/admin/software", query) for name, query in searches.items()}
        requests_by_name.update({
            "machine_inventory": (machine_url, {}),
            "machine_inventory_changes": (f"{machine_url}/changes", {"limit": 50}),
            "machine_inventory_changes_page_2": (f"{machine_url}/changes",
                                                 {"limit": 50, "cursor": first_page["next_cursor"]}
                                                 if first_page["next_cursor"] else {"limit": 50}),
        })
        for url, query in requests_by_name.values():  # warm: caches, plans, connections
            timed(session, url, query, 3)
        runs = []
        for rep in range(reps):
            measured = {name: timed(session, url, query, p["requests"])
                        for name, (url, query) in requests_by_name.items()}
            log(NAME, f"rep {rep + 1}/{reps}: " + ", ".join(
                f"{name} p99 {m['p99_ms']:.1f} ms" + (f" ({m['machines_matched']} machines)" if name in searches
                                                      else "") for name, m in measured.items()))
            runs.append(measured)
    targets = []
    for name in requests_by_name:
        goal = GOAL_MS if name in searches else MACHINE_GOAL_MS
        targets.append(target(f"{name}_p99", "<", goal, median([r[name]["p99_ms"] for r in runs]), "ms"))
        targets.append(target(f"{name}_p50", None, None, median([r[name]["p50_ms"] for r in runs]), "ms"))
        if name in searches:
            targets.append(target(f"{name}_machines_matched", None, None, runs[-1][name]["machines_matched"],
                                  "machines"))
    targets.append(target("index_size", None, None, seeded["index_bytes"] / 2 ** 20, "MB"))
    return {"targets": targets, "runs": runs, "searches": searches,
            "series": {name: [[rep + 1, round(r[name]["p99_ms"], 2)] for rep, r in enumerate(runs)]
                       for name in requests_by_name},
            "series_axes": ["repetition", "p99 ms"]}
