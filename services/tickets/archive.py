"""Archiving: resolved tickets past an age leave the working set for a JSON-lines file."""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import orjson

from common.actor import Actor
from common.contracts import load
from common.contracts import tickets as contract
from common.db import utcnow
from common.unit_of_work import UnitOfWorkSource
from services.tickets.permissions import require_admin
from services.tickets.models import Ticket
from services.tickets.views import ticket_view

log = logging.getLogger(__name__)
ARCHIVE_BATCH = 500


def archive_resolved(source: UnitOfWorkSource, archive_dir, actor: Actor, payload: dict) -> dict:
    """Resolved tickets older than N days (with comments and timeline) go to a JSON-lines
    file under `archive_dir` and are marked archived, so no ticket is written twice. The
    file is renamed into place only after the marks are committed: a crash leaves at
    most a `.partial` file, never a ticket archived twice."""
    require_admin(actor, "archive")
    data = load(contract.ArchiveRequest, payload)
    now = utcnow()
    cutoff = now - timedelta(days=data["older_than_days"])
    folder = Path(archive_dir) / str(actor.tenant_id)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"tickets-{now.strftime('%Y%m%dT%H%M%S%fZ')}.jsonl"
    partial = final.with_suffix(".partial")
    archived = 0
    with open(partial, "w") as handle, source.unit_of_work() as uow:
        while True:
            batch = uow.repo.archivable(actor.tenant_id, cutoff, ARCHIVE_BATCH)
            if not batch:
                break
            for ticket in batch:
                handle.write(orjson.dumps(archive_record(uow, ticket)).decode() + "\n")
                ticket.archived_at = now
            archived += len(batch)
            uow.repo.flush()
            log.info("archive %s: %d tickets written", final.name, archived)
        handle.flush()
        os.fsync(handle.fileno())
        uow.commit()
    if archived:
        partial.replace(final)
        return {"archived": archived, "file": str(final)}
    partial.unlink(missing_ok=True)
    return {"archived": 0, "file": None}


def archive_record(uow, ticket: Ticket) -> dict:
    comments = uow.repo.comments(ticket.id, ("PUBLIC", "INTERNAL"))
    return {"ticket": ticket_view(ticket),
            "comments": [{"id": str(c.id), "author_id": str(c.author_id), "visibility": c.visibility,
                          "body": c.body, "created_at": c.created_at.isoformat()} for c in comments],
            "timeline": [{"kind": e.kind, "actor_id": str(e.actor_id) if e.actor_id else None,
                          "data": orjson.loads(e.data), "created_at": e.created_at.isoformat()}
                         for e in uow.repo.timeline(ticket.id)]}
