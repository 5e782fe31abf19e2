"""`kagi board flash | verify`'s library, as tools/board.py and the technician's tests use it.

The flashing itself lives in firmware/board_flash.py, since the car unit flashes its board with
it too when a release carries new board firmware (SPEC O-OTA-3); these are its names.
"""

from __future__ import annotations

from firmware.board_flash import (
    BOARDS,
    MAIN,
    MANIFEST,
    PARKED,
    PATIENCE_S,
    PLATFORMS,
    TMP,
    BoardInfo,
    Console,
    FileCheck,
    Firmware,
    FlashError,
    FlashResult,
    LostBoard,
    NoDevice,
    NoPermission,
    NotMicroPython,
    PortBusy,
    Progress,
    VerifyResult,
    WrongBoard,
    _open_error,
    check_board,
    compare,
    find_port,
    firmware,
    flash,
    from_files,
    hello_on_link,
    sha256,
    verify,
)

__all__ = [
    "BOARDS", "MAIN", "MANIFEST", "PARKED", "PATIENCE_S", "PLATFORMS", "TMP", "BoardInfo",
    "Console", "FileCheck", "Firmware", "FlashError", "FlashResult", "LostBoard", "NoDevice",
    "NoPermission", "NotMicroPython", "PortBusy", "Progress", "VerifyResult", "WrongBoard",
    "_open_error", "check_board", "compare", "find_port", "firmware", "flash", "from_files",
    "hello_on_link", "sha256", "verify",
]  # fmt: skip
