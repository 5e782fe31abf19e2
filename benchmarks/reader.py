"""How soon a presented card is reported: card present → `CardTapped` posted by the nfcpy reader
adapter, over nfcpy's udp driver against the emulated card. Prints one table; `make bench` runs it.

Each presentation comes at a random moment of the reader's polling cycle; two cards alternate, the
field emptied between them, so every presentation is a new tap. The goal is 100 ms (a Suica gate
completes in about 0.2 s). The strong card's row includes the Lite-S mutual authentication.
Emulator and reader share one process (two threads), which is the pessimistic case for the GIL.
"""

from __future__ import annotations

import random
import socket
import statistics
import sys
import threading
import time

from benchmarks._stats import pct
from firmware.inputs import CardTapped, Input
from firmware.reader_nfc import NfcReader
from tools.card_emulator import CardEmulator, EmulatedCard

TAPS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
MASTER = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
GOAL_MS = 100


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(cards: tuple[EmulatedCard, EmulatedCard], taps: int) -> tuple[list[float], int]:
    """Latencies in ms of `taps` presentations, and how many taps the reader posted."""
    url = f"udp:127.0.0.1:{free_udp_port()}"
    emulator = CardEmulator(url)
    posted: list[tuple[float, Input]] = []
    arrived = threading.Event()

    def post(event: Input) -> None:
        posted.append((time.perf_counter(), event))
        arrived.set()

    reader = NfcReader(url, MASTER)
    reader.start(post)
    reader.connected.wait(5)
    latencies: list[float] = []
    rng = random.Random(4)
    try:
        for i in range(taps):
            emulator.remove()
            time.sleep(rng.uniform(0.0, 0.08))  # a random phase of the polling cycle
            arrived.clear()
            emulator.present(cards[i % 2])
            presented = emulator.presented_at
            if not arrived.wait(5):
                raise RuntimeError(f"presentation {i}: no tap within 5 s")
            assert presented is not None
            latencies.append((posted[-1][0] - presented) * 1000)
        emulator.remove()
        time.sleep(0.3)  # anything late would show as an extra tap
    finally:
        reader.stop()
        emulator.stop()
    return latencies, sum(isinstance(e, CardTapped) for _, e in posted)


def main() -> None:
    plain = (
        EmulatedCard.plain(bytes.fromhex("0101010101010101")),
        EmulatedCard.plain(bytes.fromhex("0202020202020202")),
    )
    strong = (
        EmulatedCard.strong(bytes.fromhex("0303030303030303"), MASTER),
        EmulatedCard.strong(bytes.fromhex("0404040404040404"), MASTER),
    )
    rows = []
    for name, cards in (
        ("plain FeliCa (IDm only)", plain),
        ("strong (Lite-S mutual auth)", strong),
    ):
        values, reported = measure(cards, TAPS)
        rows.append((name, values, reported))
    print(
        f"{'card present -> tap reported':<30}{'taps':>6}{'reported':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'goal':>8}"
    )
    for name, values, reported in rows:
        print(
            f"{name:<30}{len(values):>6}{reported:>10}{statistics.median(values):>9.1f}"
            f"{pct(values, 0.99):>9.1f}{max(values):>9.1f}{f'{GOAL_MS} ms':>8}"
        )
    print("(nfcpy udp driver, emulated card in the same process; 'reported' = one per tap)")


if __name__ == "__main__":
    main()
