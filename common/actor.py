"""Who is acting, as the gateway authenticated them: what every service's RPC receives as
its first argument (`{"user_id", "tenant_id", "role"}`). Pure: no infrastructure import."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

STAFF_ROLES = frozenset({"admin", "manager", "agent"})


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str

    @classmethod
    def from_dict(cls, data: dict) -> "Actor":
        return cls(uuid.UUID(str(data["user_id"])), uuid.UUID(str(data["tenant_id"])), data["role"])

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
