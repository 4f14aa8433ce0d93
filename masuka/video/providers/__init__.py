"""Remote video providers, one module per API, behind the :class:`~masuka.video.providers.base.Provider`
interface. The list of providers is the catalog's (``assets/video_models.json``): provider ``x`` lives in the
module ``x`` here, whose :class:`Provider` subclass declares its service.
"""

from __future__ import annotations

import functools

from masuka.errors import InvalidInput
from masuka.remote.http import open_client
from masuka.services import declared_classes
from masuka.studio import Studio
from masuka.video.catalog import REMOTE_PROVIDERS
from masuka.video.providers.base import Provider


@functools.cache
def remote_providers() -> dict[str, type[Provider]]:
    """Provider id -> its class, in catalog order."""
    # mypy refuses an abstract class as type[T] (python/mypy#4717); the abstract base is what is meant
    return declared_classes(__name__, REMOTE_PROVIDERS, Provider)  # type: ignore[type-abstract]


def provider_class(name: str) -> type[Provider]:
    if name not in REMOTE_PROVIDERS:
        raise InvalidInput(f"{name!r} is not a remote video provider; choose one of {', '.join(REMOTE_PROVIDERS)}.")
    return remote_providers()[name]


def open_provider(studio: Studio, name: str, owner: str) -> Provider:
    """A ready client for provider ``name`` with its key, base URL, retry settings and health tracker, for work of
    ``owner``'s (a missing key is refused in words that suit them)."""
    return open_client(studio, provider_class(name), owner)
