"""REST APIs other tools already speak, on the app's own server: AUTOMATIC1111's ``/sdapi/v1`` and OpenAI's
``/v1/images``. Each route only translates a request into the domain calls the UI and CLI make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from masuka.studio import Studio

if TYPE_CHECKING:
    from masuka.guards import Proxies


def mount_api(app: Any, studio: Studio, proxies: Proxies, trust_loopback: bool = True) -> None:
    """Add both APIs' routes to the app's FastAPI server (see :func:`masuka.api.auth.authenticate`); ``proxies``:
    those in front of the app, whose ``X-Forwarded-For`` names the client."""
    from fastapi import Request

    from masuka.api.a1111 import a1111_router, controlnet_router
    from masuka.api.auth import Caller, authenticate
    from masuka.api.openai_images import openai_router
    from masuka.api.work import ApiWork
    from masuka.guards import client_address

    def caller_of(request: Request) -> Caller:
        host = request.client.host if request.client else None  # the peer: only it decides "loopback"
        return authenticate(studio, request.headers.get("authorization"), host, trust_loopback,
                            client=client_address(request.scope, proxies))

    work = ApiWork(studio)
    app.include_router(a1111_router(work, caller_of))
    app.include_router(controlnet_router(work, caller_of))
    app.include_router(openai_router(work, caller_of))
