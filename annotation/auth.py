"""Accounts, server-side sessions, CSRF tokens and login rate limiting, all in the build store."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mesed_build import store as st

ROLES = ("annotator", "admin")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_dummy_hash: str | None = None


def use_password_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Swap the argon2 parameters (tests use cheaper ones); returns the previous hasher.
    Stored hashes made with other parameters still verify, and are rehashed at the next login."""
    global _hasher, _dummy_hash
    previous, _hasher, _dummy_hash = _hasher, hasher, None
    return previous


def _dummy() -> str:
    # verified against when the user name is unknown, so a wrong name takes as long as a wrong password
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


class AuthError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    user_id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    session_id: str
    user: User
    csrf_token: str


def add_user(store: st.Store, name: str, password: str, role: str = "annotator", *, replace: bool = False) -> User:
    """Create an account (or, with replace, reset its password and role)."""
    if not NAME_PATTERN.match(name):
        raise AuthError(f"user name {name!r}: use 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise AuthError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    users = st.annotation_users
    values = {"name": name, "role": role, "password_hash": _hasher.hash(password), "active": True,
              "created_at": st.utcnow()}
    with store.begin() as conn:
        existing = conn.execute(sa.select(users.c.user_id).where(users.c.name == name)).scalar_one_or_none()
        if existing is not None:
            if not replace:
                raise AuthError(f"user {name!r} exists already (use --replace to reset the password)")
            conn.execute(users.update().where(users.c.user_id == existing)
                         .values(role=role, password_hash=values["password_hash"], active=True))
            # a password reset ends the user's open sessions
            conn.execute(st.annotation_sessions.delete().where(st.annotation_sessions.c.user_id == existing))
            user_id = existing
        else:
            user_id = int(conn.execute(users.insert().values(**values)).inserted_primary_key[0])
    return User(user_id, name, role)


def list_users(store: st.Store) -> list[User]:
    users = st.annotation_users
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(users).order_by(users.c.name)).mappings().all()
    return [User(int(r["user_id"]), r["name"], r["role"]) for r in rows if r["active"]]


def authenticate(store: st.Store, name: str, password: str) -> User | None:
    users = st.annotation_users
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.name == name, users.c.active)).mappings().first()
    stored = row["password_hash"] if row else _dummy()
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        with store.begin() as conn:
            conn.execute(users.update().where(users.c.user_id == row["user_id"])
                         .values(password_hash=_hasher.hash(password)))
    return User(int(row["user_id"]), row["name"], row["role"])


# --- sessions ----------------------------------------------------------------------------


def _digest(token: str) -> str:
    # the store keeps a hash of the session token, so a leaked store does not leak live sessions
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(store: st.Store, user: User, lifetime: timedelta) -> tuple[str, str]:
    """A fresh session (never reusing one from before login); returns (token, csrf_token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = st.utcnow()
    with store.begin() as conn:
        conn.execute(st.annotation_sessions.delete().where(st.annotation_sessions.c.expires_at < now))
        conn.execute(st.annotation_sessions.insert().values(
            session_id=_digest(token), user_id=user.user_id, csrf_token=csrf, created_at=now,
            expires_at=now + lifetime))
    return token, csrf


def load_session(store: st.Store, token: str) -> Session | None:
    sessions, users = st.annotation_sessions, st.annotation_users
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(sessions.c.session_id, sessions.c.csrf_token, users.c.user_id, users.c.name, users.c.role)
            .select_from(sessions.join(users, users.c.user_id == sessions.c.user_id))
            .where(sessions.c.session_id == _digest(token), sessions.c.expires_at > st.utcnow(), users.c.active)
        ).first()
    if row is None:
        return None
    return Session(row.session_id, User(int(row.user_id), row.name, row.role), row.csrf_token)


def end_session(store: st.Store, session: Session) -> None:
    with store.begin() as conn:
        conn.execute(st.annotation_sessions.delete().where(st.annotation_sessions.c.session_id == session.session_id))


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def signing_key(store: st.Store) -> str:
    """The cookie signing key, made once per store so that every server worker shares it."""
    settings = st.annotation_settings
    store.upsert(settings, [{"key": "signing_key", "value": secrets.token_urlsafe(48)}], update=[])
    with store.engine.connect() as conn:
        return conn.execute(sa.select(settings.c.value).where(settings.c.key == "signing_key")).scalar_one()


# --- login rate limiting -------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    max_failures: int = 10  # per user name, and per client address, within the window
    window: timedelta = timedelta(minutes=15)


def login_blocked(store: st.Store, name: str, client: str, limit: RateLimit, now: datetime | None = None) -> bool:
    failures = st.annotation_login_failures
    since = (now or st.utcnow()) - limit.window
    with store.engine.connect() as conn:
        by_name = conn.execute(sa.select(sa.func.count()).select_from(failures)
                               .where(failures.c.name == name, failures.c.at > since)).scalar_one()
        by_client = conn.execute(sa.select(sa.func.count()).select_from(failures)
                                 .where(failures.c.client == client, failures.c.at > since)).scalar_one()
    return by_name >= limit.max_failures or by_client >= limit.max_failures


def record_login_failure(store: st.Store, name: str, client: str, limit: RateLimit) -> None:
    failures = st.annotation_login_failures
    now = st.utcnow()
    with store.begin() as conn:
        conn.execute(failures.delete().where(failures.c.at < now - limit.window))
        conn.execute(failures.insert().values(name=name[:100], client=client[:64], at=now))
