"""The software index through the repository, on PostgreSQL and on SQLite: versions added
once, machines' rows replaced, searches by version and by company, keyset pages. The API on
the running system is tests/e2e/test_devices.py; the figures are bench/software.py's."""
import uuid

import pytest
from sqlalchemy.orm import Session

from common.config import Settings
from common.db import create_service_engine, utcnow
from common.migrate import upgrade
from services.devices.repository import DevicesRepository
from services.devices.software import version_key
from services.devices.storage import Machine


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request, tmp_path):
    if request.param == "sqlite":
        settings = Settings(var_dir=tmp_path)
    else:
        postgres = request.getfixturevalue("postgres")
        name, url = postgres.create_database()
        request.addfinalizer(lambda: postgres.drop_database(name))
        settings = Settings(database_url=url)
    upgrade(settings, services=("devices",))
    engine = create_service_engine(settings, "devices")
    with Session(engine) as opened:
        yield opened
    engine.dispose()


def test_index_search_and_pages(session):
    repo = DevicesRepository(session)
    tenant, other_tenant, company, other_company = (uuid.uuid4() for _ in range(4))
    machines = []
    for n, (owner, where) in enumerate([(tenant, company)] * 3 + [(tenant, other_company), (other_tenant, company)]):
        machine = Machine(tenant_id=owner, company_id=where, hostname=f"ws-{n}", os_name="Ubuntu",
                          machine_user_id=uuid.uuid4(), created_at=utcnow(), updated_at=utcnow())
        session.add(machine)
        machines.append(machine)
    session.flush()
    versions = ["119.0", "120.0", "1:1.0", "120.0", "119.0"]
    repo.write_software({m.id: {("firefox", v), ("curl", "8.5")} for m, v in zip(machines, versions)})
    repo.write_software({machines[1].id: {("firefox", "121.0"), ("curl", "8.5")}})  # an upgrade replaces the row
    session.commit()

    known = repo.software_versions("firefox", None, None)
    assert sorted(known.values()) == ["119.0", "120.0", "121.0", "1:1.0"]
    older = repo.software_versions("firefox", None, version_key("120"))
    assert sorted(older.values()) == ["119.0"]
    by_version = {version: held for held, version in known.items()}

    holders = repo.software_holders(tenant, None, list(known), None, 10)
    assert [(hostname, known[held]) for _, hostname, _, held in holders] == [
        ("ws-0", "119.0"), ("ws-1", "121.0"), ("ws-2", "1:1.0"), ("ws-3", "120.0")]  # not the other tenant's
    assert [hostname for _, hostname, _, _ in repo.software_holders(tenant, other_company, list(known), None, 10)] == \
        ["ws-3"]
    first = repo.software_holders(tenant, None, list(known), None, 2)
    rest = repo.software_holders(tenant, None, list(known), (first[-1][1], first[-1][0]), 10)
    assert [h for _, h, _, _ in first + rest] == ["ws-0", "ws-1", "ws-2", "ws-3"]
    assert repo.software_counts(tenant, None, list(known)) == {
        by_version["119.0"]: 1, by_version["121.0"]: 1, by_version["1:1.0"]: 1, by_version["120.0"]: 1}
    assert repo.software_counts(other_tenant, None, [by_version["119.0"]]) == {by_version["119.0"]: 1}
    assert repo.software_version_ids({("curl", "8.5")}) == repo.software_version_ids({("curl", "8.5")})  # once
