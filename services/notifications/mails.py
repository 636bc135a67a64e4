"""The mails, composed as plain Python (stdlib `email` only): subject `[Chamado #42] …`,
plain text and HTML (everything user-written escaped), a `Message-ID` per mail and, per
ticket, `In-Reply-To`/`References` naming the ticket's root id so mail clients thread a
ticket's mails together (the "opened" receipt carries the root id itself)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from services.notifications import domain

# pt-BR; a later slice takes them from the console's catalogue (another language there)
INTRO = {
    domain.OPENED: "Recebemos o seu chamado #{reference}: {subject}.",
    domain.ASSIGNED: "O chamado #{reference} ({subject}) foi atribuído a você por {actor}.",
    domain.COMMENTED: "{actor} comentou no chamado #{reference} ({subject}):",
    domain.RESOLVED: "O chamado #{reference} ({subject}) foi resolvido por {actor}.",
    domain.REOPENED: "O chamado #{reference} ({subject}) foi reaberto por {actor}.",
}
GREETING = "Olá, {name}."
CLOSING_MESSAGE = "Mensagem de encerramento:"
FOLLOW = "Acompanhe o chamado em: {link}"
SIGNATURE = "— Chamados (mensagem automática; responder a ela ainda não abre nem comenta chamados)"
SOMEONE = "a equipe"


@dataclass(frozen=True)
class Person:
    name: str
    email: str


def mail_domain(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    return address.rpartition("@")[2] or "localhost"


def ticket_root_id(ticket_id: str, mail_from: str) -> str:
    """The ticket's thread: one stable id per ticket."""
    return f"<chamado-{ticket_id}@{mail_domain(mail_from)}>"


def message_id(delivery_id: str, mail_from: str) -> str:
    return f"<{delivery_id}@{mail_domain(mail_from)}>"


def compose(notice: domain.Notice, delivery_id: str, recipient: Person, actor: Person | None,
            mail_from: str, console_url: str, now) -> EmailMessage:
    values = {"reference": notice.reference, "subject": notice.subject,
              "actor": actor.name if actor else SOMEONE}
    link = f"{console_url.rstrip('/')}/chamados/{notice.reference}"
    paragraphs = [GREETING.format(name=recipient.name), INTRO[notice.kind].format(**values)]
    if notice.text:
        paragraphs += [CLOSING_MESSAGE, notice.text] if notice.kind == domain.RESOLVED else [notice.text]
    paragraphs += [FOLLOW.format(link=link), SIGNATURE]

    mail = EmailMessage()
    root = ticket_root_id(notice.ticket_id, mail_from)
    mail["Subject"] = f"[Chamado #{notice.reference}] {notice.subject}"
    mail["From"] = mail_from
    mail["To"] = formataddr((recipient.name, recipient.email))
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = root if notice.kind == domain.OPENED else message_id(delivery_id, mail_from)
    if notice.kind != domain.OPENED:
        mail["In-Reply-To"] = root
        mail["References"] = root
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders do not answer it
    mail.set_content("\n\n".join(paragraphs) + "\n")
    mail.add_alternative(_html(paragraphs, link), subtype="html")
    return mail


def _html(paragraphs: list[str], link: str) -> str:
    def paragraph(text: str) -> str:
        escaped = html.escape(text).replace("\n", "<br>\n")
        return f"<p>{escaped}</p>"

    body = "\n".join(paragraph(text) for text in paragraphs)
    escaped_link = html.escape(link, quote=True)
    body = body.replace(html.escape(link), f'<a href="{escaped_link}">{html.escape(link)}</a>', 1)
    return f'<!DOCTYPE html>\n<html lang="pt-BR"><body>\n{body}\n</body></html>\n'
