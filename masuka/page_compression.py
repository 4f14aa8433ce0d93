"""Gzip for the page and the descriptions Gradio sends without it.

Gradio compresses only paths that end in a file extension (``.js``, ``.css``, ``.json``...). The page itself
(``/``: about 1 MB, the whole UI's config inside it), ``/config`` and ``/gradio_api/info`` went out as they are,
at every load through a share link, ngrok or any proxy that does not compress. Gzipped, the page is 80 KB."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Receive, Scope, Send

#: the paths Gradio answers uncompressed, with more than a few kB
PAGES = frozenset({"/", "/config", "/gradio_api/info"})
#: zlib's default level: the page in 15 ms of CPU, against 30 ms at Starlette's 9 for 2 % fewer bytes
LEVEL = 6


class CompressedPages:
    """ASGI middleware: :data:`PAGES` gzipped for a client that accepts it; every other answer as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] in PAGES
                and "gzip" in Headers(scope=scope).get("accept-encoding", "")):
            await GZipResponder(self.app, minimum_size=1024, compresslevel=LEVEL)(scope, receive, send)
        else:
            await self.app(scope, receive, send)
