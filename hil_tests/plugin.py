"""The rig's pytest plugin: `--rig NAME` (or $KAGI_RIG; default `sim`), the `rig` fixture that
starts a whole car and its cloud as real processes for each test, and the `needs` marker.

    @pytest.mark.needs("power_cut")
    def test_the_trip_survives_a_power_cut(rig): ...

`hand` is the driver's hand at the reader (`hand.tap(card)`), for scenarios that tap more
than once. A test needing a feature its rig lacks is skipped with the rig's reason. When a test
fails, the tails of the cloud's, the unit's and the board's logs are printed with its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.rig import FEATURES, RigError, RigFile, SimRig, load_rig
from hil_tests.steps import Hand


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rig",
        default=os.environ.get("KAGI_RIG", "sim"),
        help="the HIL rig: a name under hil_tests/rigs/ or a rig file (default: sim, $KAGI_RIG)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"needs(*features): rig features the test needs ({', '.join(FEATURES)})"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def rig_file(pytestconfig: pytest.Config) -> RigFile:
    try:
        return load_rig(str(pytestconfig.getoption("--rig")))
    except RigError as exc:
        raise pytest.UsageError(f"--rig: {exc}") from None


@pytest.fixture
def rig(rig_file: RigFile, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SimRig]:
    for marker in request.node.iter_markers("needs"):
        for feature in marker.args:
            reason = rig_file.lacks(feature)
            if reason:
                pytest.skip(reason)
    if rig_file.kind != "sim":
        pytest.skip(
            f"rig {rig_file.name!r} is a real rig: its driver (fixture board, card robot) is not "
            "part of this build; the template documents what it will drive"
        )
    with SimRig(tmp_path / "rig", rig_file) as started:
        yield started
        if request.node.stash.get(FAILED, False):
            print(started.logs())


@pytest.fixture
def hand(rig: SimRig) -> Iterator[Hand]:
    """The driver's hand at the rig's reader (hil_tests.steps.Hand), for as many taps as wanted."""
    with Hand(rig) as held:
        yield held
