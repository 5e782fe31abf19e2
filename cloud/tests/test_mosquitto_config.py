"""`kagi cloud mosquitto-config`: the folder it writes runs a real Mosquitto that keeps every car
to its own topics (SPEC X-SEC-2), with TLS from the operator's CA, and the embedded broker
reading the same accounts file behaves the same."""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.accounts import CLOUD_USER, Accounts
from cloud.broker import EmbeddedBroker
from cloud.mosquitto import Mosquitto
from cloud.tests import test_broker as suite
from cloud.tests.test_broker import Peers, Server, t
from cloud.tests.test_broker_accounts import fleet, kagi, password_of  # noqa: F401 (fixture)
from protocol import topics
from tools.rig.tls import make_tls

X_SEC_2 = [
    suite.test_a_car_receives_nothing_of_another_car_live_or_retained,
    suite.test_a_car_cannot_publish_into_another_cars_topics,
    suite.test_a_car_cannot_leave_a_last_will_on_another_cars_topic,
    suite.test_wrong_password_unknown_user_and_anonymous_are_refused,
    suite.test_the_cloud_reaches_every_car,
    suite.test_another_car_cannot_take_over_a_cars_session,
]


@pytest.fixture
def outdir() -> Iterator[Path]:
    """Outside pytest's private tmp tree: Mosquitto, run as root, reads as its own user."""
    folder = Path(tempfile.mkdtemp(prefix="kagi-mosquitto-config-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accounts_for(fleet: list[str], capsys) -> dict[str, str]:  # noqa: F811
    passwords = {}
    for car in ("car-a", "car-b"):
        code, out, err = kagi(capsys, "car-account", car, *fleet)
        assert code == 0, err
        passwords[car] = password_of(out)
    return passwords


def test_the_written_config_runs_a_mosquitto_that_keeps_each_car_to_its_topics(
    fleet,  # noqa: F811
    capsys,
    outdir,
):
    # SPEC X-SEC-2 on the operator's Mosquitto, configured only by `kagi cloud mosquitto-config`
    passwords = accounts_for(fleet, capsys)
    port = free_port()
    code, out, err = kagi(capsys, "mosquitto-config", "--out", str(outdir / "conf"),
                          "--bind", "127.0.0.1", "--port", str(port), "--no-persistence",
                          *fleet)  # fmt: skip
    assert code == 0, err
    assert "2 car account(s)" in out
    passwords[CLOUD_USER] = next(
        line.split()[-1] for line in out.splitlines() if "cloud account" in line
    )
    conf = (outdir / "conf" / "mosquitto.conf").read_text().splitlines()
    assert f"listener {port} 127.0.0.1" in conf and "allow_anonymous false" in conf
    assert (outdir / "conf" / "acl").read_text().splitlines()[-1] == (
        "pattern readwrite kagi/v1/cars/%u/#"
    )
    broker = Mosquitto.from_config(outdir / "conf" / "mosquitto.conf", port=port)
    server = Server("mosquitto-config", "127.0.0.1", port, passwords)
    for check in X_SEC_2:
        broker.start()  # afresh for each check: no retained messages left from the one before
        peers = Peers()
        try:
            check(server, peers)
        finally:
            peers.close()
            broker.stop()
    broker.close()
    assert (outdir / "conf" / "mosquitto.conf").exists()  # close() leaves the operator's folder

    # the embedded broker on the same accounts file, with the same cloud password
    for check in X_SEC_2:
        with EmbeddedBroker(Accounts(fleet[-1])) as embedded:
            peers = Peers()
            try:
                check(Server("embedded", "127.0.0.1", embedded.port, passwords), peers)
            finally:
                peers.close()


def test_the_written_config_speaks_tls_and_keeps_retained_snapshots(
    fleet,  # noqa: F811
    capsys,
    outdir,
):
    # TLS with the operator's CA on the production broker; persistence (the default) keeps the
    # cars' retained snapshots across a broker restart.
    passwords = accounts_for(fleet, capsys)
    (outdir / "tls").mkdir()
    tls = make_tls(outdir / "tls")
    port = free_port()
    code, out, err = kagi(capsys, "mosquitto-config", "--out", str(outdir / "conf"),
                          "--bind", "127.0.0.1", "--port", str(port),
                          "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile),
                          "--cafile", str(tls.cafile), *fleet)  # fmt: skip
    assert code == 0, err
    assert "no TLS" not in err
    passwords[CLOUD_USER] = next(
        line.split()[-1] for line in out.splitlines() if "cloud account" in line
    )
    conf = (outdir / "conf" / "mosquitto.conf").read_text().splitlines()
    assert f"certfile {tls.certfile}" in conf and f"cafile {tls.cafile}" in conf
    assert "persistence true" in conf
    server = Server("mosquitto-config tls", "127.0.0.1", port, passwords, ca=tls.cafile)
    broker = Mosquitto.from_config(outdir / "conf" / "mosquitto.conf", port=port)
    peers = Peers()
    try:
        broker.start()
        cloud = peers(server, CLOUD_USER)
        cloud.publish(t("car-a", "reservations"), b"A snapshot", retain=True)
        with pytest.raises(ssl.SSLCertVerificationError):
            peers(server, "car-a", ca=None)
        broker.stop()  # a clean stop saves the retained messages
        broker.start()
        car_a = peers(server, "car-a")
        car_a.subscribe(f"{topics.ROOT}/car-a/#", f"{topics.ROOT}/car-b/#")
        assert car_a.wait_for(t("car-a", "reservations"), b"A snapshot").retain
        assert car_a.of("car-b") == []
    finally:
        peers.close()
        broker.close()


def test_the_cloud_password_is_made_once_and_reset_on_request(fleet, capsys, outdir):  # noqa: F811
    args = ["mosquitto-config", "--out", str(outdir / "conf"), "--bind", "127.0.0.1", *fleet]
    code, out, _ = kagi(capsys, *args)
    assert code == 0 and "cloud account kagi-cloud" in out
    first = (outdir / "conf" / "passwords").read_text()
    code, out, _ = kagi(capsys, *args)
    assert code == 0 and "cloud account" not in out  # kept, not shown again
    assert (outdir / "conf" / "passwords").read_text() == first
    code, out, _ = kagi(capsys, *args, "--new-cloud-password")
    assert code == 0 and "cloud account kagi-cloud" in out
    assert (outdir / "conf" / "passwords").read_text() != first


def test_warnings_name_cars_without_accounts_and_a_listener_without_tls(fleet, capsys, outdir):  # noqa: F811
    code, _, err = kagi(capsys, "car-account", "car-a", *fleet)
    assert code == 0
    code, _, err = kagi(capsys, "mosquitto-config", "--out", str(outdir / "c"), *fleet)
    assert code == 0
    assert "no broker account for car-b" in err
    assert "no TLS on a listener others can reach" in err
    assert "listener 1883\n" in (outdir / "c" / "mosquitto.conf").read_text()


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["--certfile", "cert.pem"], "TLS needs both --certfile and --keyfile"),
        (["--cafile", "ca.pem"], "--cafile goes with --certfile and --keyfile"),
        (["--certfile", "nope.pem", "--keyfile", "nope.key"], "TLS certfile"),
        (["--port", "70000"], "--port: expected 1-65535, got 70000"),
    ],
)
def test_bad_options_are_refused_and_write_nothing(fleet, capsys, outdir, extra, error):  # noqa: F811
    code, out, err = kagi(capsys, "mosquitto-config", "--out", str(outdir / "c"), *fleet, *extra)
    assert code == 2 and error in err and out == ""
    assert not (outdir / "c").exists()


def test_a_file_that_is_not_pem_is_refused(fleet, capsys, outdir):  # noqa: F811
    (outdir / "cert.pem").write_text("not a certificate")
    (outdir / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    code, _, err = kagi(capsys, "mosquitto-config", "--out", str(outdir / "c"), *fleet,
                        "--certfile", str(outdir / "cert.pem"),
                        "--keyfile", str(outdir / "key.pem"))  # fmt: skip
    assert code == 2 and "not a PEM file" in err
