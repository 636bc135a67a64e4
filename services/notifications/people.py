"""The projection of accounts' people (name, address) from accounts' events, each handled once
(the inbox row is written in the same transaction); the newest version wins whatever order
the events arrive in (common/snapshot_version.py)."""
from __future__ import annotations

from common.snapshot_version import SnapshotVersion
from common.unit_of_work import UnitOfWorkSource


def user_changed(source: UnitOfWorkSource, event: dict, event_type: str) -> None:
    """`user_created` and `user_updated`."""
    with source.unit_of_work() as uow:
        if uow.repo.first_delivery(event, event_type):
            uow.repo.save_person(event["tenant_id"], event["user_id"], SnapshotVersion.of(event.get("version")),
                                 event["name"], event["email"])
            uow.commit()


def user_merged(source: UnitOfWorkSource, event: dict) -> None:
    """Mail for the merged account goes to the account it joined."""
    with source.unit_of_work() as uow:
        if uow.repo.first_delivery(event, "user_merged"):
            uow.repo.merge_person(event["from_user_id"], event["into_user_id"])
            uow.commit()
