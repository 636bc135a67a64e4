"""Signing in and out, what every page carries (cookies, headers), and what the console
refuses: forged forms, a collaborator on admin pages, markup in user text."""
from __future__ import annotations

import requests

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in


def test_sign_in_shows_the_dashboard_and_sign_out_revokes_the_session(page, context, system):
    page.goto("/chamados")
    assert page.url.endswith("/?proximo=%2Fchamados")  # signed out: the sign-in form, then back
    page.get_by_label("E-mail").fill(ADMIN_EMAIL)
    page.get_by_label("Senha").fill("wrong-password")
    page.get_by_role("button", name="Entrar").click()
    assert page.get_by_role("alert").inner_text() == "E-mail ou senha incorretos."

    page.get_by_label("Senha").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_url("**/chamados")
    page.goto("/")
    assert page.get_by_role("heading", name="Últimos chamados").is_visible()

    session = next(cookie for cookie in context.cookies() if cookie["name"] == "chamados_sessao")
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    token = session["value"]
    assert requests.get(f"{system.base_url}/api/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200  # the same server-side session as the API

    page.get_by_role("button", name="Sair").click()
    assert page.get_by_role("status").inner_text() == "Você saiu. Até logo!"
    assert page.get_by_label("E-mail").is_visible()
    assert requests.get(f"{system.base_url}/api/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401  # revoked, not only forgotten


def test_every_page_carries_the_security_headers(page):
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    answer = page.goto("/")
    headers = answer.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"  # personal data


def test_a_form_posted_without_its_csrf_token_is_refused(page, context, system):
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    # a forged sign-out: the browser sends the session cookie, but no token from our page
    answer = context.request.post(f"{system.base_url}/sair", form={"csrf": "forged"},
                                  max_redirects=0)
    assert answer.status == 403
    assert "O formulário expirou" in answer.text()
    page.goto("/")
    assert page.get_by_role("heading", name="Últimos chamados").is_visible()  # still signed in


def test_a_collaborator_gets_a_403_page_on_admin_pages_and_no_admin_menu(page, make_person):
    _, email, _ = make_person("collaborator")
    sign_in(page, email)
    menu = page.locator("nav .menu").inner_text()
    assert "Chamados" in menu and "Usuários" not in menu and "Dispositivos" not in menu
    answer = page.goto("/admin/usuarios")
    assert answer.status == 403
    assert page.get_by_text("Seu perfil não tem acesso a esta página.").is_visible()


def test_an_unknown_address_is_a_page_not_json(page):
    answer = page.goto("/nada-aqui")
    assert answer.status == 404
    assert page.get_by_role("heading", name="Erro 404").is_visible()
