"""The sender's loop: a green thread per notifications process runs the `@mail_sender`
method in a worker right after an event added deliveries (`wake_sender()`), and at least
every POLL_SECONDS (retries come due; another replica's wake-up). One run at a time per
process; wake-ups during a run coalesce into one more run. Replicas are kept apart by the
lease on the claimed rows (sender.py)."""
from __future__ import annotations

import logging

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider, Entrypoint

from common.config import Settings
from common.wakeups import Wakeups
from services.notifications.sender import MailSettings
from services.notifications.smtp import SmtpServer

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class SenderWakeups(Wakeups):
    """Shared by the sender's loop and the dependency that wakes it."""


class SenderWakeup(DependencyProvider):
    """`self.wake_sender()` in a worker, after deliveries committed."""

    wakeups = SenderWakeups()

    def get_dependency(self, worker_ctx):
        return self.wakeups.wake


class MailSender(Entrypoint):
    wakeups = SenderWakeups()

    def __init__(self, **kwargs):
        self._running = False
        super().__init__(**kwargs)

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._loop)

    def stop(self):
        self._running = False
        self.wakeups.wake()

    def kill(self):
        self.stop()

    def _loop(self):
        while self._running:
            finished = Event()
            try:
                self.container.spawn_worker(self, (), {}, handle_result=lambda worker_ctx, result, exc_info: (
                    finished.send(result if exc_info is None else None), (result, exc_info))[1])
                result = finished.wait()  # the method logs its own failures; the next run retries
            except Exception as exc:  # the container is stopping, or cannot take a worker now
                if not self._running:
                    return
                log.warning("mail sender could not start a run: %s", exc)
                result = None
                eventlet.sleep(POLL_SECONDS)
            if not result:  # a full batch: the next one at once
                self.wakeups.wait(POLL_SECONDS)


mail_sender = MailSender.decorator


class MailConfiguration(DependencyProvider):
    """`self.mail`: the sender's settings (sender.MailSettings), or None when SMTP_URL is
    unset — notifications off, said once at start-up."""

    def setup(self):
        settings = Settings.from_mapping(self.container.config)
        self.mail = None
        if settings.smtp_url is None:
            log.info("notifications off: SMTP_URL is not set (events are consumed, no mail is sent)")
            return
        self.mail = MailSettings(server=SmtpServer.from_url(settings.smtp_url), mail_from=settings.mail_from,
                                 console_url=settings.console_url)
        log.info("notifications on: mail from %s through %s", settings.mail_from, self.mail.server.describe())

    def get_dependency(self, worker_ctx):
        return self.mail
