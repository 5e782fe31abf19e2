"""Loading and validating policy files: the bundled ones load, a bad one is refused with the key
and the reason (SPEC §2: every number is a configuration value; X-SEC-3 for config files)."""

from __future__ import annotations

import copy
import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cloud.policy import (
    BUNDLED,
    CancelTier,
    Deadline,
    Pack,
    PolicyError,
    bundled_policy,
    default_policy,
    load_policy,
    parse_policy,
    policy_from_dict,
)

ROOT = Path(__file__).resolve().parents[2]
CARSHARE = tomllib.loads((ROOT / "cloud/policies/carshare.toml").read_text(encoding="utf-8"))
H, M = dt.timedelta(hours=1), dt.timedelta(minutes=1)


def edited(path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    """The car-sharing policy with one key (dotted path, [i] for list items) set or deleted."""
    data = copy.deepcopy(CARSHARE)
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    key: Any = int(last) if last.isdigit() else last
    if delete:
        del node[key]
    else:
        node[key] = value
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as error:
        policy_from_dict(data)
    return str(error.value)


def test_the_default_policy_holds_the_guides_numbers():
    # SPEC C-GRID-1, C-HOR-1, C-MAX-1, C-CAR-1, C-CHG-1, C-CAN-1, C-EXT-1, C-PEN-1, F-*
    p = default_policy()
    b = p.booking
    assert (b.grid, b.min_length, b.max_length) == (15 * M, 30 * M, 72 * H)
    assert (b.horizon.months, b.horizon.days, b.horizon.opens_at) == (3, 0, dt.time(0, 0))
    assert (b.max_open_per_member, b.car_buffer, b.driver_exclusive) == (15, 30 * M, True)
    assert (p.identity.member_id_length, p.identity.driver_id_length) == (8, 11)
    assert (p.change.max_changes, p.change.deadline) == (2, Deadline(before=60 * M))
    assert p.cancel.tiers == (
        CancelTier(0, Deadline(before=60 * M)),
        CancelTier(50, Deadline(before=0 * M)),
        CancelTier(100, None),
    )
    assert p.extension.max_extensions == 2 and p.extension.step == 15 * M
    assert [(s.count, s.revoke, s.max_open, s.months) for s in p.penalties.steps] == [
        (1, False, 1, 1),
        (3, True, None, 0),
    ]
    assert p.penalties.window_months == 12
    assert (p.fees.unit, p.fees.unit_yen, p.fees.per_km_yen) == (15 * M, 150, 20)
    assert p.fees.packs == (
        Pack(3 * H, 1500),
        Pack(8 * H, 3980),
        Pack(12 * H, 5180),
        Pack(24 * H, 7280),
    )
    assert (p.overtime.factor_percent, p.overtime.unauthorised_yen) == (200, 3000)
    assert (p.fuel.min_litres, p.fuel.discount_yen) == (20, 200)
    assert p.timezone == "Asia/Tokyo" and p.zone.key == "Asia/Tokyo"


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_policy_loads_from_its_file_too(name):
    assert load_policy(ROOT / f"cloud/policies/{name}.toml") == bundled_policy(name)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("fees.unit_yen", -5, "policy.fees.unit_yen: expected a positive integer, got -5"),
        ("fees.unit_yen", "150", "policy.fees.unit_yen: expected a positive integer, got '150'"),
        ("fees.unit_yen", True, "policy.fees.unit_yen: expected a positive integer, got True"),
        ("fees.per_km_yen", -1, "policy.fees.per_km_yen: expected a non-negative integer, got -1"),
        ("booking.gird", "15m", "policy.booking.gird: unknown key"),
        ("extras", {"a": 1}, "policy.extras: unknown key"),
        ("booking", 5, "policy.booking: expected a table, got 5"),
        (
            "booking.grid",
            15,
            'policy.booking.grid: expected a duration such as "15m", "3h" or "1d", got 15',
        ),
        ("booking.grid", "0m", "policy.booking.grid: must be longer than 0, got '0m'"),
        ("booking.grid", "7m", "policy.booking.grid: must divide a day (24h) evenly"),
        (
            "booking.min_length",
            "40m",
            "policy.booking.min_length: must be a multiple of policy.booking.grid ('15m'), "
            "got '40m'",
        ),
        (
            "booking.max_length",
            "15m",
            "policy.booking.max_length: must not be shorter than policy.booking.min_length",
        ),
        (
            "booking.driver_exclusive",
            "yes",
            "policy.booking.driver_exclusive: expected true or false",
        ),
        (
            "booking.max_open_per_member",
            0,
            "policy.booking.max_open_per_member: expected a positive",
        ),
        (
            "booking.horizon.opens_at",
            "24:00",
            'policy.booking.horizon.opens_at: expected a time such as "00:00"',
        ),
        (
            "booking.horizon.measure",
            "middle",
            "policy.booking.horizon.measure: expected one of ('start', 'end')",
        ),
        ("timezone", "Mars/Olympus", "policy.timezone: unknown time zone 'Mars/Olympus'"),
        ("identity.driver_id_length", 8, "policy.identity.driver_id_length: must differ"),
        (
            "change.deadline",
            {"before": "60m", "days_before": 1},
            "policy.change.deadline: give exactly one of before or days_before",
        ),
        (
            "change.deadline",
            {},
            "policy.change.deadline: give exactly one of before or days_before",
        ),
        (
            "change.deadline",
            {"days_before": -1},
            "policy.change.deadline.days_before: expected a non-negative integer",
        ),
        (
            "cancel.tiers[0].percent",
            150,
            "policy.cancel.tiers[0].percent: expected an integer from 0 to 100, got 150",
        ),
        (
            "cancel.tiers[2].percent",
            40,
            "policy.cancel.tiers[2].percent: must not be less than the tier before it",
        ),
        (
            "cancel.tiers",
            [{"percent": 0}, {"percent": 100}],
            "policy.cancel.tiers[0].deadline: only the last tier may have no deadline",
        ),
        ("cancel.tiers", "free", "policy.cancel.tiers: expected a list of tables, got 'free'"),
        (
            "fees.packs[1].length",
            "50m",
            "policy.fees.packs[1].length: must be a multiple of policy.fees.unit",
        ),
        ("fees.packs[2].yen", 0, "policy.fees.packs[2].yen: expected a positive integer, got 0"),
        (
            "fees.km_rounding",
            "banker",
            "policy.fees.km_rounding: expected one of ('down', 'up', 'nearest')",
        ),
        (
            "extension.step",
            "10m",
            "policy.extension.step: must be a multiple of policy.booking.grid",
        ),
        (
            "penalties.window_months",
            0,
            "policy.penalties.window_months: expected a positive integer",
        ),
        (
            "penalties.steps[1].count",
            1,
            "policy.penalties.steps[1].count: steps must be in increasing order",
        ),
        ("fuel.min_litres", -1, "policy.fuel.min_litres: expected a non-negative number, got -1"),
        ("overtime.grace", "soon", 'policy.overtime.grace: expected a duration such as "15m"'),
    ],
)
def test_a_bad_value_is_refused_with_the_key_and_the_reason(path, value, message):
    # SPEC X-SEC-3 (config files), §2: every number a checked configuration value
    assert refused(edited(path, value)).startswith(message)


@pytest.mark.parametrize(
    "path",
    [
        "name",
        "booking.grid",
        "booking.horizon",
        "fees.unit_yen",
        "cancel.tiers",
        "fuel",
        "penalties.steps[0].max_open",
        "overtime.factor_percent",
    ],
)
def test_a_missing_key_is_named(path):
    # SPEC X-SEC-3
    assert refused(edited(path, delete=True)) == f"policy.{path}: missing required key"


def test_optional_limits_may_be_left_out_meaning_no_limit():
    data = edited("booking.max_open_per_member", delete=True)
    data["change"].pop("max_changes")
    p = policy_from_dict(data)
    assert p.booking.max_open_per_member is None and p.change.max_changes is None


def test_text_that_is_not_toml_is_refused():
    with pytest.raises(PolicyError, match=r"^policy: not valid TOML"):
        parse_policy("name = \n")


def test_a_file_error_names_the_file(tmp_path):
    # SPEC X-SEC-3
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "cloud/policies/carshare.toml").read_text().replace("150", "-5", 1))
    with pytest.raises(PolicyError) as error:
        load_policy(bad)
    assert str(error.value) == f"{bad}: policy.fees.unit_yen: expected a positive integer, got -5"
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.toml")


def test_an_unknown_bundled_name_is_refused():
    with pytest.raises(PolicyError, match="no bundled policy named 'taxi'"):
        bundled_policy("taxi")


# --- kinds ----------------------------------------------------------------------------------


def test_a_kind_overrides_whole_keys_and_keeps_the_rest():
    # SPEC §5: per-kind rules (the facility system's deadlines per place)
    data = copy.deepcopy(CARSHARE)
    data["kinds"] = {"van": {"change": {"deadline": {"days_before": 1}}, "fees": {"unit_yen": 200}}}
    p = policy_from_dict(data)
    van = p.for_kind("van")
    assert van.change.deadline == Deadline(days_before=1)  # replaced whole, not mixed
    assert van.change.max_changes == 2
    assert van.fees.unit_yen == 200 and van.fees.packs == p.fees.packs
    assert p.for_kind("compact") is p and p.for_kind("") is p


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            {"cancel": {"tiers": [{"percent": 101}]}},
            "policy.kinds.van.cancel.tiers[0].percent: expected an integer from 0 to 100, got 101",
        ),
        ({"booking": {"grid": "7m"}}, "policy.kinds.van.booking.grid: must divide a day"),
        ({"change": {"dedline": {"before": "1h"}}}, "policy.kinds.van.change.dedline: unknown key"),
        (
            {"change": {"deadline": {"before": "1h", "days_before": 2}}},
            "policy.kinds.van.change.deadline: give exactly one",
        ),
        ({"penalties": {"window_months": 1}}, "policy.kinds.van.penalties: cannot be set per kind"),
        ({"fees": 5}, "policy.kinds.van.fees: expected a table, got 5"),
        (5, "policy.kinds.van: expected a table, got 5"),
    ],
)
def test_an_error_in_a_kind_names_the_kinds_key(kind, message):
    # SPEC X-SEC-3
    data = copy.deepcopy(CARSHARE)
    data["kinds"] = {"van": kind}
    assert refused(data).startswith(message)


def test_a_base_key_checked_against_a_kinds_value_names_the_kinds_key():
    data = copy.deepcopy(CARSHARE)
    data["kinds"] = {"van": {"booking": {"grid": "1h"}}}  # min_length 30m is no multiple of 1h
    assert refused(data).startswith(
        "policy.booking.min_length: must be a multiple of policy.kinds.van.booking.grid ('1h')"
    )


# --- docs -----------------------------------------------------------------------------------


def _keys(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in node.items()), set())
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return set().union(*(_keys(item, prefix.removesuffix(".") + "[].") for item in node))
    return {prefix.removesuffix(".")}


def test_every_key_of_every_bundled_policy_is_documented():
    docs = (ROOT / "docs/policy.md").read_text(encoding="utf-8")
    for name in BUNDLED:
        data = tomllib.loads((ROOT / f"cloud/policies/{name}.toml").read_text(encoding="utf-8"))
        data.pop("kinds", None)
        for key in _keys(data):
            assert f"`{key}`" in docs, f"{name}: {key} is not in docs/policy.md"
    for key in (
        "booking.max_open_per_member",
        "change.max_changes",
        "penalties.steps[].revoke",
        "cancel.tiers[].deadline.days_before",
        "kinds",
    ):
        assert f"`{key}`" in docs, key
