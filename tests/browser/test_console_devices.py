"""Admin ▸ Dispositivos in a browser: a machine enrolled by the real desktop agent
(`chamados-agent register` and `heartbeat` over HTTP, as subprocesses) shows on the list
and on its page; its inventory change, USB policy, links, access and agent reset are driven
from the page and checked through the API."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, ROOT, api_get, sign_in

PROCESSED_TIMEOUT = 15.0


# --- helpers ----------------------------------------------------------------------------

def run_agent(system, state_dir, *args) -> subprocess.CompletedProcess:
    """The agent CLI as a desktop runs it: no server-side settings in its environment."""
    env = {key: value for key, value in system.env.items() if key not in ("AMQP_URI", "DATABASE_URL")}
    done = subprocess.run([sys.executable, "-m", "chamados_agent.cli", *args, "--state-dir", str(state_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def wait_for(check, what: str, timeout: float = PROCESSED_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def machine_view(admin_api, machine_id: str) -> dict:
    return api_get(admin_api, f"/api/admin/machines/{machine_id}")


def current_inventory(admin_api, machine_id: str) -> dict:
    return api_get(admin_api, f"/api/admin/machines/{machine_id}/inventory")


def http_heartbeat(system, token: str, **body) -> requests.Response:
    """A heartbeat through the API with the machine's token, as an agent over HTTP sends it."""
    body = {"sent_at": datetime.now(timezone.utc).isoformat(),
            "metrics": {"cpu_percent": 30.0, "memory_percent": 60.0}, **body}
    if "inventory" not in body:
        body.setdefault("inventory_hash", "0" * 64)
    return requests.post(f"{system.base_url}/api/machines/heartbeat", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def new_company(admin_api, label: str) -> dict:
    apelido = f"{label}-{uuid.uuid4().hex[:8]}"
    response = admin_api.post("/api/admin/companies", json={"name": f"Empresa {apelido}", "apelido": apelido})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def machine(system, admin_api, tmp_path):
    """A machine of a company of its own, registered by the real agent, with one heartbeat
    processed: {id, token, hostname, company, email, state_dir}."""
    company = new_company(admin_api, "disp")
    state_dir = tmp_path / "agent"
    email = f"colab-{uuid.uuid4().hex[:8]}@console.test"
    run_agent(system, state_dir, "register", "--gateway", system.base_url,
              "--code", company["provisioning_code"], "--email", email, "--name", "Carla Colaboradora")
    state = json.loads((state_dir / "state.json").read_text())
    beat = run_agent(system, state_dir, "heartbeat", "--http")
    assert "sent over http" in beat.stdout, beat.stdout
    view = wait_for(lambda: (lambda v: v if v["last_seen_at"] and v["inventory_hash"] else None)(
        machine_view(admin_api, state["machine_id"])), "the agent's first heartbeat")
    return {"id": state["machine_id"], "token": state["token"], "hostname": view["hostname"],
            "company": company, "email": email, "state_dir": state_dir}


def open_device(page, machine: dict) -> None:
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"/admin/dispositivos/{machine['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(machine["hostname"])


# --- the list ---------------------------------------------------------------------------

def test_a_machine_shows_on_the_list_after_a_real_agent_heartbeat(page, admin_api, machine):
    without_machines = new_company(admin_api, "vazia")
    listed = admin_api.get("/api/admin/machines", params={"company_id": machine["company"]["id"]}).json()["items"]
    (summary,) = listed
    companies = admin_api.get("/api/admin/companies").json()["items"]

    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Dispositivos").click()
    expect(page.get_by_role("heading", name="Dispositivos", level=1)).to_be_visible()
    # every company of the tenant is offered, those without machines too
    offered = page.locator("select[name=empresa] option").all_inner_texts()
    assert len(offered) == len(companies) + 1  # and "Todas as empresas"
    assert any(without_machines["apelido"] in text for text in offered)

    # a search that finds one company filters by it
    page.get_by_label("Buscar empresa").fill(machine["company"]["apelido"])
    page.get_by_role("button", name="Filtrar").click()
    expect(page.locator("select[name=empresa]")).to_have_value(machine["company"]["id"])
    rows = page.locator("table.devices tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.get_by_role("link", name=machine["hostname"])).to_be_visible()
    chip = row.locator(".chip")
    expect(chip).to_have_text("Online")
    expect(chip).to_have_class("chip chip-online")
    expect(row.locator("td[data-label='Sistema']")).to_have_text(summary["os_label"])
    expect(row.locator("td[data-label='Usuário vinculado']")).to_contain_text(machine["email"])
    expect(row.locator("td[data-label='Empresa']")).to_have_text(machine["company"]["name"])

    # by status and hostname text, on top of the company
    page.locator("select[name=status]").select_option("offline")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Nenhum dispositivo encontrado.")).to_be_visible()
    page.locator("select[name=status]").select_option("online")
    page.get_by_label("Hostname contém").fill(machine["hostname"][:2])
    page.get_by_role("button", name="Filtrar").click()
    expect(rows).to_have_count(1)
    page.get_by_label("Hostname contém").fill(f"nada-{uuid.uuid4().hex[:6]}")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Nenhum dispositivo encontrado.")).to_be_visible()

    # a search that finds no company lists nothing, and says why
    page.goto("/admin/dispositivos?empresa_busca=" + uuid.uuid4().hex)
    expect(page.get_by_text("Nenhuma empresa corresponde")).to_be_visible()
    expect(rows).to_have_count(0)
    # one that finds several asks which
    group = f"grupo{uuid.uuid4().hex[:6]}"
    new_company(admin_api, f"{group}-a")
    second = new_company(admin_api, f"{group}-b")
    page.get_by_label("Buscar empresa").fill(group)
    page.get_by_role("button", name="Filtrar").click()
    choices = page.locator(".company-choices")
    expect(choices).to_contain_text(f"2 empresas correspondem a “{group}”")
    expect(page.locator("select[name=empresa] option")).to_have_count(3)
    choices.get_by_role("link", name=second["name"]).click()
    expect(page.locator("select[name=empresa]")).to_have_value(second["id"])
    expect(page.get_by_text("Nenhum dispositivo encontrado.")).to_be_visible()
    # a hand-edited address: the filter at fault, in words
    page.goto("/admin/dispositivos?status=perdido")
    expect(page.get_by_role("alert")).to_contain_text("Confira os campos (Status:")

    page.goto(f"/admin/dispositivos?empresa={machine['company']['id']}")
    page.get_by_role("link", name=machine["hostname"]).click()
    page.wait_for_url(f"**/admin/dispositivos/{machine['id']}")
    expect(page.locator("h1 .chip")).to_have_text("Online")


# --- a device's page --------------------------------------------------------------------

def test_an_inventory_change_shows_on_the_device_page(page, system, admin_api, machine):
    before = current_inventory(admin_api, machine["id"])
    document = json.loads(json.dumps(before["document"]))
    old_hostname = document["hostname"]
    document["hostname"] = f"{old_hostname}-renomeado"
    asset_tag = f"PAT-{uuid.uuid4().hex[:6].upper()}"
    document["hardware"]["asset_tag"] = asset_tag
    removed_value = document["os"].pop("platform")
    answer = http_heartbeat(system, machine["token"], inventory=document)
    assert answer.status_code == 202, answer.text
    after = wait_for(lambda: (lambda inv: inv if inv["hash"] != before["hash"] else None)(
        current_inventory(admin_api, machine["id"])), "the changed inventory")

    open_device(page, machine)
    inventory = page.locator("section[aria-labelledby=inventario]")
    expect(inventory).to_contain_text(after["hash"][:12])
    hardware = inventory.locator("details[data-part=hardware]")
    expect(hardware.locator("dt", has_text="asset_tag")).to_be_visible()
    expect(hardware).to_contain_text(asset_tag)

    history = page.locator("ol.inventory-changes > li")
    expect(history).to_have_count(2)  # the first inventory, then this change
    newest = history.first
    changed = newest.locator("li.change-changed", has_text="hostname")
    expect(changed.locator("del")).to_have_text(old_hostname)
    expect(changed.locator("ins")).to_have_text(f"{old_hostname}-renomeado")
    expect(newest.locator("li.change-added", has_text="hardware/asset_tag").locator("ins")).to_have_text(asset_tag)
    expect(newest.locator("li.change-removed", has_text="os/platform").locator("del")).to_have_text(removed_value)
    expect(history.last).to_contain_text("Primeiro inventário recebido.")

    # the hourly chart: this hour's CPU and memory, as the API has them
    hours = admin_api.get(f"/api/admin/machines/{machine['id']}/metrics").json()["items"]
    assert sum(hour["samples"] for hour in hours) >= 2  # the agent's heartbeat and this one
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    expect(chart.locator("g.series-cpu :is(polyline, circle)")).not_to_have_count(0)
    expect(chart.locator("g.series-memory :is(polyline, circle)")).not_to_have_count(0)
    expect(page.locator("section[aria-labelledby=metricas] details tbody tr")).to_have_count(len(hours))
    page.get_by_role("link", name="Últimos 7 dias").click()
    expect(page.get_by_role("link", name="Últimos 7 dias")).to_have_attribute("aria-current", "true")
    expect(chart).to_be_visible()
    page.goto(f"/admin/dispositivos/{machine['id']}?horas=999")  # a hand-edited period
    expect(page.locator("section[aria-labelledby=metricas] .warning")).to_contain_text("Confira os campos")
    expect(inventory).to_contain_text(after["hash"][:12])  # the rest of the page as usual


def test_reset_agent_asks_first_and_revokes_the_token(page, browser, system, admin_api, machine):
    open_device(page, machine)
    dialog = page.locator("#dialogo-resetar")
    page.get_by_role("link", name="Resetar agente").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("link", name="Cancelar").click()
    expect(dialog).to_be_hidden()
    assert http_heartbeat(system, machine["token"]).status_code == 202  # cancelling changed nothing

    # without JavaScript the same control is a link that renders the confirmation open
    plain = browser.new_context(base_url=system.base_url, java_script_enabled=False)
    try:
        no_script = plain.new_page()
        sign_in(no_script, ADMIN_EMAIL, ADMIN_PASSWORD)
        no_script.goto(f"/admin/dispositivos/{machine['id']}")
        expect(no_script.locator("#dialogo-resetar")).to_be_hidden()
        no_script.get_by_role("link", name="Resetar agente").click()
        no_script.wait_for_url("**?confirmar=resetar")
        expect(no_script.locator("#dialogo-resetar")).to_be_visible()
        no_script.locator("#dialogo-resetar").get_by_role("link", name="Cancelar").click()
        no_script.wait_for_url(f"**/admin/dispositivos/{machine['id']}")
        expect(no_script.locator("#dialogo-resetar")).to_be_hidden()
    finally:
        plain.close()
    assert http_heartbeat(system, machine["token"]).status_code == 202

    page.get_by_role("link", name="Resetar agente").click()
    dialog.get_by_role("button", name="Resetar agente").click()
    expect(page.get_by_role("status")).to_have_text(
        "Agente resetado: 1 token(s) revogado(s). Registre o agente de novo na máquina.")
    refused = http_heartbeat(system, machine["token"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token", refused.text


def test_the_shipped_agent_s_machine_says_it_does_not_apply_usb_policies(page, admin_api, machine):
    open_device(page, machine)
    usb = page.locator("section[aria-labelledby=usb]")
    expect(usb.locator(".chip")).to_have_text("Não suportado por este agente")
    expect(usb.get_by_role("button", name="Pedir política")).to_have_count(0)
    assert machine_view(admin_api, machine["id"])["usb_policy_supported"] is False
    refused = admin_api.request("PUT", f"/api/admin/machines/{machine['id']}/usb-policy", json={"mode": "BLOCK"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "usb_policy_unsupported", refused.text


@pytest.fixture
def usb_capable_machine(system, admin_api) -> dict:
    """A machine whose agent (not the shipped one) said it applies USB policies, registered
    and heartbeating through the API as such an agent would."""
    company = new_company(admin_api, "usb")
    hostname = f"usb-{uuid.uuid4().hex[:6]}"
    registered = requests.post(f"{system.base_url}/api/machines/register", timeout=10, json={
        "provisioning_code": company["provisioning_code"], "hostname": hostname,
        "os": {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "AMD64"},
        "mac_addresses": ["3c:52:82:" + ":".join(uuid.uuid4().hex[i:i + 2] for i in (0, 2, 4))],
        "serial_numbers": [f"SN{uuid.uuid4().hex[:10].upper()}"], "capabilities": ["usb_policy"],
        "collaborator": {"email": f"usb-{uuid.uuid4().hex[:8]}@console.test", "name": "Uma Pessoa"}})
    assert registered.status_code == 201, registered.text
    enrolment = registered.json()
    assert http_heartbeat(system, enrolment["token"]).status_code == 202
    wait_for(lambda: machine_view(admin_api, enrolment["machine_id"])["last_seen_at"], "the first heartbeat")
    return {"id": enrolment["machine_id"], "token": enrolment["token"], "hostname": hostname}


def test_a_usb_policy_is_pending_until_the_agent_applies_it(page, system, admin_api, usb_capable_machine):
    machine = usb_capable_machine
    open_device(page, machine)
    usb = page.locator("section[aria-labelledby=usb]")
    expect(usb).to_contain_text("Nenhuma política pedida")
    usb.get_by_label("Modo").select_option(label="Bloquear")
    usb.get_by_role("button", name="Pedir política").click()
    expect(page.get_by_role("status")).to_contain_text("Política USB “Bloquear” pedida")
    expect(usb.locator(".chip")).to_have_text("Pendente")
    expect(usb.locator(".chip")).to_have_attribute("data-status", "PENDING")
    policy = machine_view(admin_api, machine["id"])["usb_policy"]
    assert (policy["mode"], policy["status"]) == ("BLOCK", "PENDING")

    acknowledged = http_heartbeat(system, machine["token"], usb_policy_ack={"mode": "BLOCK"})
    assert acknowledged.status_code == 202, acknowledged.text
    wait_for(lambda: machine_view(admin_api, machine["id"])["usb_policy"]["status"] == "APPLIED",
             "the agent's acknowledgement")
    page.reload()
    expect(usb.locator(".chip")).to_have_text("Aplicada")
    expect(usb).to_contain_text("Confirmada pelo agente em")


def test_link_a_user_by_email_remove_it_and_adjust_access(page, admin_api, make_person, machine):
    open_device(page, machine)
    links = page.locator("section[aria-labelledby=vinculados]")
    expect(links).to_contain_text("Nenhum usuário vinculado além do principal.")
    # an email nobody has is refused: linking never creates a person
    links.get_by_label("E-mail do usuário a vincular").fill(f"ninguem-{uuid.uuid4().hex[:8]}@console.test")
    links.get_by_role("button", name="Vincular").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Nenhum usuário com este e-mail: cadastre a pessoa antes de vinculá-la.")
    expect(links.locator("ul.linked-users li")).to_have_count(0)

    _, linked_email, _ = make_person("collaborator")
    links = page.locator("section[aria-labelledby=vinculados]")
    links.get_by_label("E-mail do usuário a vincular").fill(linked_email)
    links.get_by_role("button", name="Vincular").click()
    expect(page.get_by_role("status")).to_have_text(f"{linked_email} agora está vinculado a este dispositivo.")
    expect(links.locator("ul.linked-users li")).to_have_count(1)
    expect(links).to_contain_text(linked_email)
    assert [user["email"] for user in machine_view(admin_api, machine["id"])["linked_users"]] == [linked_email]

    # the principal user is not a link: a readable refusal, the page as it was
    links.get_by_label("E-mail do usuário a vincular").fill(machine["email"])
    links.get_by_role("button", name="Vincular").click()
    expect(page.get_by_role("alert")).to_have_text("Esta pessoa já é o usuário vinculado principal do dispositivo.")

    links.get_by_role("button", name="Remover o vínculo de").click()
    expect(page.get_by_role("status")).to_have_text("Vínculo removido.")
    expect(links.locator("ul.linked-users li")).to_have_count(0)
    assert machine_view(admin_api, machine["id"])["linked_users"] == []

    access = page.locator("section[aria-labelledby=acesso]")
    expect(access.get_by_label("E-mail do usuário vinculado")).to_have_value(machine["email"])
    manager_email = f"gestor-{uuid.uuid4().hex[:8]}@console.test"
    access.get_by_label("E-mail do usuário vinculado").fill(manager_email)
    access.get_by_label("Nome (só para uma pessoa nova)").fill("Gil Gestor")
    access.get_by_label("Perfil de acesso").select_option(label="Gestor")
    access.get_by_role("button", name="Ajustar acesso").click()
    expect(page.get_by_role("status")).to_have_text("Acesso ajustado.")
    view = machine_view(admin_api, machine["id"])
    assert (view["assigned_user"]["email"], view["assigned_user"]["name"], view["persona"]) == \
        (manager_email, "Gil Gestor", "manager")
    summary = page.locator("section[aria-labelledby=resumo]")
    expect(summary).to_contain_text("Gil Gestor")
    expect(summary).to_contain_text("Gestor")

    access.get_by_label("E-mail do usuário vinculado").fill("sem-arroba")
    access.evaluate("section => section.querySelector('form').noValidate = true")  # the server's check
    access.get_by_role("button", name="Ajustar acesso").click()
    expect(page.get_by_role("alert")).to_contain_text("Confira os campos")
    assert machine_view(admin_api, machine["id"])["assigned_user"]["email"] == manager_email


def test_an_agent_reads_the_device_page_without_the_admin_controls(page, system, make_person, machine):
    _, email, _ = make_person("agent")
    sign_in(page, email)
    page.goto(f"/admin/dispositivos/{machine['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(machine["hostname"])
    expect(page.get_by_role("heading", name="Inventário atual")).to_be_visible()
    for control in ("Resetar agente", "Ajustar acesso"):
        expect(page.get_by_role("heading", name=control)).to_have_count(0)
    expect(page.get_by_role("button", name="Pedir política")).to_have_count(0)
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    answer = page.request.post(f"/admin/dispositivos/{machine['id']}/resetar",
                               form={"csrf": csrf, "voltar": "/"}, max_redirects=0)
    assert answer.status == 403 and "Seu perfil não tem acesso" in answer.text()
    assert http_heartbeat(system, machine["token"]).status_code == 202  # the agent still works
    unknown = page.request.get("/admin/dispositivos/00000000-0000-0000-0000-000000000000")
    assert unknown.status == 404 and "Dispositivo não encontrado." in unknown.text()


def test_the_device_pages_fit_a_phone(page, machine, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    open_device(page, machine)
    for path in ("/admin/dispositivos", f"/admin/dispositivos/{machine['id']}",
                 f"/admin/dispositivos/{machine['id']}?confirmar=resetar"):
        page.goto(path)
        page.screenshot(path=str(tmp_path / (path.strip("/").replace("/", "_").replace("?", "_") + ".png")),
                        full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        for part in page.locator("details").all():  # folded parts too: they must fit once opened
            part.evaluate("details => details.open = true")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
