"""Tickets in the browser: a collaborator opens one and comments, staff take it through its
status machine with the dialogs, internal comments stay internal, the default filter
follows the person, live chat shows new messages without a reload."""
from __future__ import annotations

import json
import re
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_console_devices import new_company, run_agent

BADGE_COLOURS = {  # console.css: the seed's grey, blue, yellow and green
    "Pendente": "rgb(107, 114, 128)", "Em andamento": "rgb(29, 78, 216)",
    "Pausado": "rgb(138, 97, 0)", "Resolvido": "rgb(6, 118, 71)",
}


def open_ticket_as(page, subject: str, description: str) -> str:
    page.get_by_role("link", name="Novo chamado").click()
    expect(page.get_by_label("Fila")).to_have_value(re.compile(".+"))
    assert page.get_by_label("Fila").locator("option:checked").inner_text() == "Chamados"
    page.get_by_label("Assunto").fill(subject)
    page.get_by_label("Descrição").fill(description)
    page.get_by_role("button", name="Abrir chamado").click()
    expect(page.get_by_role("status")).to_contain_text("aberto")
    return page.url


def expect_badge(page, label: str) -> None:
    badge = page.locator("h1 .badge")
    expect(badge).to_have_text(label)
    assert badge.evaluate("element => getComputedStyle(element).color") == BADGE_COLOURS[label]


def test_a_ticket_from_opening_to_reopening(page, context, browser, system, make_person):
    collaborator, collaborator_email, _ = make_person("collaborator", name="Maria Colaboradora")
    agent, agent_email, _ = make_person("agent", name="Ana Atendente")
    subject = f"Outlook não abre {uuid.uuid4().hex[:6]}"

    # the collaborator opens the ticket and comments (no responsible person needed for her)
    sign_in(page, collaborator_email)
    ticket_url = open_ticket_as(page, subject, "Desde ontem o Outlook fecha sozinho.")
    expect(page.locator("h1 .ticket-subject")).to_have_text(subject)
    expect_badge(page, "Pendente")
    page.get_by_label("Novo comentário").fill("Já reiniciei o computador.")
    page.get_by_role("button", name="Comentar").click()
    expect(page.locator(".comment-body")).to_have_text(["Já reiniciei o computador."])

    # staff: the comment box stays disabled until someone is responsible
    staff_context = browser.new_context(base_url=system.base_url, viewport={"width": 1280, "height": 900})
    try:
        staff = staff_context.new_page()
        sign_in(staff, agent_email)
        staff.goto(ticket_url)
        expect(staff.get_by_label("Novo comentário")).to_be_disabled()
        staff.get_by_role("button", name="Assumir").click()
        expect(staff.locator("dd.assignee")).to_have_text("Ana Atendente")
        expect(staff.get_by_label("Novo comentário")).to_be_enabled()

        staff.get_by_role("button", name="Iniciar", exact=True).click()
        expect_badge(staff, "Em andamento")

        # Pausar asks for the reason in a dialog
        staff.get_by_role("link", name="Pausar").click()
        dialog = staff.locator("dialog#pausar")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Motivo da pausa").select_option(label="Aguardando terceiros")
        dialog.get_by_role("button", name="Pausar").click()
        expect_badge(staff, "Pausado")
        expect(staff.locator(".timeline")).to_contain_text("pausou: Aguardando terceiros")

        # Encerrar: Cancelar leaves it open; Limpar mensagem empties the box; then it closes
        staff.get_by_role("link", name="Encerrar").click()
        closing = staff.locator("dialog#encerrar")
        closing.get_by_label("Mensagem de encerramento (opcional)").fill("rascunho")
        closing.get_by_role("link", name="Cancelar").click()
        expect(closing).to_be_hidden()
        expect_badge(staff, "Pausado")
        staff.get_by_role("link", name="Encerrar").click()
        closing.get_by_role("button", name="Limpar mensagem").click()
        expect(closing.get_by_label("Mensagem de encerramento (opcional)")).to_have_value("")
        closing.get_by_label("Mensagem de encerramento (opcional)").fill("Perfil do Outlook recriado.")
        closing.get_by_role("button", name="Encerrar chamado").click()
        expect_badge(staff, "Resolvido")
        expect(staff.locator(".timeline")).to_contain_text("encerrou o chamado: Perfil do Outlook recriado.")

        staff.get_by_role("button", name="Reabrir").click()
        expect_badge(staff, "Pendente")
    finally:
        staff_context.close()

    # the collaborator sees the same story, from her side
    page.goto(ticket_url)
    expect_badge(page, "Pendente")
    expect(page.locator(".timeline")).to_contain_text("reabriu o chamado")
    assert page.get_by_role("button", name="Iniciar", exact=True).count() == 0  # staff actions only


def test_internal_comments_never_reach_the_collaborator(page, browser, system, make_person):
    _, collaborator_email, collaborator_api = make_person("collaborator")
    _, agent_email, _ = make_person("agent")
    created = collaborator_api.post("/api/tickets", json={"subject": "VPN caiu", "description": "..."})
    assert created.status_code == 201, created.text
    reference = created.json()["reference"]

    sign_in(page, agent_email)
    page.goto(f"/chamados/{reference}")
    page.get_by_role("button", name="Assumir").click()
    page.get_by_label("Novo comentário").fill("Nota interna: senha do roteador trocada")
    page.get_by_label("Interno", exact=True).check()
    page.get_by_role("button", name="Comentar").click()
    page.get_by_label("Novo comentário").fill("Estamos verificando a VPN.")
    page.get_by_role("button", name="Comentar").click()
    expect(page.locator(".comment-body")).to_have_count(2)
    expect(page.locator(".comment-INTERNAL .comment-body")).to_have_text("Nota interna: senha do roteador trocada")

    page.get_by_role("button", name="Sair").click()
    sign_in(page, collaborator_email)
    page.goto(f"/chamados/{reference}")
    expect(page.locator(".comment-body")).to_have_text(["Estamos verificando a VPN."])
    assert "senha do roteador" not in page.content()
    assert "(interno)" not in page.locator(".timeline").inner_text()


def test_the_default_filter_follows_the_person_to_another_browser(page, browser, system, make_person, admin_api):
    _, agent_email, agent_api = make_person("agent")
    paused = agent_api.post("/api/tickets", json={"subject": f"pausado {uuid.uuid4().hex[:6]}"}).json()
    pending = agent_api.post("/api/tickets", json={"subject": f"pendente {uuid.uuid4().hex[:6]}"}).json()
    assert agent_api.post(f"/api/tickets/{paused['id']}/start", json={}).status_code == 200
    assert agent_api.post(f"/api/tickets/{paused['id']}/pause",
                          json={"reason": "NO_CONTACT"}).status_code == 200

    sign_in(page, agent_email)
    page.goto("/chamados")
    page.locator(".filters").get_by_label("Status").select_option(label="Pausado")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.locator("table.tickets")).to_contain_text(paused["subject"])
    expect(page.locator("table.tickets")).not_to_contain_text(pending["subject"])
    page.get_by_role("button", name="Salvar filtro como padrão").click()
    expect(page.get_by_role("status")).to_have_text("Filtro salvo como padrão.")

    other = browser.new_context(base_url=system.base_url)
    try:
        elsewhere = other.new_page()
        sign_in(elsewhere, agent_email)
        elsewhere.goto("/chamados")
        expect(elsewhere.locator("#filtro-padrao")).to_be_visible()
        expect(elsewhere.locator(".filters").get_by_label("Status")).to_have_value("PAUSED")
        expect(elsewhere.locator("table.tickets")).to_contain_text(paused["subject"])
        expect(elsewhere.locator("table.tickets")).not_to_contain_text(pending["subject"])
        elsewhere.get_by_role("button", name="Limpar padrão").click()
        expect(elsewhere.get_by_role("status")).to_have_text("Filtro padrão removido.")
        expect(elsewhere.locator("table.tickets")).to_contain_text(pending["subject"])
    finally:
        other.close()
    assert agent_api.get("/api/me/ticket-filter").json() == {"filters": {}, "updated_at": None}


def test_markup_in_a_subject_is_shown_as_text(page, make_person):
    _, collaborator_email, collaborator_api = make_person("collaborator")
    subject = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    reference = collaborator_api.post("/api/tickets", json={"subject": subject}).json()["reference"]
    alerts = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    sign_in(page, collaborator_email)
    expect(page.locator("table.tickets").first).to_contain_text(subject)  # the dashboard
    page.goto(f"/chamados/{reference}")
    expect(page.locator("h1 .ticket-subject")).to_have_text(subject)
    assert page.locator("h1 script, h1 img").count() == 0
    assert alerts == []


def test_live_chat_messages_appear_without_a_reload(page, browser, system, admin_api, make_person,
                                                  tmp_path):
    _, collaborator_email, collaborator_api = make_person("collaborator")
    _, agent_email, agent_api = make_person("agent")
    # the chat talks to the collaborator's machine: enrolled by the real agent, as on a desktop
    company = new_company(admin_api, "chat")
    state_dir = tmp_path / "agent"
    run_agent(system, state_dir, "register", "--gateway", system.base_url, "--code",
              company["provisioning_code"], "--email", collaborator_email, "--name", "Colaboradora")
    machine_id = json.loads((state_dir / "state.json").read_text())["machine_id"]
    without = collaborator_api.post("/api/tickets", json={"subject": "Sem máquina"}).json()
    ticket = collaborator_api.post("/api/tickets", json={"subject": "Ajuda ao vivo",
                                                         "machine_id": machine_id}).json()
    me = agent_api.get("/api/me").json()["id"]
    for each in (without, ticket):
        assert agent_api.post(f"/api/tickets/{each['id']}/assign", json={"assignee_id": me}).status_code == 200

    sign_in(page, agent_email)
    # a ticket without a machine offers no chat, and says why
    page.goto(f"/chamados/{without['reference']}")
    expect(page.locator("#chat")).to_contain_text("este chamado não tem um")
    assert page.get_by_role("button", name="Iniciar chat ao vivo").count() == 0
    page.goto(f"/chamados/{ticket['reference']}")
    page.get_by_role("button", name="Iniciar chat ao vivo").click()
    expect(page.get_by_role("status")).to_have_text("Chat iniciado.")

    other = browser.new_context(base_url=system.base_url)
    try:
        requester = other.new_page()
        sign_in(requester, collaborator_email)
        requester.goto(f"/chamados/{ticket['reference']}")
        expect(requester.locator(".chat-log li")).to_have_count(0)
        page.get_by_label("Mensagem", exact=True).fill("Olá! Pode abrir o Outlook?")
        page.get_by_role("button", name="Enviar").click()
        # no reload on the requester's side: console.js polls the chat
        expect(requester.locator(".chat-log")).to_contain_text("Olá! Pode abrir o Outlook?", timeout=15_000)
    finally:
        other.close()


def test_the_list_pages_forward_and_back(page, make_person):
    _, agent_email, agent_api = make_person("agent")
    word = f"paginado{uuid.uuid4().hex[:6]}"
    for number in range(27):
        assert agent_api.post("/api/tickets", json={"subject": f"{word} {number:02d}"}).status_code == 201
    sign_in(page, agent_email)
    page.goto(f"/chamados?q={word}")
    rows = page.locator("table.tickets tbody tr")
    expect(rows).to_have_count(25)
    assert page.get_by_role("link", name="Página anterior").count() == 0
    page.get_by_role("link", name="Próxima página").click()
    expect(rows).to_have_count(2)
    expect(page.locator("table.tickets")).to_contain_text(f"{word} 00")  # the oldest, last
    assert page.get_by_role("link", name="Próxima página").count() == 0
    page.get_by_role("link", name="Página anterior").click()
    expect(rows).to_have_count(25)
    expect(page.locator("table.tickets")).to_contain_text(f"{word} 26")  # the newest, first


def test_the_dashboard_refreshes_itself(page, make_person):
    _, agent_email, agent_api = make_person("agent")
    sign_in(page, agent_email)
    page.clock.install()  # the page's timers run when the test says so
    page.goto("/")
    counts = page.locator(".count-PENDING .count-number")
    before = int(counts.inner_text())
    subject = f"Novo enquanto o painel está aberto {uuid.uuid4().hex[:6]}"
    assert agent_api.post("/api/tickets", json={"subject": subject}).status_code == 201
    page.clock.run_for(31_000)  # the dashboard asks every 30 s
    expect(page.locator("#painel")).to_contain_text(subject)
    expect(counts).to_have_text(str(before + 1))
    assert page.get_by_role("heading", name="Últimos chamados").count() == 1  # swapped, not nested
