"""The cloud link's configuration keys: good ones load, bad ones are refused naming the key, and a
password never shows in an error or a log (SPEC X-SEC-3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.broker_url import parse_cloud_url
from firmware.config import ConfigError, load_unit_config
from firmware.tests.cloud_side import CLOUD_PUBLIC

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "unit.example.toml"
URL = "mqtt://car-001:s%40cret@127.0.0.1:1883"


def example(tmp_path: Path, **keys: str) -> Path:
    """The documented example with `[unit]` keys set (TOML values, written as given)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    out, done = [], set()
    for line in lines:
        name = line.split("=", 1)[0].strip()
        if name in keys and name not in done:
            out.append(f"{name} = {keys[name]}")
            done.add(name)
        else:
            out.append(line)
    for name in keys.keys() - done:  # a key the example does not list
        out.insert(out.index("[unit]") + 1, f"{name} = {keys[name]}")
    path = tmp_path / "unit.toml"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def test_the_example_lists_every_cloud_key_with_its_default(tmp_path):
    config = load_unit_config(EXAMPLE)
    assert config.cloud == "none:"
    assert (config.cloud_max_skew, config.cloud_reconnect_max, config.cloud_hold) == (300, 30, 5)
    assert config.cloud_public_key == config.cloud_ca == ""


def test_an_mqtt_cloud_loads_with_its_key_and_a_tls_one_with_the_operators_ca(tmp_path):
    config = load_unit_config(
        example(tmp_path, cloud=f'"{URL}"', cloud_public_key=f'"{CLOUD_PUBLIC}"')
    )
    assert config.cloud == URL
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_unit_config(
        example(
            tmp_path,
            cloud='"mqtts://car-001:pw@broker.example.jp"',
            cloud_public_key=f'"{CLOUD_PUBLIC}"',
            cloud_ca='"ca.pem"',
            cloud_max_skew='"2m"',
        )
    )
    assert config.cloud_ca == str(tmp_path / "ca.pem")  # relative to the file
    assert config.cloud_max_skew == 120


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"cloud": '"http://127.0.0.1"'}, "unit.cloud: no cloud adapter for 'http'"),
        ({"cloud": '"mqtt://car-002:pw@h:1883"'}, "unit.cloud: the user name must be the car ID"),
        ({"cloud": '"mqtt://car-001:pw@:1883"'}, "unit.cloud: no broker host"),
        ({"cloud": '"mqtt://car-001:pw@h:99999"'}, "unit.cloud: not a broker URL"),
        ({"cloud": '"mqtt://car-001:pw@h/x"'}, "unit.cloud: a broker URL has no path"),
        ({"cloud": f'"{URL}"', "cloud_public_key": '""'}, "unit.cloud_public_key: required"),
        (
            {"cloud": f'"{URL}"', "cloud_public_key": '"zz"'},
            "unit.cloud_public_key: public key: expected 64 hex digits",
        ),
        (
            {"cloud": f'"{URL}"', "cloud_public_key": '"abcd"'},
            "unit.cloud_public_key: public key: expected 32 bytes",
        ),
        (
            {"cloud": f'"{URL}"', "cloud_public_key": f'"{CLOUD_PUBLIC}"', "cloud_ca": '"ca.pem"'},
            "unit.cloud_ca: a CA certificate is only used with mqtts",
        ),
        (
            {
                "cloud": '"mqtts://car-001:pw@h"',
                "cloud_public_key": f'"{CLOUD_PUBLIC}"',
                "cloud_ca": '"missing.pem"',
            },
            "unit.cloud_ca: no such file",
        ),
        (
            {
                "car_id": '"car/001"',
                "cloud": '"mqtt://car/001:pw@h"',
                "cloud_public_key": f'"{CLOUD_PUBLIC}"',
            },
            "unit.car_id: expected 1-64 letters",
        ),
        ({"cloud_max_skew": '"soon"'}, "unit.cloud_max_skew: expected a duration"),
        ({"cloud_hold": "-1"}, "unit.cloud_hold: a duration cannot be negative"),
        ({"cloud_passwd": '"x"'}, "unit.cloud_passwd: unknown key"),
    ],
)
def test_bad_cloud_keys_are_refused_naming_the_key(tmp_path, keys, message):
    # SPEC X-SEC-3
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as caught:
        load_unit_config(example(tmp_path, **keys))
    assert "cret" not in str(caught.value) and ":pw@" not in str(caught.value)  # no password


def test_broker_urls():
    url = parse_cloud_url(URL, "car-001")
    assert (url.tls, url.host, url.port, url.username, url.password) == (
        False,
        "127.0.0.1",
        1883,
        "car-001",
        "s@cret",  # percent-encoded in the URL
    )
    assert url.redacted() == "mqtt://car-001:***@127.0.0.1:1883"
    assert "s@cret" not in repr(url)
    tls = parse_cloud_url("mqtts://broker.example.jp", "car-001")  # user = the car, port 8883
    assert (tls.tls, tls.port, tls.username, tls.password) == (True, 8883, "car-001", "")
    with pytest.raises(ValueError) as caught:
        parse_cloud_url("mqtt://car-002:hunter2@h", "car-001")
    assert "hunter2" not in str(caught.value)
