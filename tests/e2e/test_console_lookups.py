"""A console page's lookups (queues, companies, staff, saved filter, counts) are reused for
CONSOLE_CACHE_SECONDS (services/gateway/console/lookups.py): a change made through this
gateway shows on the very next page, one made elsewhere within the setting (1 s here)."""
import time

from services.gateway.console.web import SESSION_COOKIE


def list_page(tenant) -> str:
    admin = tenant.admin
    page = admin.http.get(f"{tenant.system.base_url}/chamados", cookies={SESSION_COOKIE: admin.token},
                          allow_redirects=False, timeout=30)
    assert page.status_code == 200, page.text[:300]
    return page.text


def test_a_queue_made_through_the_gateway_shows_on_the_next_page(tenant):
    assert "Fila do Financeiro" not in list_page(tenant)
    made = tenant.admin.post("/api/queues", json={"name": "Fila do Financeiro"})
    assert made.status_code == 201, made.text
    assert "Fila do Financeiro" in list_page(tenant)  # at once: the change forgot the lookups


def test_a_queue_made_behind_the_gateways_back_shows_within_the_setting(tenant, rpc):
    assert "Fila de Redes" not in list_page(tenant)  # now remembered for up to a second
    me = tenant.admin.get("/api/me").json()
    rpc.tickets.create_queue({"user_id": me["id"], "tenant_id": tenant.id, "role": me["role"]},
                             {"name": "Fila de Redes"})
    made_at = time.monotonic()
    while "Fila de Redes" not in list_page(tenant):
        assert time.monotonic() - made_at < 3, "the new queue never showed on the list page"
        time.sleep(0.1)
    assert time.monotonic() - made_at < 1.5
