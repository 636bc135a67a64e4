"""The software index's queries (`software_versions`, `machine_software`; the pure parts
are software.py): part of the devices repository, over its session."""
from __future__ import annotations

from sqlalchemy import String, any_, bindparam, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import TextClause

from common.db import upsert_insert
from services.devices.software import version_key
from services.devices.storage import Machine, MachineSoftware, SoftwareVersion

LOOKUP_CHUNK = 1000  # package names per lookup statement


def literal_ids(ids) -> TextClause:
    """Version ids written into the statement, not bound: the planner then sees them, and
    estimates from the GIN index's statistics how many machines hold them — a bound array
    planned generically looked like 1 % of the machines, and it chose to read every
    machine's array (10,000 machines: 120 ms instead of 7). They are integers from our own
    table, so writing them in is safe."""
    return text("'{" + ",".join(str(int(held)) for held in sorted(ids)) + "}'::integer[]")


class SoftwareIndexQueries:
    """Mixed into DevicesRepository: `self.session` is the unit of work's."""

    def write_software(self, found: dict) -> None:
        """{machine_id: {(name, version)}} of machines whose inventory changed in a batch:
        their rows of the index, replaced. The versions' ids are looked up for the batch's
        union at once (a fleet shares most of its packages), missing ones added."""
        if not found:
            return
        ids = self.software_version_ids(set().union(*found.values()))
        rows = [{"machine_id": machine_id, "version_ids": sorted(ids[pair] for pair in pairs)}
                for machine_id, pairs in sorted(found.items())]
        table = MachineSoftware.__table__
        statement = upsert_insert(self.session, table)
        self.session.execute(statement.on_conflict_do_update(
            index_elements=[table.c.machine_id], set_={"version_ids": statement.excluded.version_ids}), rows)

    def software_version_ids(self, pairs: set) -> dict:
        """{(name, version): id}, adding the versions never seen before (another consumer may
        add the same one at the same moment: the unique constraint keeps one)."""
        table = SoftwareVersion.__table__
        known: dict = {}
        postgresql = self.session.bind.dialect.name == "postgresql"

        def look_up(wanted):
            # by name (one array parameter, the unique index): a (name, version) IN list of
            # ~700 pairs was a 700-way OR, ~50 ms a batch; the few other versions of those
            # names that come along are dropped here
            names = sorted({name for name, _ in wanted})
            for start in range(0, len(names), LOOKUP_CHUNK):
                chunk = names[start:start + LOOKUP_CHUNK]
                condition = table.c.name == any_(bindparam("names", chunk, type_=ARRAY(String))) if postgresql \
                    else table.c.name.in_(chunk)
                for row in self.session.execute(select(table.c.id, table.c.name, table.c.version).where(condition)):
                    if (row.name, row.version) in wanted:
                        known[(row.name, row.version)] = row.id

        look_up(pairs)
        missing = sorted(pairs - known.keys())
        if missing:
            statement = upsert_insert(self.session, table)
            self.session.execute(statement.on_conflict_do_nothing(), [
                {"name": name, "version": version, "version_key": version_key(version)}
                for name, version in missing])
            look_up(set(missing))
        return known

    def software_versions(self, name: str, exact: str | None, older_than_key: bytes | None) -> dict:
        """{id: version} of the package's known versions, optionally one, or those older."""
        table = SoftwareVersion.__table__
        query = select(table.c.id, table.c.version).where(table.c.name == name)
        if exact is not None:
            query = query.where(table.c.version == exact)
        if older_than_key is not None:
            query = query.where(table.c.version_key < older_than_key)
        return {row.id: row.version for row in self.session.execute(query)}

    def software_holders(self, tenant_id, company_id, version_ids: list, after, limit: int) -> list:
        """(machine id, hostname, company id, the one of `version_ids` it has) of the tenant's
        machines holding any of them, by hostname and id, after the cursor's (hostname, id).
        PostgreSQL answers through the GIN index (`&&`); SQLite, a small deployment, reads the
        tenant's rows."""
        machines, held = Machine.__table__, MachineSoftware.__table__
        query = (select(machines.c.id, machines.c.hostname, machines.c.company_id, held.c.version_ids)
                 .join(held, held.c.machine_id == machines.c.id).where(machines.c.tenant_id == tenant_id))
        if company_id is not None:
            query = query.where(machines.c.company_id == company_id)
        if after is not None:
            query = query.where(tuple_(machines.c.hostname, machines.c.id) > tuple_(*after))
        query = query.order_by(machines.c.hostname, machines.c.id)
        wanted = set(version_ids)
        if self.session.bind.dialect.name == "postgresql":
            rows = self.session.execute(query.where(held.c.version_ids.op("&&")(literal_ids(wanted))).limit(limit))
        else:
            rows = (row for row in self.session.execute(query) if wanted.intersection(row.version_ids))
        found = []
        for row in rows:
            found.append((row.id, row.hostname, row.company_id, next(v for v in row.version_ids if v in wanted)))
            if len(found) == limit:
                break
        return found

    def software_counts(self, tenant_id, company_id, version_ids: list) -> dict:
        """{version id: how many of the tenant's machines (of the company) hold it}: one GIN
        lookup per version (`@>` needs no recheck, so no machine's array is read)."""
        if self.session.bind.dialect.name != "postgresql":
            counts: dict = {}
            for *_, held in self.software_holders(tenant_id, company_id, version_ids, None, 10 ** 9):
                counts[held] = counts.get(held, 0) + 1
            return counts
        if not version_ids:
            return {}
        company = "AND m.company_id = :company" if company_id is not None else ""
        rows = self.session.execute(text(" UNION ALL ".join(
            f"SELECT {int(held)}, (SELECT count(*) FROM machine_software ms JOIN machines m ON m.id = ms.machine_id "
            f"WHERE ms.version_ids @> {literal_ids([held]).text} AND m.tenant_id = :tenant {company})"
            for held in sorted(version_ids))), {"tenant": tenant_id, "company": company_id})
        return {held: count for held, count in rows if count}
