"""What every service's `apply_retention` RPC is asked: as of when, and over which rows."""
from __future__ import annotations

from datetime import datetime, timezone

from common.contracts import parse_id
from common.errors import ValidationFailed


def retention_scope(now: str | None, dry_run: bool, tenant_id: str | None):
    """(as of when, tenant UUID or None for every tenant). A tenant's scope is a report only
    — the health snapshot its staff see — never a purge of part of the policy."""
    if tenant_id is not None and not dry_run:
        raise ValidationFailed("retention is applied to every tenant at once; a tenant's is a dry run",
                               code="retention_scope")
    when = datetime.fromisoformat(now) if now else datetime.now(timezone.utc)
    return when, parse_id(tenant_id, "tenant") if tenant_id is not None else None
