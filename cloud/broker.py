"""The embedded MQTT broker (amqtt) that `kagi cloud serve` starts when no broker is configured.

    broker = EmbeddedBroker("kagi-broker.passwd").start()   # or a {user: password} mapping
    broker.url            # mqtt://127.0.0.1:PORT (mqtts:// with tls=Tls.of(cert, key, ca))
    broker.cloud_password # the cloud's account (`kagi-cloud`) for this run
    broker.stop()

It runs in its own thread and event loop, so sync code starts and stops it. Clients log in with
the fleet's accounts (`cloud.accounts`: the same password file Mosquitto reads; no anonymous
clients) and reach only what the same ACL as Mosquitto's allows: a car `kagi/v1/cars/{its
ID}/#`, the cloud every car (SPEC X-SEC-2).

amqtt 0.12 cannot be trusted with that as it ships; `KagiBroker` fixes, in one subclass:
- **retained leak**: on connect amqtt pushed a client the retained messages of every topic
  filter *any* client had subscribed to, without asking the ACL (a car got another car's
  reservations). Here retained messages go only to a new subscription [MQTT-3.3.1-6] and only
  where the ACL lets the subscriber read; and every PUBLISH that leaves the broker passes one last
  ACL check on the connection it is written to.
- **session take-over**: amqtt merged a persistent session into a newcomer with the same client ID
  (rewriting its user name) and kicked the owner off *before* checking the password. Here the
  password is checked first, and a client ID taken over by another account starts afresh: it
  inherits neither the queue nor the subscriptions of the other account. A car reconnecting over
  its own half-dead connection keeps its session live (amqtt left it deaf).
- **will messages**: amqtt published a client's last will on any topic. Here a will the client
  may not publish is refused at CONNECT. And amqtt never dropped a client that fell silent (a car
  out of coverage stayed "connected", its will never sent): here 1.5 keep-alives of silence end
  the connection.
- queued messages are delivered without the retain flag; `$share/GROUP/FILTER` shared
  subscriptions (which amqtt lacks) deal each message to one member of the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from cloud.accounts import (
    CLOUD_USER,
    READ,
    SUBSCRIBE,
    WRITE,
    Accounts,
    Acl,
    Credentials,
    Tls,
    acl_text,
    new_password,
    topic_matches,
)

log = logging.getLogger("kagi.broker")

__all__ = ["BrokerStartError", "EmbeddedBroker", "KagiBroker"]

_ACCESS = {Action.PUBLISH: WRITE, Action.SUBSCRIBE: SUBSCRIBE, Action.RECEIVE: READ}
_USER = "kagi.user"  # session attribute: the user name whose password was checked
# Set while a SUBSCRIBE is handled: only a new subscription gets retained messages.
_NEW_SUBSCRIPTION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "kagi_new_subscription", default=False
)


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (address in use, bad TLS files…); says why."""


class KagiBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with password login, Mosquitto's ACL semantics and the fixes above.
    Relies on amqtt 0.12's internals; the tests of `cloud/tests/test_broker.py` catch a change."""

    def __init__(
        self, config: dict[str, Any], *, credentials: Credentials, acl: Acl, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.credentials = credentials
        self.acl = acl
        self._share_turn: dict[str, int] = {}
        self._replaced: weakref.WeakSet[Any] = weakref.WeakSet()  # connections taken over
        self._background: set[asyncio.Future[Any]] = set()

    # ---- login: password (and will topic) checked before any session is touched ----------

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        peer = f"{remote_address}:{remote_port}"
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(f"invalid CONNECT from {peer}: {exc}") from exc
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(f"no CONNECT from {peer}: {exc}") from exc

        reason = self._refusal(session)
        if reason is not None:
            log.warning("refused %s (user %r) from %s: %s", session.client_id, session.username,
                        peer, reason)  # fmt: skip
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise AMQTTError(f"refused: {reason}")
        session.attributes[_USER] = session.username
        session.password = None  # checked; no need to keep it in memory

        client_id = session.client_id
        old = self._sessions.get(client_id) if client_id else None
        if old is not None and (session.clean_session or old[0].username != session.username):
            # A clean start, or another account using this client ID: the old session ends
            # (its connection too) and the newcomer inherits nothing of it.
            await self._cleanup_session(client_id)
            old = None
        if session.clean_session:
            if not client_id:
                session.client_id = gen_client_id()
            session.parent = 0
        elif old is not None:
            existing: Session = old[0]
            if existing.transitions.is_connected():
                # The same account again while its old connection still looks alive (a link
                # that died unnoticed): end the old connection first. amqtt's own take-over let
                # that end mark the session disconnected after the new connection had started,
                # which then heard nothing more.
                self._replaced.add(old[1])
                await self._stop_handler(old[1])
                existing.transitions.disconnect()
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain"):
                setattr(existing, name, getattr(session, name))
            existing.keep_alive = session.keep_alive
            existing.attributes[_USER] = session.username
            existing.password = None
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        if session.keep_alive > 0:  # [MQTT-3.1.2-24]: silent for 1.5 keep-alives is gone
            session.keep_alive += (session.keep_alive + 1) // 2
        handler.handle_read_timeout = lambda: self._silent(handler)
        return handler, session

    def _silent(self, handler: BrokerProtocolHandler) -> None:
        """amqtt notices a client that stopped talking but does nothing about it: its session
        stayed connected forever and its will never went out. Cut it like a dropped link: the
        reader ends, and the broker sends the will."""
        session = handler.session
        log.warning("%s (user %r) silent beyond its keep-alive: disconnected",
                    session.client_id if session else None,
                    session.username if session else None)  # fmt: skip
        if not _abort(handler):
            task = asyncio.ensure_future(handler.handle_connection_closed())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _stop_handler(self, handler: Any) -> None:
        """Cut the connection before stopping its handler. Stopping cancels the reader task, and
        Python 3.11's wait_for swallows that cancel when a packet arrives at the same moment:
        the stop then hung until the client's keep-alive ran out. On a cut connection the reader
        ends by itself."""
        _abort(handler)
        await super()._stop_handler(handler)

    async def shutdown(self) -> None:
        for session, _ in list(self._sessions.values()):
            session.will_flag = False  # the broker is going, not the client
        await super().shutdown()

    def _refusal(self, session: Session) -> str | None:
        if not session.username:
            return "no user name (anonymous clients are not allowed)"
        if not self.credentials.verify(session.username, session.password):
            return "wrong user name or password"
        if session.will_flag and not self.acl.allows(
            session.username, session.client_id, session.will_topic or "", WRITE
        ):
            return f"its last will goes to {session.will_topic!r}, where it may not publish"
        return None

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        return bool(session.username) and session.attributes.get(_USER) == session.username

    async def _handle_disconnect(
        self, client_session: Session, handler: Any, disconnect_waiter: Any
    ) -> None:
        if handler in self._replaced:  # its session lives on in a newer connection
            self._replaced.discard(handler)
            await self._stop_handler(handler)
            return
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    # ---- topics: Mosquitto's ACL ----------------------------------------------------------

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        access = _ACCESS[action]
        if self.acl.allows(session.username, session.client_id, topic, access):
            return True
        what = {WRITE: "publish to", SUBSCRIBE: "subscribe to", READ: "receive"}[access]
        log.warning("%s (user %r) may not %s %s: denied", session.client_id, session.username,
                    what, topic)  # fmt: skip
        return False

    def _get_handler(self, session: Session) -> Any:
        """Every PUBLISH to a client goes through here: the last ACL check, on the session the
        connection really belongs to."""
        handler = super()._get_handler(session)
        return None if handler is None else _Guarded(self, session, handler)

    # ---- retained messages: only for a new subscription, only what the ACL allows ---------

    async def _handle_subscription(self, *args: Any) -> None:
        token = _NEW_SUBSCRIPTION.set(True)
        try:
            await super()._handle_subscription(*args)
        finally:
            _NEW_SUBSCRIPTION.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        if not _NEW_SUBSCRIPTION.get() or topic_filter.startswith("$share/"):
            return  # amqtt's replay of every client's filters on connect: never
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = [
            asyncio.ensure_future(
                handler.mqtt_publish(topic, msg.data, min(qos, msg.qos or qos), retain=True)
            )
            for topic, msg in list(self._retained_messages.items())
            if topic_matches(topic_filter, topic)
            and await self._topic_filtering(session, topic, Action.RECEIVE)
        ]
        if tasks:
            await asyncio.wait(tasks)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """What was queued while the session was away, in order, as live messages (no retain
        flag: Mosquitto's behaviour, and MQTT's for anything but a new subscription)."""
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        while not session.retained_messages.empty():
            msg = await session.retained_messages.get()
            tasks.append(
                asyncio.ensure_future(handler.mqtt_publish(msg.topic, msg.data, msg.qos, False))
            )
        if tasks:
            await asyncio.wait(tasks)

    # ---- delivery, with shared subscriptions ----------------------------------------------

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for a_filter, subscriptions in list(self._subscriptions.items()):
            shared = a_filter.startswith("$share/")
            plain = a_filter.split("/", 2)[2] if shared and a_filter.count("/") >= 2 else a_filter
            if not topic_matches(plain, topic):
                continue
            targets = self._share_pick(a_filter, subscriptions, topic) if shared else subscriptions
            for session, sub_qos in list(targets):
                await self._deliver(broadcast, session, sub_qos, running_tasks)

    def _share_pick(
        self, a_filter: str, subscriptions: list[tuple[Session, int]], topic: str
    ) -> list[tuple[Session, int]]:
        """One member of the group: a connected one in turn, else a persistent one (queued)."""
        allowed = [
            (s, q)
            for s, q in subscriptions
            if self.acl.allows(s.username, s.client_id, topic, READ)
        ]
        connected = [(s, q) for s, q in allowed if s.transitions.state == "connected"]
        pool = connected or [(s, q) for s, q in allowed if not s.clean_session]
        if not pool:
            return []
        turn = self._share_turn.get(a_filter, 0)
        self._share_turn[a_filter] = turn + 1
        return [pool[turn % len(pool)]]

    async def _deliver(
        self,
        broadcast: dict[str, Any],
        session: Session,
        sub_qos: int,
        running_tasks: deque[asyncio.Task[Any]],
    ) -> None:
        qos = broadcast.get("qos", sub_qos)
        if not await self._topic_filtering(session, broadcast["topic"], Action.RECEIVE):
            return
        if session.transitions.state != "connected":
            if not session.clean_session and qos in (QOS_1, QOS_2) and not session.is_anonymous:
                await self._retain_broadcast_message(broadcast, qos, session)
            return
        handler = self._get_handler(session)
        if handler is not None:
            running_tasks.append(
                asyncio.ensure_future(
                    handler.mqtt_publish(broadcast["topic"], broadcast["data"], qos, retain=False)
                )
            )


def _abort(handler: Any) -> bool:
    """Close a connection at once (no flush: nothing more is owed to it); False if there is no
    transport to close."""
    stream = getattr(handler.writer, "_writer", None)
    transport = getattr(stream, "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


class _Guarded:
    """A connection's protocol handler that writes a PUBLISH only if the ACL lets the user the
    connection belongs to read it."""

    def __init__(self, broker: KagiBroker, session: Session, handler: Any) -> None:
        self._broker, self._session, self._handler = broker, session, handler

    async def mqtt_publish(
        self, topic: str, data: bytes | bytearray, qos: int | None, retain: bool, *args: Any
    ) -> Any:
        owner: Session | None = self._handler.session
        if owner is not self._session:
            log.warning("message on %s for a replaced session of %s: dropped", topic,
                        self._session.client_id)  # fmt: skip
            return None
        if not self._broker.acl.allows(owner.username, owner.client_id, topic, READ):
            log.warning("withheld %s from %s (user %r): not in its ACL", topic, owner.client_id,
                        owner.username)  # fmt: skip
            return None
        return await self._handler.mqtt_publish(topic, data, qos, retain, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


class EmbeddedBroker:
    """amqtt (`KagiBroker`) in a thread of its own: `start()` (returns once it listens; again
    after `stop()`, on the same port), `stop()`, `url`, `port`, and the cloud's login for this
    run (`cloud_user`, `cloud_password`).

    `accounts`: the fleet's password file (a path or `Accounts`; re-read when it changes) or a
    {user: password} mapping (tests). The cloud's account is `kagi-cloud` with `cloud_password`
    (a new random one per run unless given or in the mapping); the file's own `kagi-cloud`
    entry, if any, works too. `port` 0 picks a free port. `tls` serves TLS only."""

    def __init__(
        self,
        accounts: Accounts | str | os.PathLike[str] | Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        tls: Tls | None = None,
        *,
        cloud_password: str | None = None,
        acl: str | None = None,
    ) -> None:
        if isinstance(accounts, Mapping):
            file, plain = None, dict(accounts)
        else:
            file = accounts if isinstance(accounts, Accounts) else Accounts(accounts)
            plain = {}
        if cloud_password is not None and plain.get(CLOUD_USER, cloud_password) != cloud_password:
            raise ValueError(f"cloud_password differs from the mapping's {CLOUD_USER} password")
        plain.setdefault(CLOUD_USER, cloud_password or new_password())
        self.cloud_user = CLOUD_USER
        self.cloud_password = plain[CLOUD_USER]
        self.credentials = Credentials(file, plain)
        self.acl_text = acl if acl is not None else acl_text()
        self.acl = Acl.parse(self.acl_text, "embedded broker ACL")
        self.host, self.port, self.tls = host, port, tls
        self.broker: Broker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        amqtt_log = logging.getLogger("amqtt")
        if amqtt_log.level == logging.NOTSET:  # it logs every connection at INFO
            amqtt_log.setLevel(logging.WARNING)

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def config(self) -> dict[str, Any]:
        """amqtt's configuration: one listener, no plugins (login and ACL are built in)."""
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{self.host}:{self.port}"}
        if self.tls is not None:
            listener |= {"ssl": True, "certfile": self.tls.certfile, "keyfile": self.tls.keyfile}
            if self.tls.cafile is not None:
                listener["cafile"] = self.tls.cafile
        return {"listeners": {"default": listener}, "plugins": {}}

    def make_broker(self) -> Broker:
        """The amqtt broker to run; called inside its event loop."""
        return KagiBroker(self.config(), credentials=self.credentials, acl=self.acl)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the embedded broker is running already")
        if self.tls is None and self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("embedded broker on %s without TLS: passwords cross the network in clear",
                        self.host or "every interface")  # fmt: skip
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="kagi-broker", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise BrokerStartError(
                f"embedded broker on {self.host}:{self.port}: {self._error}"
            ) from self._error
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self.broker = loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self.broker = None
            _close_loop(loop)
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            _close_loop(loop)

    async def _start(self) -> Broker:
        broker = self.make_broker()
        await broker.start()
        if self.port == 0:
            server = broker._servers["default"].instance
            self.port = int(server.sockets[0].getsockname()[1])
        return broker

    def stop(self) -> None:
        """Disconnect every client and close the listener (sessions and retained messages live
        in memory only: they end with the broker)."""
        thread, loop, broker = self._thread, self._loop, self.broker
        if thread is None or loop is None or broker is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(15)
        except (Exception, asyncio.CancelledError) as exc:  # amqtt's can end cancelled
            log.warning("embedded broker: unclean shutdown: %r", exc)
        finally:
            # whatever shutdown did, the listeners close, so the port can be used again
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_close_listeners(broker), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = self._loop = self.broker = None

    def kill(self) -> None:
        """A crash: the same as `stop()` here (connections cut, everything in memory lost)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _close_listeners(broker: Broker) -> None:
    for server in list(getattr(broker, "_servers", {}).values()):
        with contextlib.suppress(Exception):
            await server.close_instance()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
