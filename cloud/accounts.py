"""The fleet's broker accounts and access rules, one source for Mosquitto and the embedded broker.

- **Passwords**: one file in Mosquitto's own format, `user:$7$iterations$salt$hash` (PBKDF2-HMAC-
  SHA512, as `mosquitto_passwd` writes it), read by Mosquitto's `password_file` and by the embedded
  broker alike. Each car's account is named after its car ID; `kagi-cloud` is the cloud's. A car's
  password is generated here and shown once, for provisioning; only its hash is kept.
- **Access**: the ACL in Mosquitto's syntax (`pattern readwrite kagi/v1/cars/%u/#`, SPEC X-SEC-2);
  `Acl` evaluates the same text for the embedded broker, so both brokers apply the same rules.
- **TLS**: the operator's server certificate and key, and the CA that signed them (`Tls`).

The commands that use them (`kagi cloud car-account`, `kagi cloud mosquitto-config`) are in
`cloud/accounts_cli.py`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol import topics

log = logging.getLogger("kagi.broker")

CLOUD_USER = "kagi-cloud"
DEFAULT_ACCOUNTS = "kagi-broker.passwd"  # beside the default database, kagi-cloud.db
ITERATIONS = 101  # mosquitto_passwd's own count; the strength is in the 192-bit random passwords


def default_accounts() -> str:
    """Where the fleet's password file is unless told: $KAGI_BROKER_ACCOUNTS, else
    `kagi-broker.passwd` here (beside the default database)."""
    return os.environ.get("KAGI_BROKER_ACCOUNTS", DEFAULT_ACCOUNTS)


class AccountsError(ValueError):
    """A broker account, password file, ACL or TLS file that is wrong; the message says why."""


# ---- passwords, in Mosquitto's hash format --------------------------------------------------


def new_password() -> str:
    """A fresh random password (192 bits, URL-safe: it may go into a broker URL as it is). It
    never begins with `-`, so it can follow an option on a command line (`--broker-password X`
    would otherwise read a leading `-` as another option)."""
    while True:
        password = secrets.token_urlsafe(24)
        if not password.startswith("-"):
            return password


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """`$7$iterations$salt$hash`: what `mosquitto_passwd` writes (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches a Mosquitto 2 hash (`$7$`, PBKDF2-SHA512); anything else
    matches nothing."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt, digest = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4])
    except ValueError:  # bad count or base64
        return False
    if not 1 <= iterations <= 10_000_000 or len(digest) != 64:
        return False
    mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(mine, digest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_password_file(text: str, source: str = "password file") -> dict[str, str]:
    """`user:hash` lines (blank lines and `#` comments allowed) → {user: hash}."""
    table: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith("$7$"):
            raise AccountsError(
                f"{source}, line {number}: expected 'user:$7$…' as mosquitto_passwd writes it, "
                f"got {_shorten(line)!r}"
            )
        if user in table:
            raise AccountsError(f"{source}, line {number}: user {user!r} appears twice")
        table[user] = hashed
    return table


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def check_user(user: str) -> str:
    """A broker user name: the cloud's, or a car ID (no wildcard, separator or ':')."""
    if user == CLOUD_USER:
        return user
    try:
        return topics.check_car_id(user)
    except ValueError as exc:
        raise AccountsError(f"broker account: {exc}") from None


class Accounts:
    """The fleet's broker password file: created, read and changed here; re-read when another
    process changes it (a car added while the cloud runs can connect at once).

    Writes replace the file atomically under a lock, so a broker never reads half a file and
    two `kagi cloud car-account` runs never lose each other's change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._table: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Accounts({str(self.path)!r})"

    # reading

    def table(self) -> dict[str, str]:
        """{user: hash} as the file holds it now (empty if there is no file yet)."""
        with self._lock:
            return dict(self._current())

    def users(self) -> list[str]:
        return sorted(self.table())

    def __contains__(self, user: object) -> bool:
        return user in self.table()

    def verify(self, user: str, password: str) -> bool:
        with self._lock:
            try:
                table = self._current()
            except AccountsError as exc:  # keep serving with what was read last
                log.error("%s; keeping the accounts read before", exc)
                table = self._table
            hashed = table.get(user)
        return hashed is not None and verify_password(password, hashed)

    def _current(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._table = None, {}
            return self._table
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            table = parse_password_file(self.path.read_text(), str(self.path))
            self._stamp, self._table = stamp, table
        return self._table

    # changing

    def create(self, user: str) -> str:
        """Give `user` a new random password (replacing any old one); return it — the only time
        it is shown."""
        password = new_password()
        self.set_password(user, password)
        return password

    def set_password(self, user: str, password: str) -> None:
        check_user(user)
        if not password:
            raise AccountsError(f"broker account {user}: the password is empty")
        hashed = hash_password(password)
        with self._changing() as table:
            table[user] = hashed

    def remove(self, user: str) -> bool:
        with self._changing() as table:
            return table.pop(user, None) is not None

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with open(lock_path, "a") as lock, self._lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table = dict(self._current())
            yield table
            text = "".join(f"{user}:{hashed}\n" for user, hashed in sorted(table.items()))
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._stamp = None  # re-read (and re-stat) on next use


class Credentials:
    """Who may log in to the embedded broker: the accounts file (re-read when it changes) and
    accounts held in memory only (plain passwords: tests, the cloud's own per-run password)."""

    def __init__(
        self, accounts: Accounts | None = None, plain: Mapping[str, str] | None = None
    ) -> None:
        self.accounts = accounts
        self.plain = dict(plain or {})
        for user in self.plain:
            check_user(user)

    def verify(self, user: str | None, password: str | None) -> bool:
        if not user or password is None:
            return False
        plain = self.plain.get(user)
        if plain is not None and hmac.compare_digest(plain.encode(), password.encode()):
            return True
        return self.accounts is not None and self.accounts.verify(user, password)


# ---- access rules, in Mosquitto's ACL syntax ------------------------------------------------


def acl_text(cloud_user: str = CLOUD_USER) -> str:
    """The ACL: the cloud reaches every car; a car only its own topics (`%u` = its user name)."""
    return (
        f"user {cloud_user}\n"
        f"topic readwrite {topics.ROOT}/#\n"
        "\n"
        f"pattern readwrite {topics.ROOT}/%u/#\n"
    )


READ, WRITE, SUBSCRIBE = "read", "write", "subscribe"
_ACCESS = {"read": {READ}, "write": {WRITE}, "readwrite": {READ, WRITE}, "deny": set()}


@dataclass(frozen=True)
class _Rule:
    user: str | None  # None: a `pattern` (every user); else the user of a `topic` line
    pattern: bool
    access: frozenset[str]  # empty: deny
    topic: str


class Acl:
    """Mosquitto's ACL file semantics for the embedded broker: `user NAME` followed by
    `topic [read|write|readwrite|deny] TOPIC` lines for that user, and `pattern … TOPIC` lines for
    every user, with `%u` (user name) and `%c` (client ID) substituted. A `deny` that matches
    wins. Anonymous clients get nothing (the brokers refuse them before asking anyway).

    `allows(user, client_id, topic, access)`: `read` — may this client receive a message on
    `topic`; `write` — may it publish there; `subscribe` — may it subscribe to the filter `topic`
    (every topic the filter can match must be readable; `$share/GROUP/` is looked through)."""

    def __init__(self, rules: list[_Rule]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, text: str, source: str = "acl") -> Acl:
        rules: list[_Rule] = []
        user: str | None = None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word == "user":
                if not rest:
                    raise AccountsError(f"{source}, line {number}: 'user' needs a name")
                user = rest
                continue
            if word not in ("topic", "pattern"):
                raise AccountsError(
                    f"{source}, line {number}: expected 'user', 'topic' or 'pattern', got {word!r}"
                )
            access_word, _, topic = rest.partition(" ")
            if access_word in _ACCESS:
                topic = topic.strip()
            else:  # Mosquitto: no access word means readwrite
                access_word, topic = "readwrite", rest
            if not topic or " " in topic:
                raise AccountsError(
                    f"{source}, line {number}: expected '{word} [read|write|readwrite|deny] TOPIC'"
                    f", got {line!r}"
                )
            if word == "topic" and user is None:
                continue  # rules for anonymous clients: there are none
            rules.append(
                _Rule(
                    user=None if word == "pattern" else user,
                    pattern=word == "pattern",
                    access=frozenset(_ACCESS[access_word]),
                    topic=topic,
                )
            )
        return cls(rules)

    def allows(self, user: str | None, client_id: str | None, topic: str, access: str) -> bool:
        if not user or not topic:
            return False
        if access == SUBSCRIBE:
            inner = _unshare(topic)
            if inner is None:
                return False
            topic, needed = inner, READ
            match: Callable[[str, str], bool] = filter_within
        elif access in (READ, WRITE):
            if "+" in topic or "#" in topic:
                return False
            needed, match = access, topic_matches
        else:
            raise ValueError(f"ACL access: expected read, write or subscribe, got {access!r}")
        granted = False
        for rule in self.rules:
            pattern = self._expand(rule, user, client_id)
            if pattern is None or not match(pattern, topic):
                continue
            if not rule.access:
                return False  # deny wins
            granted = granted or needed in rule.access
        return granted

    @staticmethod
    def _expand(rule: _Rule, user: str, client_id: str | None) -> str | None:
        if not rule.pattern:
            return rule.topic if rule.user == user else None
        out = rule.topic
        for token, value in (("%u", user), ("%c", client_id)):
            if token in out:
                # Mosquitto too: a name that could widen the pattern matches no pattern at all
                if not value or any(ch in value for ch in "/+#"):
                    return None
                out = out.replace(token, value)
        return out


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a topic name against a filter (`+` one level, `#` this level and all
    below, `$…` topics never matched by a leading wildcard)."""
    if topic.startswith("$") and topic_filter.startswith(("+", "#")):
        return False
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return i == len(f) - 1
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def filter_within(outer: str, inner: str) -> bool:
    """Whether every topic the filter `inner` can match is matched by the filter `outer`."""
    o, n = outer.split("/"), inner.split("/")
    for i, level in enumerate(o):
        if level == "#":
            return True
        if i >= len(n) or n[i] == "#":
            return False
        if level != "+" and level != n[i]:  # a '+' in inner is wider than any literal
            return False
    return len(o) == len(n)


def _unshare(topic_filter: str) -> str | None:
    """`$share/GROUP/FILTER` → FILTER; a plain filter as it is; None if malformed."""
    if not topic_filter.startswith("$share/"):
        return topic_filter
    parts = topic_filter.split("/", 2)
    if len(parts) != 3 or not parts[1] or not parts[2] or any(c in parts[1] for c in "+#"):
        return None
    return parts[2]


# ---- TLS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """The broker's TLS: its certificate and key (PEM), and the operator's CA that signed them
    (clients verify the broker with it; client certificates signed by it are accepted too)."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None

    @classmethod
    def of(
        cls,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str],
        cafile: str | os.PathLike[str] | None = None,
    ) -> Tls:
        """Absolute paths, each checked to be a readable file."""
        tls = cls(
            Path(certfile).resolve(),
            Path(keyfile).resolve(),
            None if cafile is None else Path(cafile).resolve(),
        )
        for name, path in (("certfile", tls.certfile), ("keyfile", tls.keyfile)):
            _readable(name, path)
        if tls.cafile is not None:
            _readable("cafile", tls.cafile)
        return tls


def _readable(name: str, path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise AccountsError(f"TLS {name} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in head:
        raise AccountsError(f"TLS {name} {path}: not a PEM file (no '-----BEGIN')")
