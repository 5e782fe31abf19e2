"""The state diagram in docs/ is the one the machine definition draws (no drift)."""

from __future__ import annotations

from pathlib import Path

from firmware import diagram, machine

DOC = Path(__file__).resolve().parents[2] / "docs" / "trip-states.md"


def test_committed_diagram_matches_the_machine():
    assert DOC.read_text(encoding="utf-8") == diagram.render(), "run `make diagram`"


def test_every_state_and_trigger_is_drawn():
    text = diagram.render()
    for state in machine.STATES:
        assert f'state "{state}"' in text
    for transition in machine.TRANSITIONS:
        assert transition["trigger"] in text
