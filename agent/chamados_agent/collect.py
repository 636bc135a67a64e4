"""What the agent reads from the machine it runs on: identity (for registration), inventory
and metrics. Whatever cannot be read is left out, never guessed: an invented serial would
merge two machines on the server, an invented version would mislead a technician.

The inventory's canonical form and hash are chamados_protocol.inventory's: the server runs the same
function, so both sides always agree on whether the inventory changed.
"""
from __future__ import annotations

import platform
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import psutil

from chamados_protocol.heartbeat import HEARTBEAT_MAX_BYTES
from chamados_protocol.inventory import inventory_hash  # noqa: F401  (the one shared hash, re-exported)

DMI = Path("/sys/class/dmi/id")
SERIAL_FILES = ("product_serial", "board_serial", "chassis_serial")
COMMAND_TIMEOUT = 20
# squashfs: every snap revision is a mount, and would make each snap refresh an inventory change
SKIP_FSTYPES = frozenset({"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs"})
SKIP_BLOCK_DEVICES = re.compile(r"^(loop|ram|zram|dm-|sr|fd)")
# room left in a heartbeat for everything but the inventory
INVENTORY_BUDGET = HEARTBEAT_MAX_BYTES - 64 * 1024


def _read(path: Path | str) -> str | None:
    """A sysfs/procfs/etc value, or None if it is missing, unreadable (product_serial is
    root-only on most distributions) or empty."""
    try:
        value = Path(path).read_text(errors="replace").strip()
    except OSError:
        return None
    return value or None


def _run(args: list[str]) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _clip(value: str | None, limit: int) -> str:
    return (value or "").strip()[:limit]


# --- identity --------------------------------------------------------------------------

def hostname() -> str:
    return socket.gethostname() or platform.node()


def os_release() -> dict:
    """/etc/os-release (or /usr/lib/os-release) as a dict; empty when absent."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(path)
        if text is None:
            continue
        values = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                values[key.strip()] = value.strip().strip("\"'")
        return values
    return {}


def operating_system() -> dict:
    """{name, version, build, arch} in the registration contract's limits."""
    arch = platform.machine()
    if sys.platform.startswith("linux"):
        release = os_release()
        name = release.get("NAME") or "Linux"
        version = release.get("VERSION_ID") or release.get("VERSION") or ""
        build = release.get("BUILD_ID") or platform.release()  # the kernel, when no build id
    elif sys.platform == "darwin":
        name, version, build = "macOS", platform.mac_ver()[0], (_run(["sw_vers", "-buildVersion"]) or "")
    elif sys.platform == "win32":
        release, version, _, _ = platform.win32_ver()
        edition = platform.win32_edition() if hasattr(platform, "win32_edition") else ""
        name = " ".join(filter(None, ["Windows", release, edition or ""]))
        build = version.split(".")[-1] if version else ""
    else:
        name, version, build = platform.system() or sys.platform, platform.release(), ""
    return {"name": _clip(name, 100) or sys.platform, "version": _clip(version, 100),
            "build": _clip(build, 100), "arch": _clip(arch, 32)}


def mac_addresses() -> list[str]:
    """Every interface's link-layer address but loopback's and all-zero ones. The server
    decides which identify hardware (it ignores virtual and locally administered ones)."""
    found = set()
    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            if address.family != psutil.AF_LINK or not address.address:
                continue
            mac = address.address.lower().replace("-", ":")
            if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac) and mac != "00:00:00:00:00:00":
                found.add(mac)
    return sorted(found)[:64]


def serial_numbers() -> list[str]:
    serials = []
    if sys.platform.startswith("linux"):
        serials = [_read(DMI / name) for name in SERIAL_FILES]
    elif sys.platform == "darwin":
        output = _run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"]) or ""
        match = re.search(r'"IOPlatformSerialNumber" = "([^"]+)"', output)
        serials = [match.group(1) if match else None]
    elif sys.platform == "win32":
        serials = [(_run(["powershell", "-NoProfile", "-Command",
                          "(Get-CimInstance Win32_BIOS).SerialNumber"]) or "").strip() or None]
    unique = []
    for serial in serials:
        serial = _clip(serial, 128)
        if serial and serial not in unique:
            unique.append(serial)
    return unique[:32]


def installation_id() -> str | None:
    """The OS installation's own id (/etc/machine-id, Windows MachineGuid), offered only when
    the server found no hardware identifier: VMs and containers often have no readable serial
    and only locally administered MACs. Prefixed so it can never pass for a hardware serial."""
    value = None
    if sys.platform == "win32":
        try:
            import winreg
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
                value = winreg.QueryValueEx(key, "MachineGuid")[0]
        except OSError:
            value = None
    else:
        value = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    value = re.sub(r"[^0-9A-Za-z]", "", value or "")
    return f"machine-id-{value.lower()}" if len(set(value)) > 1 else None


def identity() -> dict:
    return {"hostname": _clip(hostname(), 255), "os": operating_system(),
            "mac_addresses": mac_addresses(), "serial_numbers": serial_numbers()}


# --- inventory -------------------------------------------------------------------------

def cpu() -> dict:
    info = {"logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False)}
    model = None
    if sys.platform.startswith("linux"):
        for line in (_read("/proc/cpuinfo") or "").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.partition(":")[2].strip()
                break
    model = model or platform.processor()
    if model:
        info["model"] = model
    try:
        frequency = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        frequency = None
    if frequency and frequency.max:  # the current frequency changes every second: not inventory
        info["max_mhz"] = round(frequency.max)
    return {key: value for key, value in info.items() if value is not None}


def hardware() -> dict:
    memory = psutil.virtual_memory()
    info = {"cpu": cpu(), "memory_bytes": memory.total, "swap_bytes": psutil.swap_memory().total,
            "serial_numbers": serial_numbers()}
    if sys.platform.startswith("linux"):
        for key, name in (("vendor", "sys_vendor"), ("product", "product_name"),
                          ("board", "board_name"), ("bios_version", "bios_version")):
            value = _read(DMI / name)
            if value:
                info[key] = value
    return info


def partitions() -> list[dict]:
    found = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in SKIP_FSTYPES:
            continue
        entry = {"device": part.device, "mount": part.mountpoint, "fstype": part.fstype}
        try:
            entry["total_bytes"] = psutil.disk_usage(part.mountpoint).total
        except OSError:  # an empty card reader, a mount we may not stat
            pass
        found.append(entry)
    return found


def block_devices() -> list[dict]:
    """Physical disks (Linux, from sysfs): size, model, rotational, removable."""
    root = Path("/sys/block")
    if not root.is_dir():
        return []
    found = []
    for device in sorted(root.iterdir()):
        if SKIP_BLOCK_DEVICES.match(device.name):
            continue
        entry = {"name": device.name}
        sectors = _read(device / "size")
        if sectors and sectors.isdigit():
            entry["size_bytes"] = int(sectors) * 512  # sysfs counts 512-byte sectors always
        for key, path in (("model", device / "device" / "model"), ("vendor", device / "device" / "vendor"),
                          ("serial", device / "device" / "serial")):
            value = _read(path)
            if value:
                entry[key] = value
        for key in ("rotational", "removable"):
            flag = _read(device / ("queue/rotational" if key == "rotational" else key))
            if flag in ("0", "1"):
                entry[key] = flag == "1"
        found.append(entry)
    return found


def network() -> list[dict]:
    """Interfaces with their MAC and IPv4 addresses. IPv6 is left out: privacy addresses
    rotate daily and would turn every day into an inventory change."""
    interfaces = {}
    stats = psutil.net_if_stats()
    for name, addresses in psutil.net_if_addrs().items():
        if "loopback" in (getattr(stats.get(name), "flags", "") or ""):
            continue
        entry = interfaces.setdefault(name, {"name": name})
        for address in addresses:
            if address.family == psutil.AF_LINK and address.address:
                mac = address.address.lower().replace("-", ":")
                if mac != "00:00:00:00:00:00":
                    entry["mac"] = mac
            elif address.family == socket.AF_INET:
                entry.setdefault("ipv4", []).append(address.address)
        if name in stats and stats[name].mtu:
            entry["mtu"] = stats[name].mtu
    return [entry for name, entry in sorted(interfaces.items()) if name != "lo"]


def packages() -> dict | None:
    """Installed packages where the package manager answers quickly; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    output = _run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n"])
    if output is not None:
        items = []
        for line in output.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[3].startswith("ii"):  # installed, not just known
                items.append({"name": parts[0], "version": parts[1], "arch": parts[2]})
        return {"manager": "dpkg", "packages": items}
    output = _run(["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n"])
    if output is not None:
        items = [dict(zip(("name", "version", "arch"), line.split("\t")))
                 for line in output.splitlines() if line.count("\t") == 2]
        return {"manager": "rpm", "packages": items}
    return None


def inventory(now: datetime | None = None) -> dict:
    document = {
        "collected_at": (now or datetime.now(timezone.utc)).isoformat(),
        "hostname": hostname(),
        "os": {**operating_system(), "kernel": platform.release(), "platform": sys.platform},
        "hardware": hardware(),
        "partitions": partitions(),
        "disks": block_devices(),
        "network": network(),
    }
    software = packages()
    if software is not None:
        document["software"] = software
    return fit(document)


def fit(document: dict) -> dict:
    """A heartbeat over the server's size limit is dead-lettered, and we would never learn
    why; an inventory too large keeps its package count instead of the package list."""
    if len(orjson.dumps(document)) <= INVENTORY_BUDGET or "software" not in document:
        return document
    software = document["software"]
    document["software"] = {"manager": software.get("manager"),
                            "package_count": len(software.get("packages") or []),
                            "packages_omitted": "inventory over the heartbeat size limit"}
    return document


# --- metrics ---------------------------------------------------------------------------

_cpu_primed = False


def metrics(mounts: list[str] | None = None) -> dict:
    """common.contracts.devices.Metrics: cpu_percent, memory_percent, disks, uptime_seconds.
    In `run`, CPU is the average since the previous heartbeat; the first call measures
    a quarter of a second (psutil's first non-blocking reading is meaningless)."""
    global _cpu_primed
    cpu_percent = psutil.cpu_percent(interval=None if _cpu_primed else 0.25)
    _cpu_primed = True
    if mounts is None:
        mounts = [part["mount"] for part in partitions()]
    disks = []
    for mount in mounts:
        try:
            usage = psutil.disk_usage(mount)
        except OSError:
            continue
        if 0 < len(mount) <= 256:
            disks.append({"mount": mount, "percent": min(max(float(usage.percent), 0.0), 100.0)})
    uptime = int(time.time() - psutil.boot_time())
    return {"cpu_percent": min(max(float(cpu_percent), 0.0), 100.0),
            "memory_percent": min(max(float(psutil.virtual_memory().percent), 0.0), 100.0),
            "disks": disks[:64], "uptime_seconds": max(uptime, 0)}


