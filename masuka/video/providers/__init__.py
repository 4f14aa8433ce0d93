"""Remote video providers, one module per API, behind the :class:`~masuka.video.providers.base.Provider`
interface."""

from __future__ import annotations

import importlib

from masuka.errors import InvalidInput
from masuka.studio import Studio
from masuka.video.health import HealthTracker
from masuka.video.settings import VideoSettings

#: provider id -> "module:Class"
REMOTE = {"openai": "openai:OpenAIVideos", "comet": "comet:CometVideos", "gemini": "gemini:GeminiVeo",
          "runway": "runway:RunwayTasks", "fal": "fal:FalQueue"}


def provider_class(name: str) -> type:
    if name not in REMOTE:
        raise InvalidInput(f"{name!r} is not a remote video provider; choose one of {', '.join(REMOTE)}.")
    module, cls = REMOTE[name].split(":")
    return getattr(importlib.import_module(f"masuka.video.providers.{module}"), cls)


def open_provider(studio: Studio, name: str):
    """A ready client for provider ``name`` with its key, base URL, retry settings and health tracker."""
    cls = provider_class(name)
    settings = VideoSettings.from_env()
    return cls(settings, HealthTracker(studio.store, settings), studio.config.keys.get(cls.key_name))
