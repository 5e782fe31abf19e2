"""A real SMTP server (aiosmtpd on a thread) that keeps the mails it receives, for tests and
the HIL rig; it can refuse mail for a while."""

from __future__ import annotations

import email
import email.policy
import socket
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Mailbox:
    """An SMTP server that keeps what it receives; it can refuse mail for a while."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.messages: list[EmailMessage] = []
        self.refuse = False
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def subjects(self, to: str | None = None) -> list[str]:
        return [str(m["Subject"]) for m in self.messages if to is None or to in str(m["To"])]

    def one(self, subject_part: str, to: str) -> str:
        found = [m for m in self.messages if subject_part in str(m["Subject"]) and to in m["To"]]
        assert len(found) == 1, f"{len(found)} mails {subject_part!r} to {to}"
        body = found[0].get_body()
        assert body is not None
        return str(body.get_content())
