"""The test SMTP server (tests/support/smtp_server.py) as a process a fixture starts and
stops, and the mails it received."""
from __future__ import annotations

import email
import email.policy
import socket
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).with_name("smtp_server.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServerProcess:
    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        self.process = subprocess.Popen([sys.executable, str(SCRIPT), "--port", str(self.port),
                                         "--folder", str(self.folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, "the test SMTP server exited"
                time.sleep(0.1)
        raise RuntimeError("the test SMTP server did not listen in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def mails(self, to: str | None = None) -> list[email.message.EmailMessage]:
        found = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                 for path in sorted(self.folder.glob("*.eml"))]
        return [mail for mail in found if to is None or to.lower() in mail["X-Envelope-To"].lower()]

    def wait_for(self, to: str, count: int, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.mails(to)
            if len(found) >= count:
                return found
            time.sleep(0.2)
        return self.mails(to)
