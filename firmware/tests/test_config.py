"""The unit's configuration: the guide's defaults, and bad files refused with key and reason
(SPEC X-SEC-3)."""

from __future__ import annotations

import pytest

from firmware.config import ConfigError, TripConfig, load_unit_config, trip_config_from_dict

GOOD = """
[unit]
car_id = "car-001"
card_key = "00112233445566778899aabbccddeeff"
database = "unit.db"

[timing]
door_timer = "90s"
key_timer = "1h30m"
reminder_interval = 120

[end_checks]
lights = "block"

[station]
lat = 35.68
lon = 139.76
"""


def test_defaults_are_the_guides():
    t = TripConfig().timing
    assert (t.start_early, t.reader_window) == (14 * 60, 45 * 60)
    assert (t.door_timer, t.key_timer, t.return_key_timer) == (60, 600, 600)
    assert (t.forgotten_window, t.registration_timeout, t.reminder_before_end) == (600, 60, 600)
    assert TripConfig().feedback.hazard_start == 2
    assert TripConfig().feedback.hazard_end == 1


def test_a_good_file_loads_with_durations_and_paths(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text(GOOD)
    config = load_unit_config(path)
    assert config.trip.timing.door_timer == 90
    assert config.trip.timing.key_timer == 5400
    assert config.trip.timing.reminder_interval == 120
    assert config.trip.timing.forgotten_window == 600  # untouched default
    assert config.trip.end_checks.lights == "block"
    assert config.trip.station.lat == 35.68
    assert config.database == str(tmp_path / "unit.db")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('door_timer = "90s"', 'door_timer = "soon"'), "timing.door_timer: expected a duration"),
        (('door_timer = "90s"', "door_timer = -5"), "timing.door_timer: a duration cannot be"),
        (('door_timer = "90s"', 'dor_timer = "90s"'), "timing.dor_timer: unknown key"),
        (('lights = "block"', 'lights = "maybe"'), "end_checks.lights: expected one of"),
        (("lat = 35.68", 'lat = "north"'), "station.lat: expected float"),
        (('car_id = "car-001"', ""), "unit.car_id: missing required key"),
        (('card_key = "00112233445566778899aabbccddeeff"', 'card_key = "zz"'), "unit.card_key"),
        (('card_key = "00112233445566778899aabbccddeeff"', 'card_key = "0011"'), "at least 16"),
        (("[station]", "[stations]"), "stations: unknown key"),
        (('database = "unit.db"', 'database = "unit.db"\nclock = "sundial"'), "unit.clock"),
        (
            ('database = "unit.db"', 'database = "unit.db"\nclock_start = 1800000000'),
            "unit.clock_start: only a manual clock can start elsewhere",
        ),
        (
            ('database = "unit.db"', 'database = "unit.db"\nclock = "manual"\nclock_start = -1'),
            "unit.clock_start: must not be negative",
        ),
        (("[timing]", "[timing\n"), "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_the_key_and_the_reason(tmp_path, change, message):
    # SPEC X-SEC-3
    path = tmp_path / "unit.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_unit_config(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_unit_config(tmp_path / "nope.toml")


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(ConfigError, match="timezone"):
        trip_config_from_dict({"timezone": "Mars/Olympus"})


def test_the_example_in_docs_loads_and_spells_out_the_defaults():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "unit.example.toml"
    config = load_unit_config(example)
    assert config.trip.timing == TripConfig().timing
    assert config.trip.feedback == TripConfig().feedback
    assert config.trip.station.radius_m == 50
