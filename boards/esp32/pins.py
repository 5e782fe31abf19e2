"""ESP32 DevKitC (ESP32-WROOM-32) on the kagi carrier board, revision 1: the pin map, as data.

Same carrier as the Pico's (opto-coupled inputs pulling to ground, active-high outputs). GPIO
34, 35, 36 and 39 are input-only without internal pulls: the carrier has 10 kΩ pull-ups on them.
No relay sits on a strapping pin (0, 2, 5, 12, 15), so none clicks at boot; GPIO 2 and 15 drive
an LED and the buzzer. UART0 stays the USB console; the host is on UART2, the voice module on
UART1 (its RX on GPIO 0, which the DFPlayer's idle-high TX keeps high at boot as it must be).
"""

BOARD = "esp32"
PINMAP = "esp32-devkitc-r1"
DESCRIPTION = "ESP32 DevKitC (ESP32-WROOM-32), kagi carrier board r1"

# input: (GPIO, level when on, pull): pull is "up", "down" or None (a resistor on the board)
INPUTS = {
    "door_driver": (34, 0, None),
    "door_passenger": (35, 0, None),
    "door_rear_left": (36, 0, None),
    "door_rear_right": (39, 0, None),
    "tailgate": (32, 0, "up"),
    "key_present": (33, 0, "up"),
    "key_lend": (25, 0, "up"),
    "engine": (26, 0, "up"),
    "brake": (27, 0, "up"),
    "lights": (14, 0, "up"),
}

# output: GPIO, active high
OUTPUTS = {
    "lock": 4,
    "unlock": 13,
    "immobiliser": 18,
    "hazard": 19,
    "keybox": 21,
    "led_red": 22,
    "led_green": 23,
    "led_yellow": 2,
}
BUZZER = 15  # PWM

HOST_UART = {"id": 2, "tx": 17, "rx": 16}
VOICE_UART = {"id": 1, "tx": 5, "rx": 0, "baudrate": 9600}

SETTINGS: dict[str, int] = {}  # this board's changes to app.DEFAULTS
