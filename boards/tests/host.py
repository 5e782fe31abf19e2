"""A bare host for board tests: the link's frames, byte for byte, on the host end of a pty.

Tests write exactly the bytes they mean (good frames, bad ones, repeats) and read what the board
answers, decoded with the same `boards.common.link` the board runs.
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty

from boards.common import link


class RawHost:
    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd, termios.TCSANOW)  # not TCSAFLUSH: keep what the board sent
        self.decoder = link.Decoder()
        self.pending: list[link.Frame | link.FrameError] = []
        self.seq = 0

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def receive(self, timeout: float = 1.0, count: int = 1) -> list[link.Frame | link.FrameError]:
        """What the board sent, once `count` items arrived or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while len(self.pending) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                self.pending += self.decoder.feed(os.read(self.fd, 4096))
        out, self.pending = self.pending, []
        return out

    def frame(self, timeout: float = 1.0) -> link.Frame:
        items = self.receive(timeout)
        assert items, f"no frame from the board within {timeout} s"
        first = items[0]
        self.pending = items[1:] + self.pending
        assert isinstance(first, link.Frame), first
        return first

    def command(self, name: str, *args: int, seq: int | None = None) -> link.Frame:
        """Send a command and return the board's ACK (input events met on the way are kept)."""
        if seq is None:
            self.seq = self.seq % 255 + 1
            seq = self.seq
        self.send(link.command(seq, name, *args))
        deadline = time.monotonic() + 1.0
        kept: list[link.Frame | link.FrameError] = []
        while time.monotonic() < deadline:
            for item in self.receive(deadline - time.monotonic()):
                if isinstance(item, link.Frame) and item.kind == link.ACK and item.seq == seq:
                    self.pending = kept + self.pending
                    return item
                kept.append(item)
        self.pending = kept + self.pending
        raise AssertionError(f"no ACK for {name} (frame {seq}); got {kept}")
