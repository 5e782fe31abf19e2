"""Runs the API: assembles store, policy, clock and tokens into an app, and serves it with
uvicorn — in the foreground for `kagi cloud serve`, or on a thread for tests and the rig."""

from __future__ import annotations

import secrets
import signal
import socket
import threading
from types import FrameType, TracebackType
from typing import Self

import uvicorn

from cloud.api import create_app
from cloud.auth import Tokens
from cloud.clock import Clock, system_clock
from cloud.policy import Policy
from cloud.service import CarOperations, Cloud
from cloud.store import Store
from cloud.update_repo import UpdateRepo

TOKEN_SECRET = "api.token_secret"


def token_secret(store: Store) -> bytes:
    """The API's token secret, made once and kept in the database, so tokens outlive a
    restart and every worker on the same database accepts them."""
    stored = store.get_setting(TOKEN_SECRET)
    if stored is None:
        store.set_setting(TOKEN_SECRET, secrets.token_hex(32))
        stored = store.get_setting(TOKEN_SECRET)
    assert stored is not None
    return bytes.fromhex(stored)


def build(
    store: Store,
    policy: Policy,
    clock: Clock = system_clock,
    cars: CarOperations | None = None,
    command_timeout: float = 10.0,
    updates: UpdateRepo | None = None,
) -> tuple[Cloud, uvicorn.Config]:
    cloud = Cloud(store, policy, clock, cars, command_timeout=command_timeout)
    app = create_app(cloud, Tokens(token_secret(store)), updates)
    # an open console page holds a stream: a stop waits for it at most 2 s
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    return cloud, config


class Server(uvicorn.Server):
    """uvicorn's server that first ends the console's live streams when told to stop, so a
    stop does not wait for the open fleet pages."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        end_streams(self.config)
        super().handle_exit(sig, frame)


def end_streams(config: uvicorn.Config) -> None:
    feed = getattr(getattr(config.app, "state", None), "fleet_feed", None)
    if feed is not None:
        feed.close()


class ApiThread:
    """The API on a background thread, on a free loopback port: `with ApiThread(...) as api:`
    then `api.url`."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Clock = system_clock,
        cars: CarOperations | None = None,
        host: str = "127.0.0.1",
        updates: UpdateRepo | None = None,
    ) -> None:
        self.cloud, config = build(store, policy, clock, cars, updates=updates)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, 0))
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._config = config
        self._server = Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            self._thread.join(0.005)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_streams(self._config)
        self._server.should_exit = True
        self._thread.join(5)
        self._socket.close()


def serve(
    store: Store,
    policy: Policy,
    host: str,
    port: int,
    cars: CarOperations | None = None,
    clock: Clock = system_clock,
    command_timeout: float = 10.0,
    updates: UpdateRepo | None = None,
) -> None:
    """Serve in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    _, config = build(store, policy, clock, cars, command_timeout, updates)
    config.host, config.port = host, port
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler it
    # found: with this one, a stop by SIGTERM ends the process normally (exit 0).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    Server(config).run()
