"""The values the contracts name — roles, ticket statuses, limits — as plain Python.

Domain modules decide with them and import no marshmallow (ENGINEERING.md, dependency rules);
the schemas in `common.contracts` validate against the same names and re-export them.
"""

# accounts
ROLES = ("admin", "manager", "agent", "collaborator", "machine")  # STAFF_ROLES: common/actor.py
# who may read or rotate a company's provisioning code (it enrols machines): not agents
PROVISIONING_ROLES = frozenset({"admin", "manager"})

# tickets
STATUSES = ("PENDING", "AWAITING_ATTENDANCE", "PAUSED", "RESOLVED")
PRIORITIES = ("LOW", "MEDIUM", "HIGH", "URGENT")
WORK_TYPES = ("INTERNAL", "EXTERNAL")
PAUSE_REASONS = ("NO_CONTACT", "WAITING_THIRD_PARTY", "IN_PROCEDURE")
VISIBILITIES = ("PUBLIC", "INTERNAL")
SUBJECT_MAX, COMMENT_MAX = 600, 20_000
EXPORT_STATUSES = ("QUEUED", "RUNNING", "DONE", "FAILED")
EXPORT_DELIMITERS = (",", ";")  # ";" is what a spreadsheet set to Portuguese (Brazil) expects
