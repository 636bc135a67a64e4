"""Browser tests: Debian's chromium driven by Playwright against the whole system.

They run in their own pytest process, without eventlet: Playwright's sync API hangs on
stop in an eventlet-patched process (ENGINEERING.md pitfall 19), and the suite's root
conftest patches. `make test` (scripts/test.sh) runs `pytest tests/browser
--confcutdir=tests/browser` beside the main suite, so tests/conftest.py is never loaded
here (and it ignores this folder).

Every test that fails leaves a screenshot in var/browser-failures/.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from common import bootstrap

bootstrap.install()  # the library patches, as every process; no eventlet.monkey_patch() here

from tests.harness import Client, PostgresServer, RabbitVhost, System  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FAILURES_DIR = ROOT / "var" / "browser-failures"
ADMIN_EMAIL = "admin@console.test"
ADMIN_PASSWORD = "console-admin-pass-1"
PERSON_PASSWORD = "pass-word-1"


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    postgres = PostgresServer.find()
    name, database_url = postgres.create_database()
    vhost = RabbitVhost.create()
    running = System(database_url=database_url, amqp_uri=vhost.amqp_uri,
                     workdir=tmp_path_factory.mktemp("system"),
                     extra_env={"CHAMADOS_ADMIN_EMAIL": ADMIN_EMAIL,
                                "CHAMADOS_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        running.start()
        created = running.cli("create-admin")
        assert created.returncode == 0, created.stdout + created.stderr
        yield running
    finally:
        running.stop()
        vhost.delete()
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def admin_api(system) -> Client:
    return Client(system.base_url).sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def make_person(system, admin_api):
    """A person created through the API: (user, email, API client)."""
    def make(role: str, *, name: str | None = None, company_id: str | None = None):
        email = f"{role}-{uuid.uuid4().hex[:8]}@console.test"
        response = admin_api.post("/api/admin/users", json={
            "email": email, "name": name or f"{role.title()} {uuid.uuid4().hex[:4]}", "role": role,
            "company_id": company_id, "password": PERSON_PASSWORD})
        assert response.status_code == 201, response.text
        return response.json(), email, Client(system.base_url).sign_in(email, PERSON_PASSWORD)
    return make


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser, system):
    """A fresh browser profile (no cookies) pointed at the console."""
    created = browser.new_context(base_url=system.base_url, locale="pt-BR",
                                  viewport={"width": 1280, "height": 900})
    created.set_default_timeout(15_000)
    yield created
    created.close()


@pytest.fixture
def page(context, request):
    opened = context.new_page()
    errors: list[tuple[str, str]] = []
    navigations: set[str] = set()  # pages asked for: their 403/404 is what a test checks
    opened.on("pageerror", lambda error: errors.append((str(error), "")))
    opened.on("console", lambda message: errors.append((message.text, message.location.get("url", "")))
              if message.type == "error" else None)
    opened.on("request", lambda asked: navigations.add(asked.url) if asked.is_navigation_request() else None)
    request.node.browser_page = opened
    yield opened
    # a Content-Security-Policy violation, a script error or a missing asset is a defect of
    # the console; Chromium's "Failed to load resource" for a page's own error status is not
    defects = [text for text, url in errors
               if not (text.startswith("Failed to load resource") and url in navigations)]
    assert not defects, f"errors in the browser: {defects}"


def api_get(client: Client, path: str) -> dict:
    """What the API answers (200 expected): the other side of what a page shows."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def sign_in(page, email: str, password: str = PERSON_PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Senha", exact=True).fill(password)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_selector("header.topbar")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    opened = getattr(item, "browser_page", None)
    if report.failed and opened is not None and not opened.is_closed():
        FAILURES_DIR.mkdir(parents=True, exist_ok=True)
        target = FAILURES_DIR / (re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:] + ".png")
        try:
            opened.screenshot(path=str(target), full_page=True)
            report.sections.append(("screenshot", str(target)))
        except Exception as exc:  # the failure itself matters more than its picture
            report.sections.append(("screenshot", f"could not be taken: {exc}"))
