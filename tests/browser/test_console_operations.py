"""Admin ▸ Saúde and Relatórios: the health page shows every section to staff and still
renders with a warning when a service is down; collaborators are refused; staff export
tickets to CSV, see the export done and download it."""
from __future__ import annotations

import csv
import time
import uuid

import requests

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, api_get, sign_in

SECTIONS = ("#saude-chamados", "#saude-cadastros", "#saude-heartbeats", "#saude-retencao",
            "#saude-tarefas")
PHONE = {"width": 390, "height": 844}


def health_snapshot(admin_api) -> dict:
    return api_get(admin_api, "/api/admin/health")


def figures(page, section: str) -> list[int]:
    return [int(text) for text in page.locator(f"{section} dd").all_inner_texts()]


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_health_page_shows_every_section_to_staff(page, admin_api):
    created = admin_api.post("/api/tickets", json={"subject": "Saúde: um chamado", "description": "d"})
    assert created.status_code == 201, created.text
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    answer = page.goto("/admin/health")
    assert answer.status == 200
    snapshot = health_snapshot(admin_api)

    assert page.locator(".warning").count() == 0
    for section in SECTIONS:
        assert page.locator(f"{section} h2").is_visible()
    assert page.locator("#saude-chamados dt").all_inner_texts() == \
        ["Pendente", "Em andamento", "Pausado", "Resolvido"]
    assert figures(page, "#saude-chamados") == list(snapshot["tickets"].values())
    assert snapshot["tickets"]["PENDING"] >= 1
    registrations = snapshot["registrations"]
    assert figures(page, "#saude-cadastros") == \
        [registrations["companies"], registrations["people"], registrations["machine_users"]]
    assert page.locator("#saude-heartbeats dt").all_inner_texts() == \
        ["Online", "Atrasado", "Offline há menos de 24 h", "Offline há mais de 24 h", "nunca"]
    # the buckets' edges are the status thresholds (MACHINE_ONLINE_SECONDS, _STALE_SECONDS)
    assert "Online: último sinal há menos de 5 min; atrasado: há menos de 30 min" in \
        page.locator("#saude-heartbeats .hint").inner_text()
    assert figures(page, "#saude-heartbeats") == list(snapshot["heartbeats"]["buckets"].values())

    retention = page.locator("#saude-retencao tbody tr")
    assert retention.count() == len(snapshot["retention"])
    assert "Exportações de relatório" in page.locator("#saude-retencao").inner_text()

    jobs = page.locator("#saude-tarefas tr[data-job]")
    assert [jobs.nth(i).get_attribute("data-job") for i in range(jobs.count())] == \
        [job["name"] for job in snapshot["jobs"]]
    for job in snapshot["jobs"]:
        row = page.locator(f'#saude-tarefas tr[data-job="{job["name"]}"]')
        assert ("Ativa" if job["enabled"] else "Desativada") in row.inner_text()
    runner = page.locator('#saude-tarefas tr[data-job="report-export-runner"]').inner_text()
    assert "Gerar exportações de relatório" in runner and "a cada 15 min" in runner

    page.set_viewport_size(PHONE)
    assert fits_the_width(page)


def test_the_health_page_warns_on_the_jobs_section_when_the_scheduler_is_down(page, system, admin_api):
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    system.stop_service("scheduler")
    try:
        answer = page.goto("/admin/health", timeout=45_000)  # the scheduler's RPC times out first
        assert answer.status == 200
        warning = page.locator("#saude-tarefas .warning")
        assert warning.is_visible()
        assert "scheduler" in warning.inner_text()
        assert page.locator("#saude-tarefas tr[data-job]").count() == 0
        for section in SECTIONS[:-1]:  # the other sections still show their numbers
            assert page.locator(f"{section} .warning").count() == 0
            assert page.locator(f"{section} h2").is_visible()
        assert figures(page, "#saude-chamados") and figures(page, "#saude-cadastros")
        assert page.locator("#saude-retencao tbody tr").count() > 0
    finally:
        system.start_service("scheduler")
        wait_until_the_scheduler_answers(system, admin_api)


def wait_until_the_scheduler_answers(system, admin_api, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            up = requests.get(system.metrics_url("scheduler"), timeout=5).status_code == 200
        except requests.RequestException:
            up = False
        if up and admin_api.get("/api/admin/health").status_code == 200:  # its RPC answers
            return
        time.sleep(0.5)
    raise AssertionError("the scheduler did not come back:\n" + system.log("scheduler")[-3000:])


def test_a_collaborator_gets_the_403_page_on_health_and_reports(page, context, system, make_person):
    _, email, _ = make_person("collaborator")
    sign_in(page, email)
    menu = page.locator("nav .menu").inner_text()
    assert "Saúde" not in menu and "Relatórios" not in menu
    # another tab of the same session: chromium logs every 403 document as a console error,
    # which the `page` fixture rightly counts as a defect everywhere else
    refused = context.new_page()
    for path in ("/admin/health", "/relatorios"):
        answer = refused.goto(path)
        assert answer.status == 403, path
        assert refused.get_by_text("Seu perfil não tem acesso a esta página.").is_visible()
    answer = context.request.post(f"{system.base_url}/relatorios", max_redirects=0,
                                  form={"csrf": page.locator("form.signout input[name=csrf]").input_value()})
    assert answer.status == 403  # the form's action refuses as its page does


def test_staff_export_tickets_to_csv_and_download_it(page, admin_api):
    marker = uuid.uuid4().hex[:8]
    company = admin_api.post("/api/admin/companies",
                             json={"name": f"Relatório {marker}", "apelido": f"rel-{marker}"})
    assert company.status_code == 201, company.text
    subjects = {f"Exportar {marker} {n}" for n in range(3)}
    for subject in subjects:
        created = admin_api.post("/api/tickets", json={"subject": subject, "description": "d",
                                                       "company_id": company.json()["id"]})
        assert created.status_code == 201, created.text
    other = admin_api.post("/api/tickets", json={"subject": f"Fora do filtro {marker}", "description": "d"})
    assert other.status_code == 201, other.text

    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto("/relatorios")
    page.get_by_label("Empresa").select_option(label=f"Relatório {marker}")
    # a spreadsheet set to Portuguese (Brazil) splits columns on ";": the console's default
    assert page.get_by_label("Separador").input_value() == ";"
    page.get_by_role("button", name="Gerar CSV").click()
    page.wait_for_url("**/relatorios")
    assert page.get_by_role("status").inner_text() == \
        f"Exportação pronta: {len(subjects)} chamado(s). Baixe o CSV na lista abaixo."

    newest = page.locator("table.exports tbody tr").first
    assert newest.locator("[data-status]").inner_text() == "Concluída"
    assert f"Empresa: Relatório {marker}" in newest.inner_text()
    export_id = newest.get_attribute("data-export")
    listed = admin_api.get("/api/reports/exports").json()["items"][0]
    assert listed["id"] == export_id and listed["status"] == "DONE" and listed["rows"] == len(subjects)
    assert listed["delimiter"] == ";"

    with page.expect_download() as download_info:
        newest.get_by_role("link", name="Baixar CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), "rb") as handle:
        assert handle.read(3) == b"\xef\xbb\xbf"  # UTF-8 announced to the spreadsheet
    with open(download.path(), newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert {row["subject"] for row in rows} == subjects

    page.set_viewport_size(PHONE)
    page.reload()
    assert fits_the_width(page)
    assert page.get_by_role("button", name="Gerar CSV").is_visible()


def test_a_refused_export_and_an_unknown_file_read_as_messages(page, context, system):
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto("/relatorios")
    csrf = page.locator("form.report-form input[name=csrf]").input_value()
    # a date no browser's date field sends: the API's schema refuses it, the form says why
    answer = context.request.post(f"{system.base_url}/relatorios", max_redirects=0, form={
        "csrf": csrf, "voltar": "/relatorios", "created_from": "31/12/2026"})
    assert answer.status == 303 and answer.headers["location"] == "/relatorios"
    page.goto("/relatorios")
    assert page.get_by_role("alert").inner_text().startswith("Confira os campos")

    missing = context.request.get(f"{system.base_url}/relatorios/{uuid.uuid4()}/download")
    assert missing.status == 404
    assert "Exportação não encontrada." in missing.text()
