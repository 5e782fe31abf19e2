"""The pin maps as data: complete, no pin used twice, nothing wired where the chip forbids it, and
the same as the wiring tables of `docs/board.md` (a test fails when the page drifts)."""

from __future__ import annotations

import re

import pytest

from boards.common import link
from boards.sim.rig import BOARDS, load_pins

DOC = BOARDS.parent / "docs" / "board.md"
OUTPUTS = (
    "lock",
    "unlock",
    "immobiliser",
    "hazard",
    "keybox",
    "led_red",
    "led_green",
    "led_yellow",
)


def used_gpios(pins) -> list[int]:
    gpios = [gpio for gpio, _active, _pull in pins.INPUTS.values()]
    gpios += [*pins.OUTPUTS.values(), pins.BUZZER]
    for uart in (pins.HOST_UART, pins.VOICE_UART):
        gpios += [uart["tx"], uart["rx"]]
    return gpios


@pytest.mark.parametrize("board", ["pico", "esp32"])
def test_a_pin_map_wires_every_input_and_output_once(board):
    pins = load_pins(board)
    assert tuple(pins.INPUTS) == link.INPUTS
    assert set(pins.OUTPUTS) == set(OUTPUTS)
    gpios = used_gpios(pins)
    assert len(gpios) == len(set(gpios)), "a GPIO is used twice"
    for _gpio, active, pull in pins.INPUTS.values():
        assert active in (0, 1) and pull in ("up", "down", None)
    assert board == pins.BOARD and pins.PINMAP and pins.DESCRIPTION


def test_the_pico_uses_only_its_gpios():
    pins = load_pins("pico")
    assert all(0 <= g <= 28 and g not in (23, 24, 25) for g in used_gpios(pins))
    assert pins.HOST_UART == {"id": 0, "tx": 0, "rx": 1}  # UART0's own pins


def test_the_esp32_avoids_its_flash_strapping_and_input_only_traps():
    pins = load_pins("esp32")
    gpios = used_gpios(pins)
    assert not set(gpios) & {1, 3, 6, 7, 8, 9, 10, 11}  # the USB console and the flash
    relays = [pins.OUTPUTS[n] for n in ("lock", "unlock", "immobiliser", "hazard", "keybox")]
    assert not set(relays) & {0, 2, 5, 12, 15}  # no relay clicks while the chip boots
    assert 12 not in gpios  # pulled high at boot it would pick the wrong flash voltage
    for gpio, _active, pull in pins.INPUTS.values():
        if gpio >= 34:  # input only, no internal pull: the carrier board has the resistor
            assert pull is None
    outputs = [*pins.OUTPUTS.values(), pins.BUZZER, pins.HOST_UART["tx"], pins.VOICE_UART["tx"]]
    assert all(g < 34 for g in outputs)


def doc_table(board: str) -> dict[str, str]:
    """`| name | GPIO | … |` rows of the board's wiring table in docs/board.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"<!-- pins:{board} -->")[1].split("<!-- /pins -->")[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \|", section, flags=re.M)
    return dict(rows)


@pytest.mark.parametrize("board", ["pico", "esp32"])
def test_the_wiring_table_in_the_docs_is_the_pin_map(board):
    pins = load_pins(board)
    want = {name: str(gpio) for name, (gpio, _a, _p) in pins.INPUTS.items()}
    want.update({name: str(gpio) for name, gpio in pins.OUTPUTS.items()})
    want["buzzer"] = str(pins.BUZZER)
    for uart, which in ((pins.HOST_UART, "host"), (pins.VOICE_UART, "voice")):
        want[f"{which}_tx"], want[f"{which}_rx"] = str(uart["tx"]), str(uart["rx"])
    assert doc_table(board) == want
