"""/api/admin/dead-letters through HTTP, against the running system's broker: an admin sees
and acts on their tenant's parked messages only (another tenant's look unknown, tenant-less
ones are the operators'), staff below admin are refused, a replay reaches the original
queue, a purge by one tenant never touches another's."""
import uuid

import orjson
import pytest
from kombu import Connection, Queue

from common import deadletters
from common.messaging import dead_letter
from tests.integration.test_deadletters import message

pytestmark = pytest.mark.e2e


def park_for_tenant(amqp_uri: str, tenant_id: str | None, queue: str = "evt-e2e--tests.on_it",
                    **body) -> str:
    """A message parked as a failed event handler parks it (its body names the tenant, when
    there is one); its dead-letter id."""
    marker = uuid.uuid4().hex
    payload = {"event_id": str(uuid.uuid4()), "marker": marker, **body}
    if tenant_id is not None:
        payload["tenant_id"] = str(tenant_id)
    dead_letter(amqp_uri, "tests", queue, message(payload, {"origin": "e2e"}), f"KeyError: {marker}", 5)
    listed = deadletters.list_letters(amqp_uri, reason=marker)
    assert listed.matched == 1, listed
    return listed.items[0].id


def listed_ids(client, **params) -> list:
    response = client.get("/api/admin/dead-letters", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_admins_see_and_act_on_their_tenants_dead_letters_only(system, rpc, tenant):
    from tests.harness import new_tenant

    other = new_tenant(system, rpc)
    queue = f"evt-e2e-{uuid.uuid4().hex[:8]}--tests.on_it"
    with Connection(system.amqp_uri) as connection:
        Queue(queue, durable=True)(connection.channel()).declare()
    mine = [park_for_tenant(system.amqp_uri, tenant.id, queue, n=n) for n in range(2)]
    theirs = park_for_tenant(system.amqp_uri, other.id, queue)
    nobodys = park_for_tenant(system.amqp_uri, None, queue)
    try:
        assert listed_ids(tenant.admin, queue=queue) == mine
        assert listed_ids(other.admin, queue=queue) == [theirs]
        assert set(listed_ids(tenant.admin, limit=1000)).isdisjoint({theirs, nobodys})
        assert listed_ids(tenant.admin, queue=queue, reason="no such reason") == []

        for role in ("manager", "agent", "collaborator"):
            _, person = tenant.person(role)
            refused = person.get("/api/admin/dead-letters")
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_role"
            assert person.get(f"/api/admin/dead-letters/{mine[0]}").status_code == 403

        shown = tenant.admin.get(f"/api/admin/dead-letters/{mine[0]}")
        assert shown.status_code == 200, shown.text
        detail = shown.json()
        assert detail["queue"] == queue and detail["tenant_id"] == tenant.id
        assert detail["body_encoding"] == "json" and orjson.loads(detail["body"])["n"] == 0
        assert detail["headers"]["origin"] == "e2e" and detail["attempts"] == 5
        unknown = tenant.admin.get(f"/api/admin/dead-letters/{uuid.uuid4().hex}")
        for foreign in (theirs, nobodys):
            cross = tenant.admin.get(f"/api/admin/dead-letters/{foreign}")
            assert cross.status_code == 404 and cross.json() == unknown.json()

        # another tenant's "all" leaves ours alone
        purged = other.admin.post("/api/admin/dead-letters/purge", json={"all": True})
        assert purged.status_code == 200, purged.text
        assert purged.json()["purged"] == [theirs]
        assert listed_ids(tenant.admin, queue=queue) == mine
        crossed = other.admin.post("/api/admin/dead-letters/replay", json={"ids": [mine[0]]})
        assert crossed.status_code == 200 and crossed.json()["not_found"] == [mine[0]]

        replayed = tenant.admin.post("/api/admin/dead-letters/replay", json={"ids": [mine[0]]})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["replayed"] == [mine[0]] and replayed.json()["failed"] == []
        with Connection(system.amqp_uri) as connection:
            arrived = Queue(queue)(connection.channel()).get(no_ack=True)
        assert arrived is not None and orjson.loads(arrived.body)["n"] == 0
        assert arrived.headers.get("origin") == "e2e"
        assert not any(key.startswith("x-dead-letter") for key in arrived.headers)

        empty = tenant.admin.post("/api/admin/dead-letters/purge", json={})
        assert empty.status_code == 422, empty.text
        dropped = tenant.admin.post("/api/admin/dead-letters/purge", json={"queue": queue})
        assert dropped.status_code == 200 and dropped.json()["purged"] == [mine[1]], dropped.text
        assert listed_ids(tenant.admin, queue=queue) == []
        assert deadletters.get_letter(system.amqp_uri, nobodys) is not None  # the operators'
    finally:
        deadletters.purge(system.amqp_uri, deadletters.Selection.of(queue=queue))
