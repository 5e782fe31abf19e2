"""Raspberry Pi Pico (RP2040) on the kagi carrier board, revision 1: the pin map, as data.

The carrier board takes 12 V car signals through opto-couplers that pull a GPIO to ground when
the switch is on, and drives relays and lamps through low-side transistors (active high).
The host (the car unit) is on UART0 through a USB-serial adapter; the voice module (a DFPlayer
Mini) on UART1. `docs/board.md` has the wiring table.
"""

BOARD = "pico"
PINMAP = "pico-r1"
DESCRIPTION = "Raspberry Pi Pico (RP2040), kagi carrier board r1"

# input: (GPIO, level when on, pull): pull is "up", "down" or None (a resistor on the board)
INPUTS = {
    "door_driver": (6, 0, "up"),
    "door_passenger": (7, 0, "up"),
    "door_rear_left": (8, 0, "up"),
    "door_rear_right": (9, 0, "up"),
    "tailgate": (10, 0, "up"),
    "key_present": (11, 0, "up"),
    "key_lend": (12, 0, "up"),
    "engine": (13, 0, "up"),
    "brake": (14, 0, "up"),
    "lights": (15, 0, "up"),
}

# output: GPIO, active high
OUTPUTS = {
    "lock": 16,
    "unlock": 17,
    "immobiliser": 18,
    "hazard": 19,
    "keybox": 20,
    "led_red": 21,
    "led_green": 22,
    "led_yellow": 26,
}
BUZZER = 27  # PWM

HOST_UART = {"id": 0, "tx": 0, "rx": 1}
VOICE_UART = {"id": 1, "tx": 4, "rx": 5, "baudrate": 9600}

SETTINGS: dict[str, int] = {}  # this board's changes to app.DEFAULTS
