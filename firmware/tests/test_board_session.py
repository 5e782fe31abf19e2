"""The session of the board link without a board: scripted bytes in, the exact bytes out.

Each test feeds `BoardSession` the board's frames at chosen instants and checks what the unit
puts on the wire and what it posts to the runner. The frames are written out byte for byte
(`00 | COBS(LEN SEQ TYPE PAYLOAD CRC-32) | 00`, docs/board.md); `test_the_scripted_frames_are_
what_the_link_module_builds` checks them against `boards.common.link`, the module both ends run.
"""

from __future__ import annotations

import logging

import pytest

from boards.common import link
from firmware.board_session import BoardLinkError, BoardRefused, BoardSession, LinkTiming
from firmware.effects import Immobiliser, Lock, Report, Unlock
from firmware.inputs import (
    BoardLinkChanged,
    BrakeChanged,
    DoorChanged,
    EngineChanged,
    KeyChanged,
    LightsChanged,
)

# times in binary fractions of a second, so that every sum below is exact
TIMING = LinkTiming(heartbeat_s=0.5, ack_timeout_s=0.25, tries=3, reconnect_s=1.0)

# unit: hello (link version 1), SEQ 1
HELLO_1 = b"\x00\x09\x01\x01\x10\x01\xa5\xff\xf0\x89\x00"
# board: ACK 1 ok, hello: link 1, boot id beef, power on, pico 0.1.0 pico-r1
HELLO_1_ANSWER = (
    b"\x00\x04\x1c\x01\x02\x05\x01\xbe\xef\x01\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\x5f\xe2\x09"
    b"\x2e\x00"
)
# board: ACK 1 ok, the same hello but link version 2
HELLO_1_ANSWER_V2 = (
    b"\x00\x04\x1c\x01\x02\x05\x02\xbe\xef\x01\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\xec\x76\x24"
    b"\xed\x00"
)
# board: ACK 2 ok, the same hello of link version 2
HELLO_2_ANSWER_V2 = (
    b"\x00\x04\x1c\x02\x02\x05\x02\xbe\xef\x01\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\xa8\xd7\x01"
    b"\xf5\x00"
)
# unit: status, SEQ 2
STATUS_2 = b"\x00\x01\x07\x02\x12\x3e\xce\xca\xd8\x00"
# board: ACK 2 ok, status: key in the box, parking brake on, the rest off
STATUS_2_ANSWER = (
    b"\x00\x04\x0a\x02\x02\x03\x01\x20\x01\x04\x03\xe8\x03\x01\x05\x39\x5c\xdc\xb1\x00"
)
# unit: hello, SEQ 2
HELLO_2 = b"\x00\x09\x01\x02\x10\x01\xa7\xb9\x4e\xd0\x00"
# unit: heartbeat, SEQ 3
HEARTBEAT_3 = b"\x00\x01\x07\x03\x11\xbe\xdc\xaa\x23\x00"
# board: ACK 3 ok, boot id beef
HEARTBEAT_3_ANSWER = b"\x00\x04\x03\x03\x02\x07\xbe\xef\x90\x0c\x1d\x89\x00"
# board: ACK 3 ok, boot id 1234
HEARTBEAT_3_ANSWER_NEW_BOOT = b"\x00\x04\x03\x03\x02\x07\x12\x34\x83\xbf\xe5\x30\x00"
# unit: unlock, SEQ 3
UNLOCK_3 = b"\x00\x01\x07\x03\x21\x98\x05\x9a\x8f\x00"
# board: ACK 3 ok
ACK_3 = b"\x00\x04\x01\x03\x02\x05\xa9\x88\x64\xa2\x00"
# board: ACK 3 bad arguments
ACK_3_BAD_ARGS = b"\x00\x09\x01\x03\x02\x02\x47\x86\x05\x8e\x00"
# unit: lock, SEQ 4
LOCK_4 = b"\x00\x01\x07\x04\x20\xa0\x43\x3c\xde\x00"
# unit: immobiliser 0, SEQ 3
IMMOBILISER_OFF_3 = b"\x00\x04\x01\x03\x22\x04\x3c\x0c\x40\x01\x00"
# unit: hello, SEQ 3
HELLO_3 = b"\x00\x09\x01\x03\x10\x01\xa6\x7b\x24\xe7\x00"
# unit: hello, SEQ 4
HELLO_4 = b"\x00\x09\x01\x04\x10\x01\xa3\x34\x32\x62\x00"
# board: ACK 3 ok, hello: boot id 1234, reset by its watchdog
HELLO_3_ANSWER_REBOOTED = (
    b"\x00\x04\x1c\x03\x02\x05\x01\x12\x34\x03\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\x0b\x43\x68"
    b"\x25\x00"
)
# board: ACK 3 ok, hello (boot id beef)
HELLO_3_ANSWER = (
    b"\x00\x04\x1c\x03\x02\x05\x01\xbe\xef\x01\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\x27\x23\xcf"
    b"\x3e\x00"
)
# board: ACK 4 ok, hello (boot id beef)
HELLO_4_ANSWER = (
    b"\x00\x04\x1c\x04\x02\x05\x01\xbe\xef\x01\x01\x01\x01\x18\x04\x70\x69\x63"
    b"\x6f\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\x92\x01\x66"
    b"\x06\x00"
)
# unit: status, SEQ 4
STATUS_4 = b"\x00\x01\x07\x04\x12\x68\x94\x6d\x5e\x00"
# board: ACK 4 ok, the status above
STATUS_4_ANSWER = (
    b"\x00\x04\x0a\x04\x02\x03\x01\x20\x01\x04\x03\xe8\x03\x01\x05\xd6\x61\x79\x51\x00"
)
# unit: status, SEQ 5
STATUS_5 = b"\x00\x01\x07\x05\x12\x71\x8f\x5c\x1f\x00"
# board: ACK 5 ok, the status above
STATUS_5_ANSWER = (
    b"\x00\x04\x0a\x05\x02\x03\x01\x20\x01\x04\x03\xe8\x03\x01\x05\x4d\xc4\x35\x3e\x00"
)
# board: HELLO at boot, SEQ 0: boot id 1234, reset by its watchdog
BOOT_HELLO_REBOOTED = (
    b"\x00\x02\x1b\x06\x01\x01\x12\x34\x03\x01\x01\x01\x18\x04\x70\x69\x63\x6f"
    b"\x05\x30\x2e\x31\x2e\x30\x07\x70\x69\x63\x6f\x2d\x72\x31\x4f\xb0\xff\xaa"
    b"\x00"
)
# board: input 1, driver's door open at 5000 ms
DOOR_OPEN_1 = b"\x00\x04\x06\x01\x30\x02\x01\x01\x07\x13\x88\x4e\x36\xab\xd8\x00"
# unit: ACK 1 ok
ACK_1 = b"\x00\x04\x01\x01\x02\x05\xaa\x0c\xb0\xcc\x00"
# board: input 255, driver's door closed at 6000 ms
DOOR_CLOSED_255 = b"\x00\x04\x06\xff\x30\x01\x01\x01\x07\x17\x70\x4e\xbd\x3b\x3a\x00"
# unit: ACK 255 ok
ACK_255 = b"\x00\x04\x01\xff\x02\x05\x15\x56\xee\x16\x00"
# board: link lost 1, 2500 ms without heartbeat
LINK_LOST_1 = b"\x00\x04\x04\x01\x31\x01\x07\x09\xc4\x73\xf5\x04\x1e\x00"
# unit: heartbeat, SEQ 255
HEARTBEAT_255 = b"\x00\x01\x07\xff\x11\x06\xd5\x04\x92\x00"
# unit: heartbeat, SEQ 1 (after 255)
HEARTBEAT_1 = b"\x00\x01\x07\x01\x11\x8c\xea\xc8\xa1\x00"
# board: input 1 as DOOR_OPEN_1 with one bit of its time changed (13 88 -> 14 88): its CRC fails
DOOR_OPEN_1_BAD_CRC = b"\x00\x04\x06\x01\x30\x02\x01\x01\x07\x14\x88\x4e\x36\xab\xd8\x00"

BOARD = {
    "name": "pico",
    "firmware": "0.1.0",
    "pinmap": "pico-r1",
    "build": "",
    "boot_id": 0xBEEF,
    "reset_cause": "power_on",
    "lost_ms": 0,
}
EVERY_INPUT = [  # what STATUS_*_ANSWER says, as the core hears it
    DoorChanged("driver", False),
    DoorChanged("passenger", False),
    DoorChanged("rear_left", False),
    DoorChanged("rear_right", False),
    DoorChanged("tailgate", False),
    KeyChanged(True, "return"),
    EngineChanged(False),
    BrakeChanged(True),
    LightsChanged(False),
]


def connected(now: float = 0.0) -> BoardSession:
    """A session whose link came up at `now` (SEQ 1 and 2 used), with nothing left to read."""
    session = BoardSession("pty", TIMING)
    session.opened(now)
    assert session.data_to_send() == HELLO_1
    session.receive(HELLO_1_ANSWER, now)
    assert session.data_to_send() == STATUS_2
    session.receive(STATUS_2_ANSWER, now)
    assert session.data_to_send() == b""
    assert session.inputs_to_post()[-1] == BoardLinkChanged(True, "connected", BOARD)
    return session


def test_the_scripted_frames_are_what_the_link_module_builds():
    hello = link.Hello(1, 0xBEEF, 1, 0, "pico", "0.1.0", "pico-r1")
    status = link.Status(0x120, 1000, True, True, 0, 0)
    assert link.command(1, "hello", link.VERSION) == HELLO_1
    assert link.ack(1, link.OK, hello.payload()) == HELLO_1_ANSWER
    assert link.ack(2, link.OK, status.payload()) == STATUS_2_ANSWER
    assert link.command(3, "unlock") == UNLOCK_3
    assert link.encode(1, link.INPUT, link.input_payload(0, True, 5000)) == DOOR_OPEN_1
    assert link.command(255, "heartbeat") == HEARTBEAT_255


def test_nothing_is_said_before_the_line_is_open():
    session = BoardSession("pty", TIMING)
    session.tick(5.0)
    assert session.data_to_send() == b""
    assert session.next_deadline() is None
    assert not session.up


def test_the_hello_exchange_reads_every_input_then_the_link_is_up():
    session = BoardSession("pty", TIMING)
    session.opened(0.0)
    assert session.data_to_send() == HELLO_1
    assert not session.up and session.inputs_to_post() == []
    session.receive(HELLO_1_ANSWER, 0.125)
    assert session.data_to_send() == STATUS_2  # the hello is fine: every input next
    assert not session.up and session.inputs_to_post() == []
    session.receive(STATUS_2_ANSWER, 0.25)
    assert session.data_to_send() == b""
    assert session.inputs_to_post() == [*EVERY_INPUT, BoardLinkChanged(True, "connected", BOARD)]
    assert session.up and session.board is not None and session.board.pinmap == "pico-r1"
    assert session.counters == {"commands": 2, "retries": 0, "bad_frames": 0, "duplicates": 0}


def test_a_board_of_another_link_version_is_refused_once_and_asked_again_later(caplog):
    session = BoardSession("pty", TIMING)
    session.opened(0.0)
    assert session.data_to_send() == HELLO_1
    session.receive(HELLO_1_ANSWER_V2, 0.0)
    assert session.data_to_send() == b""  # no status: nothing more for a board it cannot use
    why = "board 'pico' speaks link version 2, this unit 1: not using it"
    (down,) = session.inputs_to_post()
    assert isinstance(down, BoardLinkChanged) and not down.up and why in down.reason
    assert session.next_deadline() == 1.0
    session.tick(0.875)
    assert session.data_to_send() == b""
    session.tick(1.0)
    assert session.data_to_send() == HELLO_2  # reconnect_s later
    session.receive(HELLO_2_ANSWER_V2, 1.0)
    assert session.data_to_send() == b""
    assert session.counters["bad_frames"] == 0 and session.next_deadline() == 2.0
    assert session.inputs_to_post() == []  # told once per outage
    assert caplog.text.count(why) == 1


def test_an_output_is_one_command_and_done_at_its_ack():
    session = connected()
    cmd = session.apply(Unlock(), 0.125)
    assert session.data_to_send() == UNLOCK_3
    assert cmd is not None and not cmd.done
    session.receive(ACK_3, 0.1875)
    assert cmd.done and cmd.answer == b"" and cmd.error is None
    assert session.data_to_send() == b"" and session.inputs_to_post() == []
    assert session.apply(Report("trip_started"), 0.25) is None  # not an output: nothing sent
    assert session.data_to_send() == b""


def test_an_immobiliser_off_carries_its_argument():
    session = connected()
    session.apply(Immobiliser(False), 0.0)
    assert session.data_to_send() == IMMOBILISER_OFF_3


def test_a_command_the_board_refuses_fails_and_the_link_stays_up(caplog):
    session = connected()
    cmd = session.command("unlock", now=0.0)
    assert session.data_to_send() == UNLOCK_3
    session.receive(ACK_3_BAD_ARGS, 0.0)
    assert isinstance(cmd.error, BoardRefused)
    with pytest.raises(BoardRefused, match=r"the board refused unlock\(\): bad arguments"):
        cmd.result()
    assert session.up and session.inputs_to_post() == []


def test_an_unanswered_command_is_sent_again_with_the_same_seq():
    session = connected()
    cmd = session.apply(Unlock(), 1.0)
    assert session.data_to_send() == UNLOCK_3
    assert session.next_deadline() == 1.25
    session.tick(1.125)
    assert session.data_to_send() == b""  # not yet
    session.tick(1.25)
    assert session.data_to_send() == UNLOCK_3  # the same frame, SEQ 3 again
    assert session.counters["retries"] == 1
    session.receive(ACK_3, 1.375)  # the board applies SEQ 3 once, however often it came
    assert cmd is not None and cmd.answer == b""
    assert session.up and session.inputs_to_post() == []


def test_after_three_tries_the_link_is_down_and_the_unit_says_hello(caplog):
    session = connected()
    cmd = session.apply(Unlock(), 1.0)
    assert session.data_to_send() == UNLOCK_3
    session.tick(1.25)
    assert session.data_to_send() == UNLOCK_3
    session.tick(1.5)
    assert session.data_to_send() == UNLOCK_3
    session.tick(1.75)
    assert cmd is not None and isinstance(cmd.error, BoardLinkError)
    assert not session.up
    assert session.inputs_to_post() == [
        BoardLinkChanged(False, "no answer to unlock after 3 tries")
    ]
    assert session.data_to_send() == HELLO_4  # at once: is anybody there?
    assert "board: Unlock not applied: no answer to unlock after 3 tries" in caplog.text
    assert session.apply(Lock(), 1.875) is None  # nothing sent into the void while down
    assert session.data_to_send() == b""
    assert session.counters == {"commands": 4, "retries": 2, "bad_frames": 0, "duplicates": 0}


def test_a_heartbeat_when_nothing_was_sent_for_half_a_second():
    session = connected(0.0)
    assert session.next_deadline() == 0.5
    session.tick(0.375)
    assert session.data_to_send() == b""
    session.tick(0.5)
    assert session.data_to_send() == HEARTBEAT_3
    session.receive(HEARTBEAT_3_ANSWER, 0.5)
    assert session.up and session.inputs_to_post() == [] and session.data_to_send() == b""
    session.receive(DOOR_OPEN_1, 0.75)  # its ACK is something sent: the next beat waits
    assert session.data_to_send() == ACK_1
    assert session.next_deadline() == 1.25


def test_the_link_is_down_when_the_heartbeat_answers_stop_and_back_with_the_board():
    session = connected(0.0)
    for now in (0.5, 0.75, 1.0):  # sent, and twice again
        session.tick(now)
        assert session.data_to_send() == HEARTBEAT_3, now
    session.tick(1.25)
    assert session.inputs_to_post() == [
        BoardLinkChanged(False, "no heartbeat answer (no answer to heartbeat after 3 tries)")
    ]
    assert not session.up
    assert session.data_to_send() == HELLO_4
    session.receive(HELLO_4_ANSWER, 1.5)
    assert session.data_to_send() == STATUS_5
    session.receive(STATUS_5_ANSWER, 1.5)
    assert session.inputs_to_post() == [*EVERY_INPUT, BoardLinkChanged(True, "reconnected", BOARD)]


def test_a_new_boot_id_in_a_heartbeat_answer_is_a_board_restart():
    session = connected(0.0)
    session.tick(0.5)
    assert session.data_to_send() == HEARTBEAT_3
    session.receive(HEARTBEAT_3_ANSWER_NEW_BOOT, 0.5)
    assert session.data_to_send() == HELLO_4  # its boot HELLO was lost: hello again


def test_a_bad_checksum_frame_is_dropped_with_a_log_line(caplog):
    session = connected()
    caplog.set_level(logging.WARNING, logger="firmware.board_session")
    session.receive(DOOR_OPEN_1_BAD_CRC, 0.125)
    assert session.data_to_send() == b""  # no ACK: the board sends it again
    assert session.inputs_to_post() == []
    assert session.counters["bad_frames"] == 1
    assert (
        "board: dropped a bad frame from the line: crc: CRC mismatch (seq 1, type 0x30)"
        in caplog.text
    )
    session.receive(DOOR_OPEN_1_BAD_CRC + DOOR_OPEN_1, 0.25)  # noise costs only its own frame
    assert session.data_to_send() == ACK_1
    assert session.inputs_to_post() == [DoorChanged("driver", True)]
    assert caplog.text.count("dropped a bad frame") == 1  # a burst is summed up once a second
    session.receive(DOOR_OPEN_1_BAD_CRC, 1.25)
    assert "(and 1 more since the last report)" in caplog.text
    assert session.counters["bad_frames"] == 3 and session.up


def test_a_repeated_event_is_acknowledged_again_and_posted_once():
    session = connected()
    session.receive(DOOR_OPEN_1, 1.0)
    assert session.data_to_send() == ACK_1
    assert session.inputs_to_post() == [DoorChanged("driver", True)]
    session.receive(DOOR_OPEN_1, 1.25)  # our ACK was lost: the board sent SEQ 1 again
    assert session.data_to_send() == ACK_1
    assert session.inputs_to_post() == []
    assert session.counters["duplicates"] == 1


def test_sequence_numbers_wrap_from_255_to_1_both_ways():
    session = connected(0.0)
    now = 0.0
    for seq in range(3, 255):  # heartbeats 3..254, each answered
        now += 0.5
        session.tick(now)
        assert session.data_to_send() == link.command(seq, "heartbeat")
        session.receive(link.ack(seq, link.OK, b"\xbe\xef"), now)
    session.tick(now + 0.5)
    assert session.data_to_send() == HEARTBEAT_255
    session.receive(link.ack(255, link.OK, b"\xbe\xef"), now + 0.5)
    session.tick(now + 1.0)
    assert session.data_to_send() == HEARTBEAT_1  # never 0: that is the board's boot HELLO
    # the board's numbers wrap too: 255 then 1 are two events, not a repeat
    session.receive(DOOR_CLOSED_255, now + 1.0)
    session.receive(DOOR_OPEN_1, now + 1.0)
    assert session.data_to_send() == ACK_255 + ACK_1
    assert session.inputs_to_post() == [DoorChanged("driver", False), DoorChanged("driver", True)]


def test_a_board_reboot_mid_session_is_a_new_hello_and_every_input_again():
    session = connected()
    session.receive(DOOR_OPEN_1, 1.0)
    assert session.data_to_send() == ACK_1
    session.inputs_to_post()
    session.receive(BOOT_HELLO_REBOOTED, 2.0)  # not acknowledged: the unit says hello
    assert session.data_to_send() == HELLO_3
    assert session.up  # for the unit the link is fine meanwhile
    session.receive(HELLO_3_ANSWER_REBOOTED, 2.0)
    assert session.data_to_send() == STATUS_4
    session.receive(STATUS_4_ANSWER, 2.0)
    rebooted = {**BOARD, "boot_id": 0x1234, "reset_cause": "watchdog"}
    assert session.inputs_to_post() == [
        *EVERY_INPUT,
        BoardLinkChanged(True, "board_restarted", rebooted),
    ]
    session.receive(DOOR_OPEN_1, 2.5)  # the new boot counts from 1: not a repeat
    assert session.data_to_send() == ACK_1
    assert session.inputs_to_post() == [DoorChanged("driver", True)]


def test_the_boards_report_of_a_lost_heartbeat_makes_it_read_again():
    session = connected()
    session.receive(LINK_LOST_1, 3.0)
    assert session.data_to_send() == ACK_1 + HELLO_3
    session.receive(HELLO_3_ANSWER, 3.0)
    assert session.data_to_send() == STATUS_4
    session.receive(STATUS_4_ANSWER, 3.0)
    lost = {**BOARD, "lost_ms": 2500}
    assert session.inputs_to_post() == [
        *EVERY_INPUT,
        BoardLinkChanged(True, "board_lost_heartbeat", lost),
    ]


def test_the_line_failing_fails_the_command_and_a_new_line_says_hello():
    session = connected()
    cmd = session.command("unlock", now=1.0)
    assert session.data_to_send() == UNLOCK_3
    session.closed("device disconnected", 1.125)
    with pytest.raises(BoardLinkError, match="pty: device disconnected"):
        cmd.result()
    assert session.inputs_to_post() == [BoardLinkChanged(False, "serial port: device disconnected")]
    assert session.next_deadline() is None and session.data_to_send() == b""
    session.opened(1.5)
    assert session.data_to_send() == HELLO_4


def test_a_command_while_the_link_is_down_is_not_sent():
    session = BoardSession("pty", TIMING)
    cmd = session.command("status", now=0.0)
    with pytest.raises(BoardLinkError, match="the link is down: status not sent"):
        cmd.result()
    assert session.data_to_send() == b""
