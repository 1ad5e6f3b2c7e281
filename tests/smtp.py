"""A real SMTP server on localhost (aiosmtpd) for the tests of tenant mail: what it received,
as envelopes (recipients) and as parsed messages."""

from __future__ import annotations

import email
import socket
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class LocalSmtp:
    port: int = 0
    envelopes: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    @property
    def messages(self) -> list[email.message.Message]:
        return [email.message_from_bytes(envelope.content) for envelope in self.envelopes]

    def credentials(self, **extra) -> dict:
        """A tenant's smtp credentials pointing here."""
        return {"HOST": "127.0.0.1", "PORT": str(self.port), **extra}


def start() -> tuple[LocalSmtp, Controller]:
    server = LocalSmtp()
    with socket.socket() as probe:  # aiosmtpd's readiness check cannot use port 0
        probe.bind(("127.0.0.1", 0))
        server.port = probe.getsockname()[1]
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    return server, controller
