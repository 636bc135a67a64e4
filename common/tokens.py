"""Opaque bearer tokens (people's sessions, machines' agents): shown once, kept as SHA-256."""
import hashlib
import hmac
import secrets


def new_secret_token() -> tuple[str, str]:
    """32 random bytes, URL-safe, and the only form of it we keep: its SHA-256."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented secret with the configured one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
