"""`make screenshots`: PNGs of the console for the docs, from a fresh system with demo data.

Starts every service as tests/browser/conftest.py does (a database and a RabbitMQ vhost of
its own, create-admin), creates a company, people, tickets in each status with comments and
one device (the real desktop agent, registered and sending one heartbeat), then saves the
dashboard, a ticket page and a device page at 1280 px and at 390 px into docs/screenshots/.

Playwright's sync API runs here without eventlet's monkey-patching (it hangs on stop in a
patched process: ENGINEERING.md pitfall 19). A page that does not answer 200 is reported
and not saved, and the script then exits 1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")  # imported, never patched

from common import bootstrap  # noqa: E402

bootstrap.install()  # the library patches, as every process (no eventlet.monkey_patch(): pitfall 19)

from tests.harness import Client, PostgresServer, RabbitVhost, System, eventually  # noqa: E402

OUTPUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@demo.chamados", "demo-admin-pass-1"
PERSON_PASSWORD = "demo-pass-word-1"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def expect(response, status: int) -> dict:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text[:500]}")
    return response.json() if response.content else {}


def demo_data(system: System, workdir: Path) -> dict:
    """What the pictures show; the addresses of the ticket and device pages."""
    admin = Client(system.base_url).sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    company = expect(admin.post("/api/admin/companies",
                                json={"name": "Contabilidade Silva", "apelido": "silva"}), 201)

    def person(role: str, name: str, email: str) -> tuple[dict, Client]:
        user = expect(admin.post("/api/admin/users", json={
            "email": email, "name": name, "role": role, "company_id": company["id"] if role == "collaborator" else None,
            "password": PERSON_PASSWORD}), 201)
        return user, Client(system.base_url).sign_in(email, PERSON_PASSWORD)

    _, agent = person("agent", "Ana Souza", "ana.souza@demo.chamados")
    _, requester = person("collaborator", "Bruno Lima", "bruno.lima@silva.demo")
    machine_id = register_device(system, company, workdir)

    def ticket(subject: str, description: str, priority: str = "MEDIUM", **extra) -> dict:
        return expect(requester.post("/api/tickets", json={
            "subject": subject, "description": description, "priority": priority,
            "company_id": company["id"], **extra}), 201)

    def act(client: Client, target: dict, action: str, **body) -> None:
        expect(client.post(f"/api/tickets/{target['id']}/{action}", json=body), 200)

    def comment(client: Client, target: dict, body: str, visibility: str = "PUBLIC") -> None:
        expect(client.post(f"/api/tickets/{target['id']}/comments",
                           json={"body": body, "visibility": visibility}), 201)

    ticket("Monitor piscando na recepção", "O monitor da recepção pisca a cada poucos segundos.",
           "LOW", **({"machine_id": machine_id} if machine_id else {}))
    ticket("Criar e-mail para nova colaboradora", "A Carla começa na segunda-feira.")
    vpn = ticket("VPN cai a cada 10 minutos", "Desde ontem a VPN desconecta sozinha e perco o que "
                 "estava fazendo no sistema fiscal.", "HIGH")
    act(agent, vpn, "start", work_type="EXTERNAL")
    comment(agent, vpn, "Olá, Bruno! Já estou olhando. Você está no escritório ou em casa?")
    comment(requester, vpn, "Em casa, pelo Wi-Fi.")
    comment(agent, vpn, "Cliente usa o perfil antigo da VPN; trocar pelo novo.", "INTERNAL")
    slow = ticket("Notebook lento após atualização", "Demora uns 5 minutos para ligar.", "MEDIUM")
    act(agent, slow, "start", work_type="INTERNAL")
    comment(agent, slow, "Pedi ao fabricante o driver novo do disco.")
    act(agent, slow, "pause", reason="WAITING_THIRD_PARTY")
    printer = ticket("Impressora do financeiro não imprime", "Fica na fila e não sai nada.", "URGENT")
    act(agent, printer, "start", work_type="INTERNAL")
    comment(agent, printer, "Fila da impressora limpa e driver reinstalado.")
    act(agent, printer, "resolve", message="Resolvido: a fila travada foi limpa. Qualquer coisa, é só chamar!")
    return {"ticket": f"/chamados/{vpn['reference']}",
            "device": f"/admin/dispositivos/{machine_id}" if machine_id else None}


def register_device(system: System, company: dict, workdir: Path) -> str | None:
    """The real agent registers this machine and sends one heartbeat (full inventory)."""
    state_dir = workdir / "agent"
    env = {key: value for key, value in os.environ.items() if key not in ("AMQP_URI", "DATABASE_URL")}

    def agent(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chamados_agent.cli", *args, "--state-dir", str(state_dir)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    registered = agent("register", "--gateway", system.base_url, "--code", company["provisioning_code"],
                       "--email", "recepcao@silva.demo", "--name", "Recepção Silva",
                       "--amqp", system.amqp_uri)
    if registered.returncode != 0:
        print(f"screenshots: no device (the agent could not register): {registered.stderr.strip()[-500:]}")
        return None
    beat = agent("heartbeat", "--reply-timeout", "20")
    if beat.returncode != 0:
        print(f"screenshots: the device sent no heartbeat: {beat.stderr.strip()[-500:]}")
    return json.loads((state_dir / "state.json").read_text())["machine_id"]


def take(base_url: str, pages: dict) -> list[str]:
    """Every page at every width; the problems (pages that did not answer 200)."""
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for width_name, viewport in VIEWPORTS.items():
                context = browser.new_context(base_url=base_url, locale="pt-BR", viewport=viewport)
                page = context.new_page()
                page.goto("/")
                page.fill("input[name=email]", ADMIN_EMAIL)
                page.fill("input[name=password]", ADMIN_PASSWORD)
                page.click("button[type=submit].primary")
                page.wait_for_selector("header.topbar")
                for name, path in pages.items():
                    target = OUTPUT / f"{name}-{width_name}.png"
                    if path is None:
                        problems.append(f"{target.name}: no address (see above)")
                        continue
                    answer = page.goto(path, wait_until="networkidle")
                    if answer is None or answer.status != 200:
                        problems.append(f"{target.name}: {path} answered {answer.status if answer else 'nothing'}")
                        continue
                    page.screenshot(path=str(target), full_page=True)
                    print(f"screenshots: {target}")
                context.close()
        finally:
            browser.close()
    return problems


def main() -> int:
    postgres = PostgresServer.find()
    database, database_url = postgres.create_database()
    vhost = RabbitVhost.create()
    with tempfile.TemporaryDirectory(prefix="chamados-screenshots-") as workdir:
        system = System(database_url=database_url, amqp_uri=vhost.amqp_uri, workdir=Path(workdir),
                        extra_env={"CHAMADOS_ADMIN_EMAIL": ADMIN_EMAIL,
                                   "CHAMADOS_ADMIN_PASSWORD": ADMIN_PASSWORD})
        try:
            system.start()
            created = system.cli("create-admin")
            if created.returncode != 0:
                raise RuntimeError(created.stdout + created.stderr)
            addresses = demo_data(system, Path(workdir))
            if addresses["device"]:  # heartbeats are processed asynchronously
                admin = Client(system.base_url).sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
                eventually(lambda: admin.get(f"/api/admin/machines/{addresses['device'].rsplit('/', 1)[1]}")
                           .json().get("inventory_hash"), timeout=15)
            problems = take(system.base_url, {"dashboard": "/", "ticket": addresses["ticket"],
                                              "device": addresses["device"]})
        finally:
            system.stop()
            vhost.delete()
            postgres.drop_database(database)
    for problem in problems:
        print(f"screenshots: NOT SAVED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"screenshots: done in {time.monotonic() - started:.0f}s")
    sys.exit(status)
