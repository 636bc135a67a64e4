"""A simulated fleet: machines and tokens written straight into the bench's database,
realistic inventories (hardware, ~600 packages, disks, network: ~92 KB of JSON, the shape
agent/chamados_agent/collect.py sends), heartbeat bodies (~2 KB), and publishing them to the heartbeat
exchange as agents do (persistent, `message_id`, token in header `authorization`)."""
from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pika

from chamados_protocol.inventory import inventory_hash
from common.contracts.devices import (HEARTBEAT_EXCHANGE, HEARTBEAT_MAX_AGE, HEARTBEAT_MAX_BYTES, HEARTBEAT_QUEUE,
                                      HEARTBEAT_ROUTING_KEY)
from common.tokens import hash_token, new_secret_token

from bench.core import BenchFailure

DEFAULT_PACKAGES = 640  # ~92 KB of inventory JSON

_PREFIXES = ("lib", "lib", "lib", "python3-", "gir1.2-", "fonts-", "gnome-", "x11-", "node-", "")
_STEMS = ("gtk", "glib", "ssl", "curl", "xml", "pango", "cairo", "pulse", "alsa", "gstreamer",
          "nss", "krb5", "ldap", "sasl", "sqlite", "pcre", "zstd", "lzma", "bz2", "ffi", "icu",
          "harfbuzz", "freetype", "fontconfig", "wayland", "mesa", "drm", "vulkan", "udev",
          "systemd", "dbus", "polkit", "avahi", "cups", "sane", "colord", "upower", "nm", "bluez",
          "evolution", "webkit2gtk", "poppler", "tracker", "gvfs", "samba", "smbclient", "apt",
          "dpkg", "perl", "python", "ruby", "java", "llvm", "gcc", "stdc++", "boost", "qt5",
          "kf5", "snapd", "flatpak", "libreoffice", "firefox", "thunderbird", "vlc", "ffmpeg")
_SUFFIXES = ("", "-common", "-data", "-bin", "-dev", "-doc", "0", "1", "2", "3", "-utils",
             "-plugins", "-l10n", "-core", "6", "8", "-extra", "-tools")
_VENDORS = ("Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
            "Debian GNOME Maintainers <pkg-gnome-maintainers@lists.alioth.debian.org>",
            "Debian Python Team <team+python@tracker.debian.org>",
            "Debian X Strike Force <debian-x@lists.debian.org>",
            "Canonical Ltd. <support@canonical.com>",
            "Mozilla Team <ubuntu-mozillateam@lists.ubuntu.com>")
_ARCHES = ("amd64",) * 9 + ("all", "all", "i386")

_base_cache: dict[int, list] = {}


def base_packages(count: int) -> list[dict]:
    """The packages of the fleet's image (shared by every machine, like a real fleet)."""
    if count not in _base_cache:
        rnd = random.Random(count)
        packages, seen = [], set()
        while len(packages) < count:
            name = rnd.choice(_PREFIXES) + rnd.choice(_STEMS) + rnd.choice(_SUFFIXES)
            arch = rnd.choice(_ARCHES)
            if (name, arch) in seen:
                name = f"{name}-{len(packages)}"
            seen.add((name, arch))
            packages.append({
                "name": name,
                "version": f"{rnd.randint(0, 9)}.{rnd.randint(0, 40)}.{rnd.randint(0, 20)}-"
                           f"{rnd.randint(1, 9)}ubuntu{rnd.randint(0, 5)}.{rnd.randint(1, 9)}",
                "vendor": rnd.choice(_VENDORS), "arch": arch})
        _base_cache[count] = packages
    return _base_cache[count]


def mounts(seed: int) -> list[str]:
    """A desktop's mounts: root, boot, home, a data disk, and the office's network shares
    (what psutil lists once squashfs/tmpfs are skipped; ~25 mounts make the ~2 KB body)."""
    rnd = random.Random(seed)
    shares = ["financeiro", "rh", "compras", "vendas", "juridico", "diretoria", "ti", "projetos",
              "engenharia", "qualidade", "logistica", "marketing", "contabilidade", "fiscal",
              "publico", "digitalizacoes", "backup-estacoes", "modelos", "treinamentos",
              "arquivo-morto", "sistemas", "auditoria", "clientes", "fornecedores", "contratos",
              "licitacoes", "obras", "frota", "patrimonio"]
    found = ["/", "/boot", "/boot/efi", "/home", "/media/dados"]
    for name in shares[: rnd.randint(24, 29)]:
        found.append(f"/mnt/servidor-arquivos/{name}")
    return found


class SimMachine:
    """One machine: its rows, its token, its current inventory (the fleet's packages with
    this machine's upgrades on top) and the clock of its heartbeats."""

    def __init__(self, index: int, packages: int = DEFAULT_PACKAGES):
        self.index = index
        self.id = uuid.uuid4()
        self.token, self.token_hash = new_secret_token()
        self.packages = packages
        self.versions: dict[int, str] = {}  # package index -> upgraded version
        self.added = 0
        self.revision = 0
        self.mounts = mounts(index)
        self.sent_at: datetime | None = None
        self._hash: str | None = None
        rnd = random.Random(index)
        self.hardware = {
            "cpu": {"model": rnd.choice(["Intel(R) Core(TM) i5-8500 CPU @ 3.00GHz",
                                         "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",
                                         "AMD Ryzen 5 5600G with Radeon Graphics"]),
                    "logical_cores": 12, "physical_cores": 6, "max_mhz": 4100},
            "memory_bytes": rnd.choice([8, 16, 32]) * 2 ** 30, "swap_bytes": 2 * 2 ** 30,
            "serial_numbers": [f"SN{index:08d}"], "vendor": "Dell Inc.",
            "product": "OptiPlex 7070", "board": "0YNVJG", "bios_version": "1.22.0"}

    @property
    def hostname(self) -> str:
        return f"ws-{self.index:05d}"

    def inventory(self) -> dict:
        packages = [dict(p, version=self.versions[i]) if i in self.versions else p
                    for i, p in enumerate(base_packages(self.packages))]
        packages += [{"name": f"local-tool-{self.index}-{n}", "version": "1.0", "vendor": "local",
                      "arch": "amd64"} for n in range(self.added)]
        return {
            "collected_at": (self.sent_at or datetime.now(timezone.utc)).isoformat(),
            "hostname": self.hostname,
            "os": {"name": "Ubuntu", "version": "22.04", "build": "22.04.4 LTS (Jammy Jellyfish)",
                   "arch": "x86_64", "kernel": "5.15.0-105-generic", "platform": "linux"},
            "hardware": self.hardware,
            "partitions": [{"device": f"/dev/nvme0n1p{n + 1}" if not m.startswith("/mnt") else
                            f"//servidor-arquivos/{m.rsplit('/', 1)[1]}", "mount": m,
                            "fstype": "cifs" if m.startswith("/mnt") else "ext4",
                            "total_bytes": 512 * 2 ** 20 * (n + 1)} for n, m in enumerate(self.mounts)],
            "disks": [{"name": "nvme0n1", "size_bytes": 512_110_190_592, "model": "PC SN730 NVMe WDC 512GB",
                       "serial": f"20{self.index:010d}", "rotational": False, "removable": False},
                      {"name": "sda", "size_bytes": 1_000_204_886_016, "model": "ST1000DM010-2EP1",
                       "vendor": "ATA", "serial": f"Z9A{self.index:05d}", "rotational": True,
                       "removable": False}],
            "network": [{"name": "enp1s0", "mac": f"3c:52:82:{self.index >> 8 & 255:02x}:"
                                                 f"{self.index & 255:02x}:01",
                         "ipv4": [f"10.{self.index >> 8 & 255}.{self.index & 255}.10"], "mtu": 1500},
                        {"name": "wlp2s0", "mac": f"3c:52:82:{self.index >> 8 & 255:02x}:"
                                                  f"{self.index & 255:02x}:02", "mtu": 1500},
                        {"name": "docker0", "mac": "02:42:ac:11:00:01", "ipv4": ["172.17.0.1"],
                         "mtu": 1500}],
            "software": {"manager": "dpkg", "packages": packages},
        }

    def change(self, rnd: random.Random) -> None:
        """An upgrade of one to three packages (now and then an installed tool)."""
        for _ in range(rnd.randint(1, 3)):
            self.revision += 1
            self.versions[rnd.randrange(self.packages)] = f"99.{self.revision}.{rnd.randint(0, 9)}"
        if rnd.random() < 0.1:
            self.added += 1
        self._hash = None

    @property
    def inventory_hash(self) -> str:
        if self._hash is None:
            self._hash = inventory_hash(self.inventory())
        return self._hash

    def metrics(self, rnd: random.Random) -> dict:
        return {"cpu_percent": round(rnd.uniform(2, 60), 1),
                "memory_percent": round(rnd.uniform(30, 85), 1),
                "disks": [{"mount": m, "percent": round(rnd.uniform(20, 85), 1)} for m in self.mounts],
                "uptime_seconds": rnd.randint(600, 900_000)}

    def heartbeat(self, rnd: random.Random, sent_at: datetime, *, full: bool) -> bytes:
        """The next heartbeat body: the full inventory, or its hash."""
        if self.sent_at is not None and sent_at <= self.sent_at:
            raise ValueError("sent_at must increase per machine")
        self.sent_at = sent_at
        body = {"sent_at": sent_at.isoformat(), "metrics": self.metrics(rnd)}
        if full:
            body["inventory"] = self.inventory()
        else:
            body["inventory_hash"] = self.inventory_hash
        return orjson.dumps(body)


def fit_packages(limit: int = HEARTBEAT_MAX_BYTES - 8 * 1024) -> int:
    """How many packages make a full heartbeat body just under `limit` bytes (~1 MB)."""
    def size(packages):
        probe = SimMachine(0, packages=packages)
        return len(probe.heartbeat(random.Random(0), datetime.now(timezone.utc), full=True))
    small, large = size(100), size(1000)
    count = 100 + int((limit - small) * 900 / (large - small))
    while True:
        probe = SimMachine(0, packages=count)
        size = len(probe.heartbeat(random.Random(0), datetime.now(timezone.utc), full=True))
        if size <= limit:
            return count
        count -= max(1, (size - limit) // 140)


# --- rows -----------------------------------------------------------------------------------

def seed_machines(stack, count: int, packages: int = DEFAULT_PACKAGES, first_index: int = 0,
                  tenant_id=None) -> list[SimMachine]:
    """Machines, their heartbeat state and a token each, written straight to the devices
    schema with the service's own table definitions (their Python-side defaults apply); in
    a tenant of their own unless `tenant_id` is given (one whose admin reads them)."""
    from sqlalchemy import create_engine, insert

    from services.devices.storage import HeartbeatState, Machine, MachineToken

    machines = [SimMachine(first_index + n, packages) for n in range(count)]
    now = datetime.now(timezone.utc)
    # registered as long ago as a heartbeat may be old: the benches replay past days, and a
    # heartbeat from before its machine's registration is refused
    registered = now - HEARTBEAT_MAX_AGE
    tenant, company = tenant_id or uuid.uuid4(), uuid.uuid4()
    engine = create_engine(stack.database_url, hide_parameters=True,
                           connect_args={"options": "-csearch_path=devices"})  # as common/db.py
    try:
        with engine.begin() as connection:
            connection.execute(insert(Machine.__table__), [
                {"id": m.id, "tenant_id": tenant, "company_id": company, "hostname": m.hostname,
                 "os_name": "Ubuntu", "os_version": "22.04", "machine_user_id": uuid.uuid4(),
                 "created_at": registered, "updated_at": registered} for m in machines])
            connection.execute(insert(HeartbeatState.__table__), [
                {"machine_id": m.id, "heartbeats": 0, "need_inventory": True, "reported_online": False,
                 "open_alert_kinds": "", "agg_samples": 0, "agg_cpu_sum": 0.0, "agg_memory_sum": 0.0}
                for m in machines])
            connection.execute(insert(MachineToken.__table__), [
                {"machine_id": m.id, "token_hash": hash_token(m.token), "created_at": now,
                 "expires_at": now + timedelta(days=365)} for m in machines])
    finally:
        engine.dispose()
    return machines


def applied_count(stack) -> int:
    """Heartbeats applied so far: the sum of the machines' counters."""
    return int(stack.scalar("SELECT coalesce(sum(heartbeats), 0) FROM devices.heartbeat_state"))


# --- the broker -----------------------------------------------------------------------------

def channel(amqp_uri: str):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    return connection, connection.channel()


def queue_ready(amqp_uri: str, queue: str = HEARTBEAT_QUEUE) -> int:
    """Messages ready in `queue` (a passive declare: exact, unlike the management API's
    five-second statistics)."""
    connection, ch = channel(amqp_uri)
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def publish(amqp_uri: str, messages, *, expect_in: tuple[str, ...] = (HEARTBEAT_QUEUE,),
            timeout: float = 300) -> int:
    """Publish (token, body) pairs to the heartbeat exchange, persistent, as agents do, then
    wait until every queue in `expect_in` holds them all (a passive declare per queue; no
    consumer may run meanwhile). Returns how many were published."""
    connection, ch = channel(amqp_uri)
    try:
        before = {q: ch.queue_declare(q, passive=True).method.message_count for q in expect_in}
        published = 0
        for token, body in messages:
            ch.basic_publish(HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY, body, pika.BasicProperties(
                content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                message_id=str(uuid.uuid4()), headers={"authorization": token}))
            published += 1
        deadline = time.monotonic() + timeout
        for queue in expect_in:
            while ch.queue_declare(queue, passive=True).method.message_count < before[queue] + published:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"queue {queue} did not receive {published} messages in {timeout:.0f}s")
                connection.sleep(0.1)
        return published
    finally:
        connection.close()


def interleaved(machines: list[SimMachine], per_machine: int, start: datetime, interval: timedelta):
    """(machine, sent_at) for `per_machine` heartbeats of every machine, machines
    interleaved (as a fleet's heartbeats arrive), sent_at strictly increasing per machine."""
    for step in range(per_machine):
        for offset, machine in enumerate(machines):
            yield machine, start + step * interval + timedelta(microseconds=offset)


def heartbeats(machines: list[SimMachine], count: int, *, change_rate: float, full: bool,
               start: datetime, interval: timedelta, seed: int):
    """`count` heartbeats (a multiple of the fleet size), machines interleaved, of which
    `round(count × change_rate)`, chosen at random, carry a changed full inventory; the
    others carry the hash (or, `full`, the unchanged full inventory). Yields (token, body)."""
    rnd = random.Random(seed)
    per_machine = max(1, count // len(machines))
    total = per_machine * len(machines)
    changed = set(rnd.sample(range(total), round(total * change_rate)))
    for position, (machine, sent_at) in enumerate(interleaved(machines, per_machine, start, interval)):
        if position in changed:
            machine.change(rnd)
        yield machine.token, machine.heartbeat(rnd, sent_at, full=full or position in changed)


def fleet_size(count: int, machines: int) -> int:
    return max(1, count // machines) * machines
