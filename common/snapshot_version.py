"""Which of two changes of an accounts entity (a user, a company) is the newer, as plain
Python: the projections other services keep of them (tickets' people and companies, devices'
assigned users and links) use it from their domain modules. No nameko, SQLAlchemy or
marshmallow here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SnapshotVersion:
    """How a snapshot keeps the newest change whatever order accounts' events (and lookups)
    arrive in: the values are written with `stored` only over a stored version below
    `applies_below`. accounts counts each entity's changes from 1; a message without a version
    (an event queued before accounts stamped them) applies only over a snapshot no versioned
    change has written (0), as events applied before."""
    stored: int
    applies_below: int

    @classmethod
    def of(cls, version) -> "SnapshotVersion":
        if version is None:
            return cls(stored=0, applies_below=1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"a snapshot version is a positive integer, not {version!r}")
        return cls(stored=version, applies_below=version)

    def applies_over(self, stored_version: int | None) -> bool:
        return (stored_version or 0) < self.applies_below
