"""What the API refuses before it reads: a body larger than the route takes (413, nothing read,
nothing done), declared or chunked; and repeated wrong passwords slowed down (P-WEB-5)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from cloud.auth import hash_password
from cloud.policy import default_policy
from cloud.server import ApiThread
from cloud.store import Store

DRIVER = "XYZ00001001"


@pytest.fixture
def api(db: Store, clock, backend: str) -> Iterator[ApiThread]:
    db.add_member("XYZ00001", name="Example Co.")
    db.add_driver(DRIVER, name="Aki", email="a@example.jp", licence_expiry=None)
    db.set_password_hash(DRIVER, hash_password("right-password"))
    with ApiThread(db, default_policy(), clock) as server:
        yield server


def raw(url: str, head: str, body: bytes = b"") -> tuple[str, float]:
    """Send `head` (and `body`) on a socket of our own; the answer's status line and how long
    it took. The socket never sends more than given, so an answer proves nothing more was read."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as s:
        began = time.monotonic()
        s.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n", 1)[0].decode(), time.monotonic() - began


def test_a_declared_20_mb_login_is_refused_before_a_byte_of_it_is_read(api: ApiThread) -> None:
    """The defect: a 20 MB `POST /v1/login` was read and parsed whole, then answered 422. Now
    the headers alone get 413: the socket sent no body at all, and the answer still came."""
    head = (
        "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {20 * 1024 * 1024}\r\n\r\n"
    )
    status, took = raw(api.url, head)
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert took < 5  # it did not wait for 20 MB that never came


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(api: ApiThread) -> None:
    chunk = b"x" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))  # 16 kB, no end
    head = (
        "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    status, _ = raw(api.url, head, body)
    assert status == "HTTP/1.1 413 Request Entity Too Large"


def test_the_refusal_names_the_limit_and_an_ordinary_body_still_works(api: ApiThread) -> None:
    big = httpx.post(f"{api.url}/v1/login", json={"account_id": DRIVER, "password": "x" * 20_000})
    assert big.status_code == 413
    error = big.json()["error"]
    assert error["code"] == "body_too_large" and error["limit"] == 8192
    assert "8192 bytes" in error["message"]
    ok = httpx.post(
        f"{api.url}/v1/login", json={"account_id": DRIVER, "password": "right-password"}
    )
    assert ok.status_code == 200 and ok.json()["account_id"] == DRIVER


def test_thirty_wrong_passwords_are_not_all_answered_at_full_speed(api: ApiThread) -> None:
    """The defect: 30 wrong passwords in a row were all answered 401, nothing reported. Now after
    5 the account must wait (429 with Retry-After), even for the right password."""
    codes = []
    for n in range(30):
        wrong = httpx.post(f"{api.url}/v1/login", json={"account_id": DRIVER, "password": f"{n}"})
        codes.append(wrong.status_code)
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    right = httpx.post(
        f"{api.url}/v1/login", json={"account_id": DRIVER, "password": "right-password"}
    )
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
