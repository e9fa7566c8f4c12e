"""Sign-in for the review app: analysts' tokens, the server secret, server-side sessions, throttling.

Each analyst holds one token (``NAME:SECRET``); the users file keeps only a salted slow hash of
its secret part (a password made with ``fraud review hash-password`` works the same way).
The server secret is random (given by the caller or generated once and kept in the alert store); it
keys every HMAC here and nothing is derived from a token. Sessions live in the alert store's database:
the cookie carries only a random id, and a session dies at logout, at expiry, or when its analyst's
token is rotated or removed. Wrong sign-ins are throttled per client address and per name.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from fraud.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SHARED_ANALYST = "shared-token"     # who the decisions of the shared-token mode are recorded as
MIN_SECRET_BYTES = 16
HASH_ITERATIONS = 200_000

auth_metadata = sa.MetaData()

server_secret_table = sa.Table(
    "review_server_secret", auth_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),          # hex
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

sessions_table = sa.Table(
    "review_sessions", auth_metadata,
    sa.Column("id_mac", sa.String(64), primary_key=True),          # HMAC(secret, session id): the id itself is not stored
    sa.Column("analyst", sa.String(128), nullable=False, index=True),
    sa.Column("credential", sa.String(64), nullable=False),        # fingerprint of the token hash it was opened with
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)   # SQLite returns naive datetimes


# -- token hashes -------------------------------------------------------------------------------
def hash_password(secret: str, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$ITER$SALT$HASH`` (base64) of a token or password, with a random salt."""
    salt = salt or secrets.token_bytes(16)
    dk = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_password(secret: str, stored: str) -> bool:
    try:
        algo, it, salt, digest = stored.split("$")
        if algo != "pbkdf2_sha256":
            return False
        dk = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), base64.b64decode(salt), int(it))
        return hmac.compare_digest(dk, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def split_token(token: str) -> tuple[str, str]:
    """``NAME:SECRET`` -> (name, secret); ("", token) when it names nobody."""
    name, sep, secret = token.partition(":")
    return (name, secret) if sep and NAME_RE.match(name) else ("", token)


# -- users file ---------------------------------------------------------------------------------
def load_users(path) -> dict:
    """A users file: JSON object ``{"name": "pbkdf2_sha256$..."}`` (``fraud review add-analyst``)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--users {str(p)!r}: no such file; create it with `fraud review add-analyst NAME --users "
                          f"{str(p)}` (it prints the analyst's token once)")
    try:
        users = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--users {str(p)!r}: cannot read a JSON users file ({e})") from None
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ConfigError(f"--users {str(p)!r}: expected a JSON object name -> token hash")
    bad_names = [k for k in users if not NAME_RE.match(k)]
    if bad_names:
        raise ConfigError(f"--users {str(p)!r}: analyst name(s) {bad_names} are not letters, digits and _ . @ - "
                          f"(at most 64, no ':')")
    bad = [k for k, v in users.items() if not v.startswith("pbkdf2_sha256$")]
    if bad:
        raise ConfigError(f"--users {str(p)!r}: user(s) {bad} lack a pbkdf2_sha256 hash "
                          f"(use `fraud review add-analyst NAME --users {p}`)")
    return users


def _write_users(path: Path, users: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)      # a new file: the app sees the change and revokes the old token's sessions


def add_analyst(path, name: str) -> str:
    """Add ``name`` to the users file (created if absent) or rotate its token; returns the new token."""
    if not NAME_RE.match(name):
        raise ConfigError(f"analyst name {name!r}: use letters, digits and _ . @ - (at most 64, no ':')")
    p = Path(path)
    users = load_users(p) if p.exists() else {}
    secret = secrets.token_urlsafe(24)
    users[name] = hash_password(secret)
    _write_users(p, users)
    return f"{name}:{secret}"


def remove_analyst(path, name: str) -> None:
    p = Path(path)
    users = load_users(p)
    if name not in users:
        raise ConfigError(f"--users {str(p)!r}: no analyst {name!r} (analysts: {sorted(users)})")
    del users[name]
    _write_users(p, users)


class Users:
    """The analysts' token hashes: a dict, or a users file re-read whenever it changes on disk."""

    def __init__(self, source):
        self.path = None if source is None or isinstance(source, dict) else Path(source)
        self._users = dict(source or {}) if self.path is None else load_users(self.path)
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self):
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return "missing"
        return st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> dict:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                try:
                    self._users = load_users(self.path) if stamp != "missing" else {}
                except ConfigError:
                    self._users = {}        # unreadable mid-edit: nobody signs in until it is fixed
                self._stamp = stamp
            return self._users

    def __bool__(self) -> bool:
        return bool(self.current()) or self.path is not None


# -- server secret ------------------------------------------------------------------------------
def server_secret(engine, given: str | bytes | None = None) -> bytes:
    """The secret keying sessions: ``given`` (e.g. FRAUD_REVIEW_SECRET), else the one kept in the store
    (generated with ``secrets.token_bytes`` on first use, so restarts keep sessions)."""
    if given:
        raw = given.encode() if isinstance(given, str) else bytes(given)
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(f"FRAUD_REVIEW_SECRET: {len(raw)} bytes is too short (use at least {MIN_SECRET_BYTES}, "
                              f"e.g. `openssl rand -hex 32`)")
        return raw
    auth_metadata.create_all(engine)
    with engine.begin() as conn:
        row = conn.execute(sa.select(server_secret_table.c.secret).where(server_secret_table.c.id == 1)).first()
    if row:
        return bytes.fromhex(row[0])
    try:
        with engine.begin() as conn:
            conn.execute(server_secret_table.insert(), {"id": 1, "secret": secrets.token_bytes(32).hex(),
                                                        "created_at": _utcnow()})
    except IntegrityError:
        pass                         # another process stored one first: use it
    with engine.begin() as conn:
        return bytes.fromhex(conn.execute(sa.select(server_secret_table.c.secret)
                                          .where(server_secret_table.c.id == 1)).scalar_one())


# -- sessions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    sid: str
    analyst: str
    credential: str


class Sessions:
    """Server-side sessions in the store's database, keyed by an HMAC of the random session id."""

    def __init__(self, engine, secret: bytes, hours: float):
        if not hours > 0:
            raise ConfigError(f"--session-hours: {hours!r} must be > 0")
        self.engine, self.secret, self.ttl = engine, secret, timedelta(hours=hours)
        auth_metadata.create_all(engine)

    def _mac(self, sid: str) -> str:
        return hmac.new(self.secret, b"session\0" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf(self, sid: str) -> str:
        return hmac.new(self.secret, b"csrf\0" + sid.encode(), hashlib.sha256).hexdigest()

    def open(self, analyst: str, credential: str) -> str:
        sid, now = secrets.token_urlsafe(32), _utcnow()
        with self.engine.begin() as conn:
            conn.execute(sessions_table.delete().where(sessions_table.c.expires_at < now))
            conn.execute(sessions_table.insert(), {"id_mac": self._mac(sid), "analyst": analyst,
                                                   "credential": credential, "created_at": now,
                                                   "expires_at": now + self.ttl})
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 256:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions_table).where(sessions_table.c.id_mac == self._mac(sid))).first()
        if row is None:
            return None
        if _aware(row.expires_at) <= _utcnow():
            self.close(sid)
            return None
        return Session(sid, row.analyst, row.credential)

    def close(self, sid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions_table.delete().where(sessions_table.c.id_mac == self._mac(sid)))

    def close_analyst(self, analyst: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sessions_table.delete().where(sessions_table.c.analyst == analyst)).rowcount


# -- throttling ---------------------------------------------------------------------------------
class Throttle:
    """At most ``limit`` wrong sign-ins per ``window`` seconds per key; then locked out for ``window``
    seconds, doubling with each further lockout (up to ``max_lock``); a quiet ``max_lock`` forgets."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_lock: float = 3600.0, clock=time.monotonic):
        if limit < 1 or window <= 0:
            raise ConfigError(f"login throttle: limit {limit!r} must be >= 1 and window {window!r} > 0")
        self.limit, self.window, self.max_lock, self.clock = limit, window, max_lock, clock
        self._fails: dict[str, list[float]] = {}
        self._locks: dict[str, tuple[float, int]] = {}       # key -> (locked until, lockouts so far)
        self._lock = threading.Lock()

    def retry_after(self, keys) -> int:
        """Seconds until the first of ``keys`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            wait = max((self._locks.get(k, (0.0, 0))[0] - now for k in keys), default=0.0)
        return max(0, math.ceil(wait))

    def fail(self, keys) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                until, strikes = self._locks.get(k, (0.0, 0))
                if strikes and now - until > self.max_lock:
                    strikes = 0
                recent = [t for t in self._fails.get(k, []) if now - t < self.window] + [now]
                if len(recent) >= self.limit:
                    self._locks[k] = (now + min(self.window * 2 ** strikes, self.max_lock), strikes + 1)
                    recent = []
                self._fails[k] = recent
            if len(self._fails) > 10_000:
                self._prune(now)

    def succeed(self, keys) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)

    def _prune(self, now: float) -> None:
        self._fails = {k: v for k, v in self._fails.items() if v and now - v[-1] < self.window}
        self._locks = {k: v for k, v in self._locks.items() if now - v[0] < self.max_lock}


# -- who holds a token --------------------------------------------------------------------------
class Authenticator:
    """Who holds a token, and the fingerprint of the credential (changes when the token is rotated)."""

    def __init__(self, secret: bytes, users: Users, shared_token: str | None = None):
        self.secret, self.users, self.shared_token = secret, users, shared_token
        self._cache: dict[str, tuple[str, str]] = {}      # HMAC(secret, token) -> (analyst, credential)
        self._cache_users: dict | None = None
        self._lock = threading.Lock()

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    def credential(self, analyst: str) -> str | None:
        """The current credential fingerprint of ``analyst`` (None: no longer configured)."""
        if analyst == SHARED_ANALYST and self.shared_token and not self.users:
            return self._mac("shared", self.shared_token)
        stored = self.users.current().get(analyst)
        return None if stored is None else self._mac("user", analyst, stored)

    def verify(self, token: str) -> tuple[str, str] | None:
        """(analyst, credential) of a valid token, else None."""
        if not token or len(token) > 512:
            return None
        if self.shared_token and not self.users:
            if hmac.compare_digest(self._mac("token", token), self._mac("token", self.shared_token)):
                return SHARED_ANALYST, self.credential(SHARED_ANALYST)
            return None
        users = self.users.current()
        key = self._mac("token", token)
        with self._lock:
            if self._cache_users is not users:
                self._cache, self._cache_users = {}, users
            hit = self._cache.get(key)
        if hit:
            return hit
        name, secret = split_token(token)
        stored = users.get(name)
        if stored is None or not check_password(secret, stored):
            return None
        found = (name, self._mac("user", name, stored))
        with self._lock:
            if self._cache_users is users:
                self._cache[key] = found
        return found
