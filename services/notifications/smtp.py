"""SMTP as the sender sees it: `SMTP_URL` read, mails sent over one connection, each
outcome classified. smtplib's sockets are green under eventlet's monkey-patching; the sender
calls this with no unit of work open (a transaction never waits on the network, pitfall 22)."""
from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

TIMEOUT_SECONDS = 20.0
SENT, RETRY, FAILED = "sent", "retry", "failed"


@dataclass(frozen=True)
class Outcome:
    result: str  # SENT | RETRY (down, 4xx: tried again later) | FAILED (5xx: recorded, not retried)
    detail: str | None = None


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool  # smtps://: TLS from the first byte
    starttls: bool
    user: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must be smtp://[user:pass@]host[:port][?starttls=true] or smtps://…")
        starttls = parse_qs(parts.query).get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        tls = parts.scheme == "smtps"
        return cls(host=parts.hostname, port=parts.port or (465 if tls else 587 if starttls else 25),
                   tls=tls, starttls=starttls and not tls,
                   user=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)

    def describe(self) -> str:
        """For the start-up line: no password."""
        scheme = "smtps" if self.tls else "smtp"
        return f"{scheme}://{self.host}:{self.port}" + ("?starttls=true" if self.starttls else "")


def classify(exc: BaseException) -> Outcome:
    """A refusal of this mail with a 5xx is permanent; anything else (no connection, a
    dropped one, 4xx, a login refused — the operator's to fix) is tried again."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{code} {message.decode(errors='replace') if isinstance(message, bytes) else message}"
                           for code, message in exc.recipients.values())
        return Outcome(FAILED if codes and all(code >= 500 for code in codes) else RETRY, detail[:500])
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Outcome(RETRY, f"login refused: {exc.smtp_code}")
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return Outcome(FAILED if exc.smtp_code >= 500 else RETRY, f"{exc.smtp_code} {message}"[:500])
    return Outcome(RETRY, f"{exc.__class__.__name__}: {exc}"[:500])


def send_all(server: SmtpServer, mails: dict, mail_from: str) -> dict:
    """{key: EmailMessage} sent over one connection → {key: Outcome}. A connection that
    fails leaves every mail not yet sent to be retried."""
    outcomes: dict = {}
    try:
        connection = (smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_SECONDS,
                                       context=ssl.create_default_context()) if server.tls
                      else smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS))
    except (OSError, smtplib.SMTPException) as exc:
        return {key: classify(exc) for key in mails}
    try:
        if server.starttls:
            connection.starttls(context=ssl.create_default_context())
        if server.user:
            connection.login(server.user, server.password or "")
        for key, mail in mails.items():
            try:
                connection.send_message(mail, from_addr=mail_from_address(mail_from))
                outcomes[key] = Outcome(SENT)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                outcomes[key] = classify(exc)
                connection.rset()
    except (OSError, smtplib.SMTPException) as exc:
        failure = classify(exc)
        for key in mails:
            outcomes.setdefault(key, failure)
    finally:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()
    return outcomes


def mail_from_address(mail_from: str) -> str:
    return parseaddr(mail_from)[1] or mail_from
