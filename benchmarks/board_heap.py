"""The board firmware's heap over an hour of simulated use, in the 96 kB an RP2040 leaves free.

Runs the board's own modules (`boards/common/`: switches, outputs, the link's Peer) under the
MicroPython unix port with `-X heapsize=96K`, on simulated time in 10 ms steps: the host's
heartbeat every 500 ms, a door opened and closed every 30 s (events sent until acknowledged),
lock, unlock, LED and voice commands every minute. After each simulated minute it collects and
reads the heap in use (the modules' code and what they hold); it prints the first and last
minutes, the highest, and the growth from the first to the last minute (a leak would grow).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from boards.sim.rig import BOARDS, RP2040_HEAP, heap_args, micropython_command

MINUTES = int(sys.argv[1]) if len(sys.argv) > 1 else 60

SCRIPT = """
import gc, json, app, link, outputs, switches
class P:
    def __init__(self, level=1): self.level = level
    def value(self, *v):
        if v: self.level = v[0]
        return self.level
class Buzzer:
    def freq(self, hz): pass
    def duty_u16(self, d): pass
class Uart:
    def write(self, b): return len(b)
door = P(1)
sw = switches.Switches([(door, 0)] + [(P(1), 0) for _ in range(6)], 30, 0)
NAMES = ("lock", "unlock", "immobiliser", "hazard", "keybox", "led_red", "led_green", "led_yellow")
out = outputs.Outputs({n: P(0) for n in NAMES}, Buzzer(), Uart(), 300, 0, False, False)
pending = []
def write(b):
    for f in link.Decoder().feed(b):
        if not isinstance(f, link.FrameError) and f.kind != link.ACK:
            pending.append(f.seq)
def apply(name, args, now):
    if name == "lock": out.lock(now)
    elif name == "unlock": out.unlock(now)
    return b""
hello = link.Hello(link.VERSION, 0xBEEF, 1, 0, "pico", "0.1.0", "pico-r1")
peer = app.Peer(write, apply, hello, {"heartbeat_timeout_ms": 2000, "event_retry_ms": 200}, 0)
seq = 0
def host(name, *args):
    global seq
    seq = (seq + 1) % 256
    return link.command(seq, name, *args)
now = 0
for minute in range(MINUTES):
    for step in range(6000):
        now += 10
        if now % 500 == 0:
            peer.receive(host("heartbeat"), now)
        if now % 30000 == 0:
            door.level = 1 - door.level
        if now % 60000 == 20000:
            peer.receive(host("unlock"), now)
        if now % 60000 == 40000:
            peer.receive(host("lock"), now)
        for change in sw.poll(now):
            peer.event(link.INPUT, link.input_payload(change[0], change[1], change[2]), now)
        while pending:
            peer.receive(link.ack(pending.pop(0)), now)
        out.tick(now)
        peer.tick(now)
    gc.collect()
    print(gc.mem_alloc())  # printed, not kept: a list kept here would grow the heap itself
print(json.dumps({"free": gc.mem_free()}))
"""


def main() -> None:
    import json
    import os

    env = dict(os.environ)
    folders = [str(BOARDS / p) for p in ("sim", "common", "pico")]
    env["MICROPYPATH"] = ":".join([*folders, ".frozen"])
    code = f"MINUTES = {MINUTES}\n" + textwrap.dedent(SCRIPT)
    done = subprocess.run(
        [micropython_command(), *heap_args(RP2040_HEAP), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"micropython failed:\n{done.stdout}{done.stderr}")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    minutes = [int(line) for line in lines[:-1]]
    print(f"board heap over {MINUTES} simulated minutes in a {RP2040_HEAP} heap (unix port)")
    print("| measure | bytes |")
    print("| --- | --- |")
    print(f"| in use after the first minute (collected) | {minutes[0]:,} |")
    print(f"| in use after the last minute (collected) | {minutes[-1]:,} |")
    print(f"| growth, first to last minute | {minutes[-1] - minutes[0]:+,} |")
    print(f"| high-water mark (collected, any minute) | {max(minutes):,} |")
    print(f"| free at the end | {result['free']:,} |")


if __name__ == "__main__":
    main()
