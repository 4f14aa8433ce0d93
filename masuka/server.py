"""Launching the app: local, a Gradio share link, or an ngrok tunnel; auth on the UI and the API."""

from __future__ import annotations

import hmac
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from masuka.config import Config
from masuka.errors import InvalidInput

log = logging.getLogger(__name__)
PUBLIC_HOSTS = ("0.0.0.0", "::", "")


def check_login(config: Config):
    """Gradio auth callback comparing in constant time."""

    def login(user: str, password: str) -> bool:
        expected = config.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    return login


def public_warning(config: Config, host: str, share: bool, ngrok: bool) -> str | None:
    if config.users:
        return None
    if share or ngrok:
        return ("WARNING: this app is reachable from the internet without a password. Anyone with the link can "
                "use your GPU and see your images. Set --auth user:password or MASUKA_AUTH.")
    if host in PUBLIC_HOSTS:
        return (f"WARNING: listening on {host or 'all interfaces'} without auth: anyone on your network can use "
                "this app. Set --auth user:password or MASUKA_AUTH.")
    return None


def ngrok_token(config: Config) -> str:
    """The ngrok token from NGROK_AUTHTOKEN or the Settings key store, else a clear error."""
    token = config.keys.get("ngrok")
    if not token:
        raise InvalidInput("--ngrok needs an ngrok auth token: set NGROK_AUTHTOKEN (free at "
                           "https://dashboard.ngrok.com/get-started/your-authtoken) or save it in Settings.")
    return token


def open_ngrok_tunnel(token: str, port: int) -> str:
    """Open a pyngrok tunnel to the local ``port`` and return its public URL."""
    from pyngrok import conf, ngrok

    conf.get_default().auth_token = token
    return ngrok.connect(port, "http").public_url


class OwnFilesOnly:
    """ASGI middleware: an output file is served through ``/file=`` only to its owner or an admin.

    Gradio copies files an event returns into one cache shared by every signed-in user, and serves
    ``allowed_paths`` to every signed-in user. Outputs are therefore Gradio static paths (served in place,
    never copied), so every image or video URL names the real file and this check sees who owns it.
    ``auth_dependency`` cannot be combined with Gradio's password login, hence a middleware.
    """

    def __init__(self, app: Any, studio: Any):
        self.app = app
        self.studio = studio

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "/file=" in scope.get("path", ""):
            from masuka.users import may_read

            target = scope["path"].split("/file=", 1)[1]
            if not may_read(self.studio, signed_in_user(scope), target):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("This file belongs to another user.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FairQueue:
    """ASGI middleware: with several users, each may have at most ``max_queued_per_user`` GPU requests waiting.

    Gradio's queue has one size for everyone; this looks at a ``/queue/join`` request before Gradio does and
    answers 429 with a message when the signed-in user already has that many GPU events waiting.
    """

    def __init__(self, app: Any, config: Config, blocks: Any):
        self.app = app
        self.config = config
        self.blocks = blocks

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (self.config.multi_user and scope["type"] == "http" and scope.get("method") == "POST"
                and scope.get("path", "").endswith("/queue/join")):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        user = signed_in_user(scope)
        if user is not None and self._uses_gpu(body) and waiting_gpu_events(self.blocks, user) >= \
                self.config.max_queued_per_user:
            from starlette.responses import JSONResponse

            limit = self.config.max_queued_per_user
            await JSONResponse({"detail": f"You already have {limit} request{'s' * (limit != 1)} waiting for the "
                                          "GPU, the most one user may queue. Try again when one has finished."},
                               status_code=429)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _uses_gpu(self, body: bytes) -> bool:
        import json

        from masuka.gpu import CONCURRENCY_ID

        try:
            fn = self.blocks.fns.get(json.loads(body).get("fn_index"))
        except (ValueError, AttributeError, TypeError):
            return False
        return getattr(fn, "concurrency_id", None) == CONCURRENCY_ID


def waiting_gpu_events(blocks: Any, user: str) -> int:
    """The user's events waiting in the GPU group of Gradio's queue (read from the queue's state)."""
    from masuka.gpu import CONCURRENCY_ID

    group = getattr(getattr(blocks, "_queue", None), "event_queue_per_concurrency_id", {}).get(CONCURRENCY_ID)
    return sum(1 for event in getattr(group, "queue", []) if getattr(event, "username", None) == user)


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


@dataclass
class Running:
    """A served app: its Blocks, its studio and its local URL."""

    demo: Any
    studio: Any
    url: str

    def close(self) -> None:
        self.demo.close()
        self.studio.close()


def launch(config: Config, host: str = "127.0.0.1", port: int = 7860, share: bool = False, ngrok: bool = False,
           block: bool = True) -> Running:
    """Build the UI and serve it; blocks until stopped unless ``block`` is False."""
    import gradio as gr
    from starlette.middleware import Middleware

    from masuka.studio import Studio
    from masuka.ui.app import build_app
    from masuka.zerogpu import prepare_space

    warning = public_warning(config, host, share, ngrok)
    if warning:
        print(warning, file=sys.stderr)
    token = ngrok_token(config) if ngrok else None  # a missing token fails before the server starts
    studio = Studio.open(config)
    prepare_space(studio)  # on ZeroGPU: the Space's model placed at start-up (a no-op elsewhere)
    demo = build_app(studio)
    demo.queue(max_size=config.queue_size, default_concurrency_limit=None)
    gr.set_static_paths([config.outputs_dir, config.datasets_dir])
    _app, local_url, _share_url = demo.launch(
        server_name=host, server_port=port, share=share, auth=check_login(config) if config.users else None,
        auth_message="MASUKA: sign in", allowed_paths=[str(config.outputs_dir), str(config.datasets_dir)],
        prevent_thread_lock=True, show_error=True, quiet=False, footer_links=["api", "gradio"],
        app_kwargs={"middleware": [Middleware(OwnFilesOnly, studio=studio),
                                   Middleware(FairQueue, config=config, blocks=demo)]},
    )
    if ngrok:
        print(f"ngrok tunnel: {open_ngrok_tunnel(token, port)}", flush=True)
    running = Running(demo, studio, local_url)
    if block:
        try:
            demo.block_thread()
        finally:
            studio.close()
    return running


def default_host() -> str:
    return os.environ.get("MASUKA_HOST", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
