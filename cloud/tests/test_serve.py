"""`kagi cloud serve` as an operator starts it: a real process, no configuration, real HTTP."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cloud import policy

pytestmark = pytest.mark.slow

JST = dt.timezone(dt.timedelta(hours=9))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kagi(*args: str, cwd, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def environment(tmp_path):
    env = dict(os.environ)
    env.pop("KAGI_CLOUD_DB", None)
    env["PYTHONPATH"] = os.getcwd()
    env["KAGI_CLOUD_PORT"] = str(free_port())
    env["KAGI_CLOUD_BROKER_PORT"] = str(free_port())
    for name in ("KAGI_CLOUD_BROKER", "KAGI_BROKER_ACCOUNTS", "KAGI_CLOUD_SMTP"):
        env.pop(name, None)
    return env


def start(tmp_path, env, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "cloud", "serve", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{env['KAGI_CLOUD_PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stdout.read() if proc.stdout else ''}")
    proc.kill()
    raise AssertionError("serve did not answer within 30 s")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    return out


def test_serve_with_no_configuration_creates_its_database_and_answers(tmp_path, environment):
    proc = start(tmp_path, environment)
    try:
        url = f"http://127.0.0.1:{environment['KAGI_CLOUD_PORT']}"
        r = httpx.post(f"{url}/v1/login", json={"account_id": "XXY00001001", "password": "x"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "bad_login"
    finally:
        out = stop(proc)
    assert (tmp_path / "kagi-cloud.db").exists()
    assert "serving kagi-cloud.db" in out
    assert (
        f"cars on mqtt://127.0.0.1:{environment['KAGI_CLOUD_BROKER_PORT']} (embedded broker)" in out
    )


def test_a_demo_driver_reserves_through_the_served_api(tmp_path, environment):
    loaded = kagi("cloud", "demo", cwd=tmp_path, env=environment)
    assert loaded.returncode == 0, loaded.stderr
    proc = start(tmp_path, environment)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{environment['KAGI_CLOUD_PORT']}")
        login = http.post("/v1/login", json={"account_id": "XXY00001002", "password": "demo"})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        start_at = (dt.datetime.now(JST) + dt.timedelta(days=2)).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        body = {
            "car_id": "car-001",
            "start": start_at.isoformat(),
            "end": (start_at + dt.timedelta(hours=1)).isoformat(),
        }
        r = http.post("/v1/reservations", json=body, headers=auth)
        assert r.status_code == 201, r.text
        assert r.json()["fee_yen"] == 600  # SPEC F-TIME-1: four 15-minute units
    finally:
        stop(proc)
    listed = kagi("cloud", "list", "reservations", "--json", cwd=tmp_path, env=environment)
    assert '"driver_id": "XXY00001002"' in listed.stdout


def test_a_bad_policy_file_is_refused_before_serving(tmp_path, environment):
    shipped = (Path(policy.__file__).parent / "policies" / "carshare.toml").read_text()
    assert "unit_yen = 150" in shipped
    (tmp_path / "p.toml").write_text(shipped.replace("unit_yen = 150", "unit_yen = -5"))
    done = kagi("cloud", "serve", "--policy", "p.toml", cwd=tmp_path, env=environment)
    assert done.returncode == 2
    assert "--policy" in done.stderr and "unit_yen" in done.stderr
    assert not (tmp_path / "kagi-cloud.db").exists()
