"""A real SMTP server for the mail tests (aiosmtpd), run as its own process: each message it
accepts is stored as `<n>.eml` in a folder (with its envelope in `X-Envelope-*` headers).
A recipient whose local part starts with `defer` is refused with 451 (try later), with
`reject` with 550 (permanent).

    python tests/support/smtp_server.py --port 2525 --folder /tmp/mails
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
from pathlib import Path

from aiosmtpd.controller import Controller


class StoreInFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.numbers = itertools.count(len(list(folder.glob("*.eml"))) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.partition("@")[0].lower()
        if local.startswith("defer"):
            return "451 4.3.0 try again later"
        if local.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        number = next(self.numbers)
        head = (f"X-Envelope-From: {envelope.mail_from}\r\n"
                f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        partial = self.folder / f".{number}.part"
        partial.write_bytes(head + envelope.original_content)
        os.replace(partial, self.folder / f"{number:05d}.eml")  # readers never see half a mail
        return "250 Message accepted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(StoreInFolder(args.folder), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"smtp listening on 127.0.0.1:{args.port}", flush=True)
    stop = asyncio.new_event_loop()
    signal.signal(signal.SIGTERM, lambda *_: stop.call_soon_threadsafe(stop.stop))
    signal.signal(signal.SIGINT, lambda *_: stop.call_soon_threadsafe(stop.stop))
    stop.run_forever()
    controller.stop()


if __name__ == "__main__":
    main()
