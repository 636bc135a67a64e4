"""Without CRON_SECRET the cron routes are off, and the answer says so and names the setting
(issue 13, item 5): it used to be `404 no such route`, as if the URL were mistyped."""
import pytest

from tests.harness import Client, RabbitVhost, System


@pytest.fixture(scope="module")
def gateway_without_cron_secret(tmp_path_factory):
    vhost = RabbitVhost.create()
    gateway = System(database_url=None, amqp_uri=vhost.amqp_uri, workdir=tmp_path_factory.mktemp("no-cron"),
                     services=("gateway",), extra_env={"CRON_SECRET": ""})
    try:
        gateway.start_service("gateway")
        gateway.wait_ready(60)
        yield gateway
    finally:
        gateway.stop()
        vhost.delete()


@pytest.mark.parametrize("headers", [{}, {"x-cron-secret": "anything"}])
def test_cron_routes_say_they_are_disabled_and_how_to_enable_them(gateway_without_cron_secret, headers):
    response = Client(gateway_without_cron_secret.base_url).post("/api/cron/chat-cleanup", headers=headers)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "cron_disabled", error
    assert "disabled" in error["message"] and "CRON_SECRET" in error["message"], error
    assert error["details"] == {"setting": "CRON_SECRET"}
    assert "Traceback" not in gateway_without_cron_secret.log("gateway")


def test_an_unknown_route_is_still_route_not_found(gateway_without_cron_secret):
    response = Client(gateway_without_cron_secret.base_url).post("/api/cronn/chat-cleanup")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "route_not_found"
