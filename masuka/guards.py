"""What every request passes before Gradio handles it: file and session ownership, fair queueing, sign-in
throttling.

``auth_dependency`` cannot be combined with Gradio's password login, hence ASGI middleware, and a check
on Gradio's queue itself, which every door to the queue (``/queue/join``, ``/call/<api>``) goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import ipaddress
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio

from masuka.access import may_read
from masuka.config import Config, IPNetwork, on_space
from masuka.gpu import CONCURRENCY_ID, STOP_TAB, StopFlags, stop_key
from masuka.logins import LoginThrottle
from masuka.store import LOCAL_USER

log = logging.getLogger(__name__)

#: Every Gradio route that serves a file named in its URL -> the path parameter naming the file.
FILE_ROUTES = {
    "/gradio_api/file={path_or_url:path}": "path_or_url",
    "/gradio_api/file/{path:path}": "path",
}
#: The routes that put an event in the queue (with the API name in the path); a failure there is the request's.
JOIN_ROUTES = re.compile(r"^/gradio_api/(queue/join|call/v2/[^/]+|call/[^/]+)/?$")
#: The routes that name the event they queue by its API name.
NAMED_CALLS = re.compile(r"^/gradio_api/call/(?:v2/)?([^/]+)/?$")
LOGIN_ROUTES = ("/login", "/login/")
#: Gradio routes that name a session hash in their path
SESSION_PATHS = re.compile(r"^/gradio_api/(?:heartbeat|stream)/([^/]+)(?:/|$)")
#: Gradio routes that name an event id in their path: a /call/ event's result (GET), a streaming event's input and
#: its end (POST: ``/stream/<session>/...`` names a session, and is a GET)
EVENT_GETS = re.compile(r"^/gradio_api/call/(?:v2/)?[^/]+/([^/]+)/?$")
EVENT_POSTS = re.compile(r"^/gradio_api/stream/([^/]+)(?:/close)?/?$")
#: Gradio's cancel: its JSON body names the event (``event_id``), and a session hash of the caller's
CANCEL_ROUTES = ("/gradio_api/cancel", "/gradio_api/cancel/")
MAX_SESSIONS = 100_000


class SessionOwners:
    """Who owns each Gradio session and event: the first signed-in user who used the session, the user who queued
    the event. Kept for the newest :data:`MAX_SESSIONS`. :class:`OwnSessions` reads and claims sessions named by a
    request; :func:`guard_queue` records each event it accepts, and its session: an event queued without a session
    hash (``POST /call/<api>``) is its own session, Gradio using its id as the hash, so its result stream
    (``/call/<api>/<id>``, ``/queue/data?session_hash=<id>``) has an owner from the moment its id exists."""

    def __init__(self) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        return self._owners.get(key)

    def claim(self, key: str, user: str) -> str:
        """``key``'s owner: ``user`` unless another user already has it; either way ``key`` is kept as the newest."""
        owner = self._owners.setdefault(key, user)
        self._owners.move_to_end(key)
        while len(self._owners) > MAX_SESSIONS:
            self._owners.popitem(last=False)
        return owner


def signed_in_user(scope: dict) -> str | None:
    """The user of a request, from Gradio's login cookie (None when not signed in)."""
    from starlette.requests import HTTPConnection

    app = scope.get("app")
    cookie_id = getattr(app, "cookie_id", None)
    if cookie_id is None:
        return None
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return app.tokens.get(token) if token else None


def _route_patterns() -> list[tuple[Any, str]]:
    from starlette.routing import compile_path

    return [(compile_path(template)[0], param) for template, param in FILE_ROUTES.items()]


class OwnFilesOnly:
    """ASGI middleware: a file under the data dir is served only to a user who :func:`may_read` it.

    The request path is matched against the same route templates Gradio registers (:data:`FILE_ROUTES`),
    so the check sees the file exactly as the route will. Outputs are Gradio static paths (served in place,
    never copied into the upload cache every signed-in user shares), so every image or video URL names the
    real file and this check sees who owns it.
    """

    def __init__(self, app: Any, studio: Any):
        self.app = app
        self.studio = studio
        self.patterns = _route_patterns()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from starlette.routing import get_route_path

            route_path = get_route_path(scope)
            for pattern, param in self.patterns:
                match = pattern.match(route_path)
                if match and not may_read(self.studio, signed_in_user(scope), match.group(param)):
                    from starlette.responses import PlainTextResponse

                    await PlainTextResponse("This file is not yours.", status_code=403)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def guard_queue(blocks: Any, config: Config, stops: StopFlags, owners: SessionOwners | None = None) -> None:
    """Admission to Gradio's queue: refuse a user's GPU event when they already have ``max_queued_per_user``
    waiting, whatever the door; arm the Stop of work a tab's Stop ends (its function marked with
    :data:`~masuka.gpu.STOP_TAB`) once the queue accepts it, so a Stop pressed while it waits counts and a
    refused event leaves nothing armed; an event taken out of the queue before it starts (a cancel, a closed
    session) has its arm dropped.

    Every way into Gradio's queue ends in ``Queue.push`` with the event already resolved (``fn_index`` as a
    number or a string, or an API name), so the count, the refusal and the arming happen there. An event number
    the app does not have is refused there too, with a reason, instead of failing inside Gradio; so is a private
    event named on ``/call/<name>`` (a 404, as for a name the app does not have): Gradio finds it by name whatever
    its visibility, while the page calls its own events by number. With several users, each accepted event and its
    session are recorded as the user's in ``owners`` (what :class:`OwnSessions` checks) before its id is answered.
    """
    queue = blocks._queue
    push = queue.push
    lock = asyncio.Lock()

    async def guarded_push(body: Any, request: Any, username: str | None):
        from gradio.route_utils import get_fn

        try:
            fn = get_fn(blocks, None, body)
        except (KeyError, TypeError):
            return False, f"This app has no event number {body.fn_index}.", "error"
        named = NAMED_CALLS.match(_route_path(request))
        if named and getattr(fn, "api_visibility", "public") == "private":
            from fastapi import HTTPException

            raise HTTPException(404, f"This app has no API endpoint /{named.group(1)}.")
        if config.multi_user and username and getattr(fn, "concurrency_id", None) == CONCURRENCY_ID:
            async with lock:  # the count and the push are one step, so two requests cannot both slip in
                limit = config.max_queued_per_user
                if waiting_gpu_events(blocks, username) >= limit:
                    from fastapi import HTTPException

                    raise HTTPException(429, f"You already have {limit} request{'s' * (limit != 1)} waiting for "
                                             "the GPU, the most one user may queue. Try again when one has finished.")
                accepted = await push(body, request, username)
        else:
            accepted = await push(body, request, username)
        if owners is not None and config.multi_user and username and accepted[0]:
            owners.claim(accepted[1], username)  # the event, for the routes naming it by id
            if body.session_hash:  # Gradio's, the event's id, when the request named none (POST /call/<api>)
                owners.claim(body.session_hash, username)
        tab = getattr(fn.fn, STOP_TAB, None)
        if tab and accepted[0]:  # queued, its session given: the queue runs it only once this coroutine yields
            forget_started()
            key = stop_key(tab, body.session_hash, username or LOCAL_USER)
            armed[accepted[1]] = key, stops.arm(key, accepted[1])
        return accepted

    armed: dict[str, tuple[str, Any]] = {}  # event id -> (key, flag) of armed work, until it has ended

    def waiting_ids() -> set[str]:
        return {event._id for group in queue.event_queue_per_concurrency_id.values() for event in group.queue}

    def running_ids() -> set[str]:
        return {event._id for job in queue.active_jobs if job for event in job}

    def forget_started() -> None:
        """Drop the records of armed events that have left the queue and ended, with their arms if their work never
        took them (Gradio refused the input before the work ran): a later Stop would set them for the next work."""
        for event_id in armed.keys() - waiting_ids() - running_ids():
            stops.unarm(*armed.pop(event_id), event_id)

    def forget_ended() -> None:
        """:func:`forget_started` before a Stop answers, run on the event loop, where the queue moves events (a
        Stop's click runs in a worker thread of the server's): it then sees every event waiting or running."""
        try:
            anyio.from_thread.run_sync(forget_started)
        except RuntimeError:  # on the event loop itself, or a thread outside the server (no queue moves meanwhile)
            forget_started()

    async def unarming(step: Any, targets: set[str]) -> None:
        """Run ``step``, a removal from the queue (a cancel, a closed session) of the events ``targets``: the arms of
        those it took out before they started are dropped, so a later Stop finds nothing of them."""
        await step()
        for event_id in targets & armed.keys() - waiting_ids() - running_ids():
            stops.unarm(*armed.pop(event_id), event_id)

    remove, clean = queue.remove_from_queue, queue.clean_events

    async def guarded_remove(event_id: str) -> None:
        await unarming(lambda: remove(event_id), {event_id} & waiting_ids())

    async def guarded_clean(*, session_hash: str | None = None, event_id: str | None = None) -> None:
        targets = {event._id for group in queue.event_queue_per_concurrency_id.values() for event in group.queue
                   if event.session_hash == session_hash or event._id == event_id}
        await unarming(lambda: clean(session_hash=session_hash, event_id=event_id), targets)

    stops.forget_ended = forget_ended
    queue.push = guarded_push
    queue.remove_from_queue = guarded_remove
    queue.clean_events = guarded_clean


def _route_path(request: Any) -> str:
    from starlette.routing import get_route_path

    return get_route_path(request.scope) if request is not None else ""


def waiting_gpu_events(blocks: Any, user: str) -> int:
    """The user's events waiting in the GPU group of Gradio's queue (read from the queue's state)."""
    group = getattr(getattr(blocks, "_queue", None), "event_queue_per_concurrency_id", {}).get(CONCURRENCY_ID)
    return sum(1 for event in getattr(group, "queue", []) if getattr(event, "username", None) == user)


class ReadableJoins:
    """ASGI middleware: a request to join the queue that Gradio cannot read gets a 400 with the reason, not a 500.

    Joining only parses the body and queues the event (the event itself runs later, elsewhere), so an
    exception on these routes is always about the request: a body of the wrong shape for the route, an
    API name the app does not have.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and JOIN_ROUTES.match(scope["path"])):
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as error:
            if started:
                raise
            from starlette.responses import JSONResponse

            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            await JSONResponse({"detail": f"This request could not be read: {reason}"}, status_code=400)(
                scope, receive, send)


class OwnSessions:
    """ASGI middleware: a Gradio session belongs to the first signed-in user who uses it, an event to the user who
    queued it.

    Gradio keys a session's event stream (``/queue/data``), its state (``/deep_link``), cancelling, resetting and
    heartbeats by the session hash alone, and API clients may pick that hash themselves; so with several users
    a request naming a session hash (query, path or JSON body) another user already uses gets a 403, and one
    without a signed-in user may not name a session that has an owner.

    Other routes name an event by its id alone: ``/cancel`` (which takes any waiting event out of the queue, with
    no sign-in check of Gradio's), a ``/call/<api>/<id>`` result (read once: whoever reads it first takes it) and a
    streaming event's input (``POST /stream/<id>``). With several users these need a signed-in user (401), and one
    naming another user's event gets a 403: the event's owner is the user who queued it (recorded by
    :func:`guard_queue`), or the owner of its session (Gradio's queue: the event's session while it is held, the
    session still waiting for its end, else the id itself, the session of an event queued without one). An id
    nobody queued goes on to Gradio, which answers as for an event that has ended.
    """

    def __init__(self, app: Any, config: Config, owners: SessionOwners | None = None):
        self.app = app
        self.config = config
        self.owners = owners if owners is not None else SessionOwners()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and self.config.multi_user and scope["path"].startswith("/gradio_api/")):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope.get("method")
        named = set(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", []))
        events: set[str] = set()
        if method == "POST" and (match := EVENT_POSTS.match(path)):
            events.add(match.group(1))
        elif match := SESSION_PATHS.match(path):
            named.add(match.group(1))
        if method == "GET" and (match := EVENT_GETS.match(path)):
            events.add(match.group(1))
        if method == "POST" and _is_json(scope):
            body = await _read_body(receive)
            receive = _replayer(body, receive)
            with contextlib.suppress(ValueError):
                value = json.loads(body or b"null")
                if isinstance(value, dict) and isinstance(value.get("session_hash"), str):
                    named.add(value["session_hash"])
                if path in CANCEL_ROUTES and isinstance(value, dict) and isinstance(value.get("event_id"), str):
                    events.add(value["event_id"])
        user = signed_in_user(scope)
        if (events or path in CANCEL_ROUTES) and user is None:
            from starlette.responses import JSONResponse

            await JSONResponse({"detail": "Not authenticated"}, status_code=401)(scope, receive, send)
            return
        for event_id in events:
            owner = self.event_owner(scope, event_id)
            if owner is not None and owner != user:
                from starlette.responses import JSONResponse

                await JSONResponse({"detail": "This event belongs to another user."}, status_code=403)(
                    scope, receive, send)
                return
        for session in named:
            owner = self.owners.get(session)
            if owner is not None and owner != user:
                from starlette.responses import JSONResponse

                await JSONResponse({"detail": "This session belongs to another user: use a session hash of your "
                                              "own (a random one)."}, status_code=403)(scope, receive, send)
                return
            if user is not None:
                self.owners.claim(session, user)  # theirs from now on, or kept as recently used
        await self.app(scope, receive, send)

    def event_owner(self, scope: dict, event_id: str) -> str | None:
        """The user who queued ``event_id``, else the owner of its session as Gradio's routes resolve it (None: an
        event of no known user's, or none at all)."""
        if owner := self.owners.get(event_id):
            return owner
        queue = getattr(getattr(scope.get("app"), "get_blocks", lambda: None)(), "_queue", None)
        event = getattr(queue, "event_ids_to_events", {}).get(event_id)
        if event is not None:
            return self.owners.get(event.session_hash) or getattr(event, "username", None)
        pending = getattr(queue, "pending_event_ids_session", {})
        session = next((session for session, ids in list(pending.items()) if event_id in ids), event_id)
        return self.owners.get(session)


def _is_json(scope: dict) -> bool:
    """Whether FastAPI reads the request's body as JSON, by its rule: no content type, or ``application/json`` or
    ``application/*+json`` in any case and with any parameters (a check that missed ``application/JSON`` let a
    session hash or event id through unread)."""
    declared = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"content-type"),
                    None)
    if not declared:
        return True
    message = email.message.Message()
    message["content-type"] = declared
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class ThrottledLogin:
    """ASGI middleware: sign-ins go through :class:`LoginThrottle` (per account and per client address).

    A sign-in refused for a lockout is a 400, as a wrong password: Gradio's login page reacts to 400 (it says
    the credentials are wrong) and 200 only, so a 429 would leave its Login button doing nothing. The reason is in
    ``detail`` and ``Retry-After`` for scripts; the page states the rule (:func:`masuka.server.sign_in_message`).
    """

    def __init__(self, app: Any, throttle: LoginThrottle, proxies: Proxies):
        self.app = app
        self.throttle = throttle
        self.proxies = proxies

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope["path"] in LOGIN_ROUTES):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        body = await _read_body(receive)
        replay = _replayer(body, receive)
        form = await Request(scope, replay).form()
        user, client = str(form.get("username", "")).strip(), client_address(scope, self.proxies)
        wait = self.throttle.wait_s(user, client)
        if wait:
            await JSONResponse({"detail": f"Too many failed sign-ins for this account or from this address. "
                                          f"Try again in {wait} s."}, status_code=400,
                               headers={"Retry-After": str(wait)})(scope, receive, send)
            return
        status = 0

        async def watched_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, _replayer(body, receive), watched_send)
        if status == 200:
            self.throttle.succeeded(user)
        elif 400 <= status < 500:
            self.throttle.failed(user, client)


@dataclass(frozen=True)
class Proxies:
    """The peers whose ``X-Forwarded-For`` is believed: the proxies in front of MASUKA."""

    networks: tuple[IPNetwork, ...] = ()
    internal: bool = False  # every peer that is not a public address (a Space: only its front end reaches the app)

    def trust(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # an IPv4 peer of a server on "::"
            ip = ip.ipv4_mapped
        return (self.internal and not ip.is_global) or any(ip in network for network in self.networks)


def proxies_in_front(config: Config, tunnel: bool) -> Proxies:
    """The proxies of this start: ``MASUKA_TRUSTED_PROXIES``; this computer when MASUKA opened its own share link
    or ngrok tunnel (whose end runs here); on a Hugging Face Space its front end, any non-public peer."""
    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")) if tunnel else ()
    return Proxies(config.trusted_proxies + loopback, internal=on_space())


def client_address(scope: dict, proxies: Proxies) -> str:
    """The client's address: the peer's, unless the peer is one of ``proxies``. A proxy names its client in
    ``X-Forwarded-For``, each proxy adding the address it saw: read from the right past the trusted proxies, the
    next address is the client as the outermost trusted proxy saw it, which no client can forge (its own entries
    come before). A peer that is no known proxy (anyone on this computer or network, when nothing is in front of
    MASUKA) cannot pick its address with the header."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not proxies.trust(peer):
        return peer
    # header lines of one name are one comma-separated list, in order (RFC 7230 3.2.2): a proxy may add a line
    lines = [value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
    hops = [hop.strip() for hop in ",".join(lines).split(",") if hop.strip()]
    # every hop a trusted proxy: the one the nearest proxy saw
    return next((hop for hop in reversed(hops) if not proxies.trust(hop)), hops[-1] if hops else peer)


async def _read_body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _replayer(body: bytes, receive: Any):
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
