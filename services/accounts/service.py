"""accounts: tenants, companies, users (people and machines), API sessions.

The nameko adapter: each entrypoint hands its arguments to a use-case handler
(directory, sessions, passwords, provisioning; recovery is the CLI's), with the service's
database as the handler's unit-of-work source."""
from __future__ import annotations

from common.db import Database
from common.idempotency import IdempotencyContext, idempotent
from common.service_base import ServiceBase, rpc
from services.accounts import directory, passwords, provisioning, sessions, storage
from services.accounts.storage import AccountsRepository

# a state-changing RPC sent with an Idempotency-Key answers every retry with its first answer
once = idempotent(storage.idempotency_keys)


class Service(ServiceBase):
    name = "accounts"
    db = Database(repository=AccountsRepository, metadata=storage.metadata)
    idempotency = IdempotencyContext()  # the caller's Idempotency-Key (@once)
    idempotency_records = storage.idempotency_keys
    churning_tables = ("outbox", "sign_in_throttle", "idempotency_keys")

    def purge_expired(self, uow, when) -> dict:
        """Sign-in throttle rows past their window and lock, besides the Idempotency-Key
        records (ServiceBase.maintain_storage)."""
        return {**ServiceBase.purge_expired(self, uow, when),
                "sign_in_throttle_deleted": uow.repo.purge_throttles(when)}

    # tenants and the first admin

    @rpc
    def create_tenant(self, name: str, slug: str, admin_email: str | None = None,
                      admin_password: str | None = None) -> dict:
        return directory.create_tenant(self.db, self.db.settings, name, slug, admin_email, admin_password)

    @rpc
    def ensure_admin(self, email: str, password: str | None = None) -> dict:
        return directory.ensure_admin(self.db, self.db.settings, email, password)

    # sessions and passwords

    @rpc
    def sign_in(self, credentials: dict, client_address: str | None = None) -> dict:
        return sessions.sign_in(self.db, self.db.settings, credentials, client_address)

    @rpc
    def authenticate(self, token: str) -> dict:
        return sessions.authenticate(self.db, token)

    @rpc
    @once
    def change_password(self, principal: dict, payload: dict, client_address: str | None = None) -> None:
        return passwords.change_password(self.db, self.db.settings, principal, payload, client_address)

    @rpc
    def sign_out(self, token: str) -> None:
        return sessions.sign_out(self.db, token)

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        return sessions.apply_retention(self.db, now, dry_run, tenant_id)

    # companies

    @rpc
    def list_companies(self, actor: dict, query: dict) -> dict:
        return directory.list_companies(self.db, actor, query)

    @rpc
    def get_company(self, actor: dict, company_id: str) -> dict:
        return directory.get_company(self.db, actor, company_id)

    @rpc
    @once
    def create_company(self, actor: dict, payload: dict) -> dict:
        return directory.create_company(self.db, actor, payload)

    @rpc
    @once
    def update_company(self, actor: dict, company_id: str, payload: dict) -> dict:
        return directory.update_company(self.db, actor, company_id, payload)

    @rpc
    @once
    def rotate_provisioning_code(self, actor: dict, company_id: str) -> dict:
        return provisioning.rotate_provisioning_code(self.db, actor, company_id)

    @rpc
    def get_provisioning_code(self, actor: dict, company_id: str) -> dict:
        return provisioning.get_provisioning_code(self.db, actor, company_id)

    # users

    @rpc
    def get_user(self, actor: dict, user_id: str) -> dict:
        return directory.get_user(self.db, actor, user_id)

    @rpc
    def list_users(self, actor: dict, query: dict) -> dict:
        return directory.list_users(self.db, actor, query)

    @rpc
    @once
    def create_user(self, actor: dict, payload: dict) -> dict:
        return directory.create_user(self.db, self.db.settings, actor, payload)

    @rpc
    @once
    def update_user(self, actor: dict, user_id: str, payload: dict) -> dict:
        return directory.update_user(self.db, self.db.settings, actor, user_id, payload)

    @rpc
    @once
    def merge_users(self, actor: dict, payload: dict) -> dict:
        return directory.merge_users(self.db, actor, payload)

    @rpc
    def lookup_user(self, tenant_id: str, user_id: str) -> dict:
        return directory.lookup_user(self.db, tenant_id, user_id)

    @rpc
    def lookup_company(self, tenant_id: str, company_id: str) -> dict:
        return directory.lookup_company(self.db, tenant_id, company_id)

    @rpc
    def registration_counts(self, tenant_id: str | None = None) -> dict:
        return directory.registration_counts(self.db, tenant_id)

    # for the devices service

    @rpc
    def enrolment(self, code: str, email: str, name: str | None) -> dict:
        return provisioning.enrolment(self.db, code, email, name)

    @rpc
    def ensure_person(self, tenant_id: str, email: str, name: str | None, company_id: str | None) -> dict:
        return provisioning.ensure_person(self.db, tenant_id, email, name, company_id)

    @rpc
    def find_person(self, tenant_id: str, email: str) -> dict:
        return provisioning.find_person(self.db, tenant_id, email)

    @rpc
    def create_machine_user(self, tenant_id: str, company_id: str, hostname: str) -> dict:
        return provisioning.create_machine_user(self.db, tenant_id, company_id, hostname)
