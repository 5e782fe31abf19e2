"""kagi as a user installs it: the wheel built from this tree, in a fresh virtual environment,
run from a folder that is not the repository's. `kagi sim run` must work from it alone (no test
package, no file of the checkout), and say what is missing where its extra is not installed.

The wheel goes in with `--no-deps`; its dependencies come from this environment's site-packages
through a path file (a directory on sys.path, not a site: the editable install of the checkout
that lives there is not loaded), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools.rig.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("kagi-*.whl")
    return built


def install(wheel: Path, folder: Path, with_dependencies: bool) -> Path:
    """A fresh venv in `folder` with the wheel; its `kagi` script."""
    python = venv(folder)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    if with_dependencies:
        here = sysconfig.get_paths()["purelib"]
        (site_packages(python) / "kagi-dependencies.pth").write_text(here + "\n")
    return folder / "bin" / "kagi"


def environment() -> dict[str, str]:
    """PATH with this environment's commands (micropython) but not the checkout on any path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(wheel, tmp_path_factory.mktemp("venv"), with_dependencies=True)


def test_the_wheel_holds_the_simulated_car_and_no_tests(installed: Path) -> None:
    python = installed.with_name("python")
    code = (
        "import importlib.util, json, tools.sim, tools.rig.rigfile as r;"
        "print(json.dumps([tools.sim.__file__, r.known_rigs(),"
        " [m for m in ('hil_tests', 'firmware.tests', 'cloud.tests', 'tools.tests')"
        "  if importlib.util.find_spec(m.split('.')[0]) and importlib.util.find_spec(m)]]))"
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd="/", env=environment(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    where, rigs, tests = json.loads(out.stdout)
    assert where.startswith(str(installed.parent.parent))  # the venv's copy, not the checkout
    assert rigs == ["sim", "sim-prod"] and tests == []


def test_kagi_sim_run_help_answers_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    kagi = install(wheel, tmp_path / "bare", with_dependencies=False)
    env = environment()
    env["PATH"] = "/usr/bin:/bin"  # nothing of this environment: the wheel and the standard library
    helped = subprocess.run(
        [str(kagi), "sim", "run", "--help"], cwd="/", env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    assert "--rig" in helped.stdout and "sim-prod" in helped.stdout
    # without its extra it says what to install, and nothing starts
    out = subprocess.run(
        [str(kagi), "sim", "run", "--folder", str(tmp_path / "run")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "is missing: pip install 'kagi[sim]'" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture
def running(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(installed), "sim", "run", "--port", str(port), "--folder", str(tmp_path / "run")],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_kagi_sim_run_from_the_wheel_serves_the_demo_car(
    running: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = running
    assert proc.stdout is not None
    said = ""
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        said += line
        if "open http://" in line or time.monotonic() > deadline:
            break
    assert f"open http://127.0.0.1:{port}/" in said, said
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
    assert "<title>kagi live" in page.text  # the page ships in the wheel
    assert httpx.get(f"http://127.0.0.1:{port}/static/live.js", timeout=30).status_code == 200
    car = httpx.get(f"http://127.0.0.1:{port}/api/car", timeout=30).json()
    assert (car["state"], car["reservation"]["status"]) == ("idle", "reserved")
    # the cloud's pages ship too: their templates and style sheet
    login = httpx.get(car["sites"]["phone"] + "login", timeout=30)
    assert login.status_code == 200 and 'name="account_id"' in login.text
    assert httpx.get(car["sites"]["phone"] + "static/site.css", timeout=30).status_code == 200
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "kagi sim: stopped" in rest
