"""Admin ▸ Empresas and Admin ▸ Usuários in the browser: companies (create, edit, the
provisioning code), users (the type tabs, search, pages, editing, a new password, the
machines linked to a person, merging two accounts), and who sees which forms."""
from __future__ import annotations

import random
import re
import uuid
from contextlib import contextmanager

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, PERSON_PASSWORD, api_get, sign_in
from tests.harness import Client, eventually

PHONE = {"width": 390, "height": 844}


# --- helpers ----------------------------------------------------------------------------

def tag() -> str:
    return uuid.uuid4().hex[:8]


def section(page, heading: str):
    """The page's <section> under this heading (forms are found by their section)."""
    return page.locator("section").filter(has=page.get_by_role("heading", name=heading, exact=True))


def fact(page, term: str) -> str:
    """The value next to a term of the page's facts list."""
    return page.locator(f"xpath=//dl[contains(@class, 'facts')]/dt[normalize-space()='{term}']"
                        "/following-sibling::dd[1]").inner_text().strip()


def tab(page, name: str):
    return page.locator("nav.tabs").get_by_role("link", name=name, exact=True)


def filters(page):
    return page.locator("form.filters")


def notice(page) -> str:
    return page.locator("p.flash").inner_text().strip()


def new_company(admin_api, name: str | None = None) -> dict:
    apelido = f"empresa-{tag()}"
    response = admin_api.post("/api/admin/companies", json={"name": name or apelido.title(), "apelido": apelido})
    assert response.status_code == 201, response.text
    return response.json()


def api_company(admin_api, company_id: str) -> dict:
    return api_get(admin_api, f"/api/admin/companies/{company_id}")


def api_user(admin_api, user_id: str) -> dict:
    return api_get(admin_api, f"/api/admin/users/{user_id}")


def register_machine(system, company: dict, hostname: str, email: str, name: str) -> dict:
    """A machine enrolled as its agent would: it brings its own machine user, and the person
    given becomes its assigned user."""
    mac = "3c:52:82:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))
    response = Client(system.base_url).post("/api/machines/register", json={
        "provisioning_code": company["provisioning_code"], "hostname": hostname,
        "os": {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"},
        "mac_addresses": [mac], "serial_numbers": [f"BR{tag().upper()}"],
        "collaborator": {"email": email, "name": name}})
    assert response.status_code == 201, response.text
    return response.json()


def listed_names(page) -> list[str]:
    return [name.strip() for name in page.locator("table.users tbody td:first-child a").all_inner_texts()]


@contextmanager
def page_expecting_error_statuses(context):
    """A page for addresses that answer an error status on purpose (403). Chromium logs the
    status of such a document as a console error ("Failed to load resource"), which the
    `page` fixture would take for a defect; here only those lines are expected, and any
    other error (a script error, a CSP violation, a missing asset) still fails the test."""
    opened = context.new_page()
    documents, errors = set(), []
    opened.on("response", lambda answer: documents.add(answer.url)
              if answer.request.is_navigation_request() else None)
    opened.on("pageerror", lambda error: errors.append((str(error), None)))
    opened.on("console", lambda message: errors.append((message.text, message.location.get("url")))
              if message.type == "error" else None)
    yield opened
    unexpected = [text for text, url in errors
                  if not (text.startswith("Failed to load resource") and url in documents)]
    assert not unexpected, f"errors in the browser: {unexpected}"
    opened.close()


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# --- Admin ▸ Empresas ---------------------------------------------------------------------

def test_an_admin_creates_a_company_edits_its_apelido_and_rotates_its_code(page, admin_api):
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto("/admin/empresas")
    name, apelido = f"Padaria {tag()}", f"padaria-{tag()}"
    form = section(page, "Nova empresa")
    form.get_by_label("Nome").fill(name)
    form.get_by_label("Apelido").fill(apelido)
    form.get_by_role("button", name="Criar empresa").click()

    assert notice(page) == f"Empresa “{name}” criada."
    assert page.get_by_role("heading", name=name, level=1).is_visible()
    company_id = re.search(r"/admin/empresas/([0-9a-f-]{36})$", page.url).group(1)
    assert fact(page, "Apelido") == apelido
    first_code = page.locator(".provisioning-code").inner_text().strip()
    assert api_company(admin_api, company_id)["provisioning_code"] == first_code

    renamed = f"padaria-centro-{tag()}"
    form = section(page, "Editar empresa")
    form.get_by_label("Apelido").fill(renamed)
    form.get_by_role("button", name="Salvar").click()
    assert notice(page) == "Empresa atualizada."
    assert fact(page, "Apelido") == renamed
    assert api_company(admin_api, company_id)["apelido"] == renamed

    form = section(page, "Editar empresa")  # the API's rule, in the reader's words
    form.get_by_label("Apelido").fill("Não Vale")
    form.get_by_role("button", name="Salvar").click()
    assert page.get_by_role("alert").inner_text().startswith("Confira os campos (Apelido:")
    assert fact(page, "Apelido") == renamed

    page.get_by_role("button", name="Gerar novo código").click()
    assert notice(page) == "Novo código gerado. O anterior não cadastra mais dispositivos."
    second_code = page.locator(".provisioning-code").inner_text().strip()
    assert second_code and second_code != first_code
    assert api_company(admin_api, company_id)["provisioning_code"] == second_code

    page.goto(f"/admin/empresas?q={renamed}")
    row = page.locator("table.companies tbody tr")
    assert row.count() == 1 and renamed in row.inner_text() and name in row.inner_text()

    form = section(page, "Nova empresa")  # a taken apelido: back to the list with the reason
    form.get_by_label("Nome").fill("Outra")
    form.get_by_label("Apelido").fill(renamed)
    form.get_by_role("button", name="Criar empresa").click()
    assert page.get_by_role("alert").inner_text() == "Este apelido já está em uso."
    assert page.url.endswith("/admin/empresas")


# --- Admin ▸ Usuários -----------------------------------------------------------------------

def test_a_manager_edits_a_users_name_role_and_company(page, context, make_person, admin_api):
    company = new_company(admin_api, f"Oficina {tag()}")
    _, manager_email, _ = make_person("manager")
    person, _, _ = make_person("collaborator")
    sign_in(page, manager_email)
    page.goto("/admin/usuarios")
    filters(page).get_by_label("Nome ou e-mail").fill(person["email"])
    filters(page).get_by_role("button", name="Filtrar").click()
    page.get_by_role("link", name=person["name"]).click()
    assert page.get_by_role("heading", name=person["name"], level=1).is_visible()

    new_name = f"Renomeada {tag()}"
    form = section(page, "Editar usuário")
    form.get_by_label("Nome").fill(new_name)
    form.get_by_label("Perfil").select_option(label="Atendente")
    form.get_by_label("Empresa").select_option(label=company["name"])
    form.get_by_role("button", name="Salvar").click()

    assert notice(page) == "Usuário atualizado."
    assert page.get_by_role("heading", name=new_name, level=1).is_visible()
    assert fact(page, "Perfil") == "Atendente"
    assert fact(page, "Empresa") == company["name"]
    stored = api_user(admin_api, person["id"])
    assert (stored["name"], stored["role"], stored["company_id"]) == (new_name, "agent", company["id"])

    form = section(page, "Editar usuário")  # "Sem empresa" takes the company away
    form.get_by_label("Empresa").select_option(label="Sem empresa")
    form.get_by_role("button", name="Salvar").click()
    assert fact(page, "Empresa") == "Sem empresa"
    assert api_user(admin_api, person["id"])["company_id"] is None

    # a manager may not make an admin: the API refuses, the page says why
    form = section(page, "Editar usuário")
    form.get_by_label("Perfil").select_option(label="Administrador")
    form.get_by_role("button", name="Salvar").click()
    assert page.get_by_role("alert").inner_text() == "Seu perfil não pode fazer isso."
    assert api_user(admin_api, person["id"])["role"] == "agent"
    # and merging is the admins' alone
    assert not section(page, "Unificar contas").count()
    with page_expecting_error_statuses(context) as other_page:
        assert other_page.goto(f"/admin/usuarios/{person['id']}/unificar").status == 403


def test_a_new_password_lets_the_person_sign_in_with_it(page, make_person, admin_api, system):
    person, email, client = make_person("collaborator")
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"/admin/usuarios/{person['id']}")
    form = section(page, "Redefinir senha")
    form.get_by_label("Nova senha").fill("curta")
    form.get_by_role("button", name="Definir nova senha").click()
    assert page.get_by_role("alert").inner_text().startswith("Confira os campos (Senha:")
    assert client.get("/api/me").status_code == 200  # nothing changed

    new_password = f"nova-senha-{tag()}"
    form = section(page, "Redefinir senha")
    form.get_by_label("Nova senha").fill(new_password)
    form.get_by_role("button", name="Definir nova senha").click()
    assert notice(page) == f"Nova senha definida para “{person['name']}”. As sessões abertas foram encerradas."
    assert client.get("/api/me").status_code == 401  # the old session ended
    assert Client(system.base_url).post("/api/auth/sign-in", json={
        "email": email, "password": PERSON_PASSWORD}).status_code == 401

    page.get_by_role("button", name="Sair").click()
    sign_in(page, email, new_password)
    assert page.locator(".who").inner_text() == "Colaborador"


def test_the_type_tabs_show_people_machines_or_both(page, admin_api, system):
    company = new_company(admin_api)
    marker = tag()
    hostname, person_name = f"pc-{marker}", f"Pessoa {marker}"
    register_machine(system, company, hostname, f"pessoa-{marker}@console.test", person_name)
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto("/admin/usuarios")
    assert tab(page, "Todos").get_attribute("aria-current") == "true"
    filters(page).get_by_label("Nome ou e-mail").fill(marker)
    filters(page).get_by_role("button", name="Filtrar").click()
    assert sorted(listed_names(page)) == sorted([person_name, hostname])

    tab(page, "Pessoas").click()  # the search is kept
    assert tab(page, "Pessoas").get_attribute("aria-current") == "true"
    assert listed_names(page) == [person_name]
    assert page.locator("table.users tbody td").nth(2).inner_text() == "Colaborador"

    tab(page, "Dispositivos").click()
    assert "type=machines" in page.url
    assert listed_names(page) == [hostname]
    assert page.locator("table.users tbody td").nth(2).inner_text() == "Dispositivo"

    tab(page, "Todos").click()
    filters(page).get_by_label("Empresa").select_option(label=company["name"])
    filters(page).get_by_label("Nome ou e-mail").fill("")
    filters(page).get_by_role("button", name="Filtrar").click()  # the company alone holds both
    assert sorted(listed_names(page)) == sorted([person_name, hostname])
    assert set(page.locator("table.users tbody td:nth-child(4)").all_inner_texts()) == {company["name"]}


def test_the_user_list_pages_by_cursor(page, admin_api):
    marker = tag()
    names = set()
    for index in range(53):
        name = f"Lote {marker} {index:02d}"
        response = admin_api.post("/api/admin/users", json={
            "email": f"lote-{marker}-{index:02d}@console.test", "name": name, "role": "collaborator"})
        assert response.status_code == 201, response.text
        names.add(name)
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"/admin/usuarios?q={marker}")
    first = listed_names(page)
    assert len(first) == 50
    assert not page.get_by_role("link", name="Primeira página").count()
    page.get_by_role("link", name="Próxima página").click()
    rest = listed_names(page)
    assert len(rest) == 3 and set(first) | set(rest) == names
    assert not page.get_by_role("link", name="Próxima página").count()
    page.get_by_role("link", name="Primeira página").click()
    assert listed_names(page) == first


def test_a_persons_page_lists_the_machines_linked_to_them(page, admin_api, system, make_person):
    company = new_company(admin_api)
    marker = tag()
    person, _, _ = make_person("collaborator", company_id=company["id"])
    own = register_machine(system, company, f"mesa-{marker}", person["email"], person["name"])
    other = register_machine(system, company, f"sala-{marker}", f"outra-{marker}@console.test", "Outra Pessoa")
    linked = admin_api.post("/api/admin/devices/links", json={"machine_id": other["machine_id"],
                                                              "email": person["email"]})
    assert linked.status_code == 201, linked.text
    nobody, _, _ = make_person("collaborator")

    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"/admin/usuarios/{person['id']}")
    machines = section(page, "Dispositivos vinculados")
    rows = machines.locator("tbody tr")
    assert rows.count() == 2
    assert [rows.nth(0).locator("td").nth(i).inner_text() for i in (1, 2)] == ["Usuário principal", "Offline"]
    assert f"mesa-{marker}" in rows.nth(0).inner_text()
    assert f"sala-{marker}" in rows.nth(1).inner_text() and "Vinculado" in rows.nth(1).inner_text()
    assert rows.nth(0).get_by_role("link").get_attribute("href") == f"/admin/dispositivos/{own['machine_id']}"

    page.goto(f"/admin/usuarios/{nobody['id']}")
    assert section(page, "Dispositivos vinculados").inner_text().endswith(
        "Nenhum dispositivo vinculado a esta conta.")


def test_merging_two_accounts_goes_through_a_confirmation(page, admin_api, system, make_person):
    company = new_company(admin_api)
    marker = tag()
    leaving, _, leaving_client = make_person("collaborator", name=f"Duplicada {marker}")
    staying, _, _ = make_person("collaborator", name=f"Principal {marker}")
    machine = register_machine(system, company, f"note-{marker}", leaving["email"], leaving["name"])

    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(f"/admin/usuarios/{leaving['id']}")
    merge = section(page, "Unificar contas")
    merge.get_by_label("Nome ou e-mail da conta que fica").fill(staying["email"])
    merge.get_by_role("button", name="Buscar conta").click()
    page.get_by_role("link", name=f"Escolher {staying['name']} ({staying['email']})").click()

    confirmation = page.locator(".merge-confirm")
    text = confirmation.inner_text()
    for named in (leaving["name"], leaving["email"], staying["name"], staying["email"]):
        assert named in text
    assert fact(page, "Conta que deixa de existir").startswith(leaving["name"])
    assert fact(page, "Conta que fica").startswith(staying["name"])
    assert "chamados" in text and "dispositivos" in text and "sessões abertas" in text

    confirmation.get_by_role("link", name="Cancelar").click()  # cancelling changes nothing
    assert page.get_by_role("heading", name=leaving["name"], level=1).is_visible()
    assert api_user(admin_api, leaving["id"])["merged_into_id"] is None
    assert api_user(admin_api, staying["id"])["merged_into_id"] is None
    assert leaving_client.get("/api/me").status_code == 200

    page.goto(f"/admin/usuarios/{leaving['id']}/unificar?destino={staying['id']}")
    page.get_by_role("button", name="Unificar contas").click()
    assert notice(page) == f"“{leaving['name']}” foi unificada em “{staying['name']}”."
    assert page.get_by_role("heading", name=staying["name"], level=1).is_visible()
    assert api_user(admin_api, leaving["id"])["merged_into_id"] == staying["id"]
    assert leaving_client.get("/api/me").status_code == 401

    def machine_moved():  # the devices service learns of the merge by an event
        page.reload()
        return section(page, "Dispositivos vinculados").get_by_role("link", name=f"note-{marker}").count()
    assert eventually(machine_moved), "the merged account's machine did not move"
    assert machine["machine_id"] in section(page, "Dispositivos vinculados").get_by_role("link").get_attribute("href")

    page.goto(f"/admin/usuarios?type=people&q={marker}")
    assert listed_names(page) == [staying["name"]]
    page.goto(f"/admin/usuarios/{leaving['id']}")  # the merged account's page says where it went
    pointer = page.get_by_role("status").filter(has_text="unificada").get_by_role("link")
    assert pointer.inner_text() == f"{staying['name']} ({staying['email']})"
    assert not section(page, "Editar usuário").count() and not section(page, "Unificar contas").count()


def test_a_user_is_created_with_javascript_off(browser, system, admin_api):
    company = new_company(admin_api, f"Sem Script {tag()}")
    context = browser.new_context(base_url=system.base_url, locale="pt-BR", java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.goto("/admin/usuarios")
        name, email = f"Sem Script {tag()}", f"sem-script-{tag()}@console.test"
        form = section(page, "Novo usuário")
        form.get_by_label("Nome").fill(name)
        form.get_by_label("E-mail").fill(email)
        form.get_by_label("Perfil").select_option(label="Gestor")
        form.get_by_label("Empresa").select_option(label=company["name"])
        form.get_by_role("button", name="Criar usuário").click()
        assert notice(page) == f"Usuário “{name}” criado."
        assert (fact(page, "E-mail"), fact(page, "Perfil"), fact(page, "Empresa"), fact(page, "Senha")) == \
            (email, "Gestor", company["name"], "Não definida")
        user_id = page.url.rsplit("/", 1)[1]
        created = api_user(admin_api, user_id)
        assert (created["email"], created["role"], created["company_id"]) == (email, "manager", company["id"])
    finally:
        context.close()


# --- who sees what ----------------------------------------------------------------------------

def test_an_agent_sees_the_lists_but_no_forms(page, context, system, make_person, admin_api):
    company = new_company(admin_api, f"Consultoria {tag()}")
    person, _, _ = make_person("collaborator", company_id=company["id"])
    _, agent_email, _ = make_person("agent")
    sign_in(page, agent_email)
    menu = page.locator("nav .menu").inner_text()
    assert "Empresas" in menu and "Usuários" in menu

    page.goto(f"/admin/empresas?q={company['apelido']}")
    page.get_by_role("link", name=company["name"]).click()
    assert fact(page, "Apelido") == company["apelido"]
    assert not section(page, "Editar empresa").count()
    assert not page.get_by_role("button", name="Gerar novo código").count()
    assert company["provisioning_code"] not in page.content()
    page.get_by_role("link", name="Usuários desta empresa").click()
    assert listed_names(page) == [person["name"]]
    page.goto("/admin/empresas")
    assert not section(page, "Nova empresa").count()
    assert not section(page, "Novo usuário").count()

    page.goto(f"/admin/usuarios/{person['id']}")
    assert fact(page, "Empresa") == company["name"]
    for heading in ("Editar usuário", "Redefinir senha", "Unificar contas"):
        assert not section(page, heading).count(), heading

    # hiding the form is not the protection: the server refuses a well-formed post too
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    answer = context.request.post(f"{system.base_url}/admin/usuarios/{person['id']}", max_redirects=0,
                                  form={"csrf": csrf, "name": "Invasor", "email": person["email"]})
    assert answer.status == 403 and "Seu perfil não tem acesso a esta página." in answer.text()
    assert api_user(admin_api, person["id"])["name"] == person["name"]


def test_a_collaborator_gets_the_403_page_on_every_admin_page(page, context, make_person, admin_api):
    company = new_company(admin_api)
    person, email, _ = make_person("collaborator")
    sign_in(page, email)
    with page_expecting_error_statuses(context) as refused:
        for path in ("/admin/usuarios", "/admin/empresas", f"/admin/empresas/{company['id']}",
                     f"/admin/usuarios/{person['id']}", f"/admin/usuarios/{person['id']}/unificar"):
            answer = refused.goto(path)
            assert answer.status == 403, path
            assert refused.get_by_text("Seu perfil não tem acesso a esta página.").is_visible(), path
            assert "Usuários" not in refused.locator("nav .menu").inner_text()


def test_the_pages_fit_a_phone(page, admin_api, system, make_person):
    company = new_company(admin_api, "Companhia de Nome Bem Comprido Para Caber Num Telefone")
    person, _, _ = make_person("collaborator", company_id=company["id"])
    register_machine(system, company, f"estacao-{tag()}", person["email"], person["name"])
    other, _, _ = make_person("collaborator")
    page.set_viewport_size(PHONE)
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    for path in ("/admin/empresas", f"/admin/empresas/{company['id']}", "/admin/usuarios",
                 f"/admin/usuarios/{person['id']}", f"/admin/usuarios/{person['id']}/unificar?q=a",
                 f"/admin/usuarios/{person['id']}/unificar?destino={other['id']}"):
        page.goto(path)
        assert fits_the_width(page), path
    page.goto(f"/admin/usuarios/{person['id']}")  # the table became cards, labelled
    card = section(page, "Dispositivos vinculados").locator("tbody td").nth(1)
    assert card.evaluate("cell => getComputedStyle(cell, '::before').content") == '"Vínculo"'
