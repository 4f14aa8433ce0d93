"""Who calls the REST APIs: HTTP Basic with the app's users, or a per-user API token; open only on loopback
when the app has no users.

Tokens are ``msk_`` plus 32 random bytes, shown once when made; only their SHA-256 is stored (a random token
needs no slow hash), with a short prefix to tell them apart in lists. This module is the one place the REST
routes decide who is asking: throttling of failed sign-ins belongs in :func:`authenticate` (the 401 branch),
and files leave only through ``masuka.access.may_read`` (see ``/v1/images/files`` in ``openai_images``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER, insert_named, is_id_text, now, row_id
from masuka.studio import Studio
from masuka.users import on_sign_in_list

TOKEN_PREFIX = "msk_"
MAX_TOKENS_PER_USER = 20


class Refused(Exception):
    """A request without acceptable credentials: ``status`` 401 (who are you?), 403 (not from here) or 429 (too
    many failed sign-ins: the same throttle as the sign-in page, ``retry_after`` seconds from now)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclass(frozen=True)
class Caller:
    """The user a REST request acts for."""

    user: str
    admin: bool


def create_token(studio: Studio, owner: str, name: str = "") -> str:
    """Make a token for ``owner`` (a user on the sign-in list; without sign-in, ``local``) and return it: the only
    time it is ever shown. Each of an owner's tokens has its own name (a token is revoked by name), never only
    digits (those are ids)."""
    check_user(studio.config, owner)
    taken = {row["name"] for row in list_tokens(studio, owner)}
    name = (name or "").strip() or next(f"token-{n}" for n in itertools.count(1) if f"token-{n}" not in taken)
    if len(name) > 64 or not name.isprintable():
        raise InvalidInput("Name the token with at most 64 printable characters.")
    if is_id_text(name):
        raise InvalidInput(f"Name the token with more than digits ({name!r} is how its id would be written): "
                           f"e.g. 'token-{name}'.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with studio.store.transaction():  # counted where it is inserted: two requests at once cannot pass the limit
        if studio.store.count("api_tokens", "owner = ?", [owner]) >= MAX_TOKENS_PER_USER:
            raise InvalidInput(f"You already have {MAX_TOKENS_PER_USER} API tokens: revoke one first.")
        insert_named(studio.store, "api_tokens", {"owner": owner, "name": name, "token_hash": _digest(token),
                                                  "prefix": token[:10]},
                     f"You already have an API token named {name!r}: choose another name (or revoke that one).")
    return token


def check_user(config: Config, user: str) -> None:
    """Refuse (:class:`InvalidInput`) acting for ``user`` where nobody could sign in as them: a user not on the
    sign-in list (``local`` included), or anyone but ``local`` when the studio has no sign-in. A token's owner and
    the CLI's ``--user`` are checked here."""
    user = (user or "").strip()
    if not user:
        raise InvalidInput("Say who: name a user.")
    users = config.users
    if users and user not in users:
        raise InvalidInput(f"{user!r} is not on the sign-in list, so nobody can sign in as them: "
                           "`python -m masuka keys token users` lists who is (the list this command reads from "
                           "MASUKA_AUTH, as the app gets it from --auth or MASUKA_AUTH).")
    if not users and user != LOCAL_USER:
        raise InvalidInput(f"This studio has no sign-in (no MASUKA_AUTH here), so its one user is {LOCAL_USER!r}: "
                           f"nobody can sign in as {user!r}. Set MASUKA_AUTH as the app gets it "
                           "(e.g. MASUKA_AUTH=@users.txt) to act for its users.")


def token_owners(studio: Studio) -> list[str]:
    """Who may own a token: the users on the sign-in list, or ``local`` without sign-in."""
    return sorted(studio.config.users) or [LOCAL_USER]


def list_tokens(studio: Studio, owner: str) -> list[dict]:
    """The owner's tokens (id, name, prefix, dates): never the tokens themselves."""
    return [{key: row[key] for key in ("id", "name", "prefix", "created_at", "last_used_at")}
            for row in studio.store.find("api_tokens", "owner = ?", [owner], order_by="id")]


def revoke_token(studio: Studio, owner: str, ref: str | int) -> dict:
    """Delete one of the owner's tokens, named by id (text of digits only is an id), name or prefix; returns what
    was revoked. A name or prefix that several tokens share (made before names were unique) is refused: revoke
    those by id."""
    ref = str(ref).strip()
    by_id = is_id_text(ref)
    matches = [row for row in list_tokens(studio, owner)
               if (row["id"] == row_id(ref) if by_id else ref in (row["name"], row["prefix"]))]
    if not matches:
        raise NotFound(f"No API token {ref!r} of yours: `keys token list` shows them.")
    if len(matches) > 1:
        raise InvalidInput(f"{len(matches)} of your API tokens go by {ref!r} (ids "
                           f"{', '.join(str(row['id']) for row in matches)}): revoke one by its id.")
    studio.store.delete("api_tokens", matches[0]["id"])
    return matches[0]


def delete_tokens_off_list(studio: Studio) -> int:
    """With sign-in, delete every token whose owner is not on the sign-in list (a user taken off it; ``local``'s,
    made before sign-in was on, stays, opening nothing while sign-in is on); returns how many. The app does it as it
    starts (:func:`masuka.off_list.retire_off_list`), so a user added back under the same name (a new person, a new
    password) does not inherit the old tokens."""
    if not studio.config.multi_user:
        return 0
    with studio.store.transaction():
        gone = [row for row in studio.store.query("select owner, count(*) as tokens from api_tokens group by owner")
                if not on_sign_in_list(studio.config, row["owner"])]
        for row in gone:
            studio.store.delete_where("api_tokens", "owner = ?", [row["owner"]])
    return sum(row["tokens"] for row in gone)


def token_user(studio: Studio, token: str) -> str | None:
    """The owner of ``token`` while they are on the user list, else None (the app deletes the tokens of users taken
    off the list as it starts: :func:`delete_tokens_off_list`); records when it was last used, to the
    minute as lists show it (a write on every request would cost each one a database write, tens of milliseconds on
    a busy disk)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    rows = studio.store.find("api_tokens", "token_hash = ?", [_digest(token)], limit=1)
    if not rows or rows[0]["owner"] not in studio.config.users:
        return None  # a token of someone taken off the user list, or made before sign-in was on (``local``'s)
    stamp = now()
    if (rows[0]["last_used_at"] or "")[:16] != stamp[:16]:  # YYYY-MM-DDTHH:MM
        studio.store.update("api_tokens", rows[0]["id"], last_used_at=stamp)
    return rows[0]["owner"]


def authenticate(studio: Studio, authorization: str | None, client_host: str | None,
                 trust_loopback: bool = True, client: str | None = None) -> Caller:
    """The caller of a REST request from its ``Authorization`` header and address, else :class:`Refused`.

    With users (``--auth``): ``Basic`` with a user's password or ``Bearer`` with their token. Without: the single
    local user, whatever the credentials (SDKs insist on sending some), from loopback only unless the app was
    started with ``--api-open``. Behind a share link or a tunnel (``trust_loopback`` False) every request
    arrives from loopback, so there only ``--api-open`` opens it.
    """
    config = studio.config
    if not config.multi_user:
        if config.api_open or (trust_loopback and _loopback(client_host)):
            return Caller(LOCAL_USER, True)
        raise Refused(403, "The API answers only this computer when MASUKA runs without --auth; start it with "
                           "--auth (and use a token) or --api-open.")
    named, address = _basic_credentials(authorization)[0], client or client_host or ""
    wait = studio.logins.wait_s(named, address)
    if wait:
        raise Refused(429, f"Too many failed sign-ins for this account or from this address. Try again in {wait} s.",
                      retry_after=wait)
    user = _basic_user(config.users, authorization) or token_user(studio, _bearer(authorization) or "")
    if user is None:
        if authorization:
            studio.logins.failed(named, address)
        raise Refused(401, "Sign in: HTTP Basic with your MASUKA user and password, or "
                           "'Authorization: Bearer <API token>' (made in Settings or `keys token create`).")
    studio.logins.succeeded(named)  # an account's failures count in a row, as on the sign-in page
    return Caller(user, config.is_admin(user))


async def caller_off_loop(caller_of: Callable[[Any], Caller], request: Any) -> Caller:
    """``caller_of(request)`` for an ``async`` route, in a thread of the server's pool: :func:`authenticate` reads
    and writes the database and the sign-in throttle, which on the event loop would hold up every request of the
    server (the app's pages included) while the disk is slow. Plain (``def``) routes already run in that pool."""
    return await anyio.to_thread.run_sync(caller_of, request)


def _basic_credentials(authorization: str | None) -> tuple[str, str | None]:
    """The user name and password of an HTTP Basic header; ``("", None)`` for anything else."""
    import base64
    import binascii

    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return "", None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", None
    return user, password


def _basic_user(users: dict[str, str], authorization: str | None) -> str | None:
    user, password = _basic_credentials(authorization)
    if password is None:
        return None
    expected = users.get(user)
    return user if expected is not None and hmac.compare_digest(expected.encode(), password.encode()) else None


def _bearer(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _loopback(host: str | None) -> bool:
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return host == "localhost"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
