"""The outside services MASUKA talks to, each declared once: label, key variables, base URL, auth and key check.

A remote video provider or training backend declares its :class:`Service` next to its code; the key file,
the base-URL settings, the Settings tab's labels and key checks and the test stand-ins all read these
declarations (:func:`masuka.keys.services` lists them all), so adding a provider touches its own module, its
catalog entries, its loopback stand-in's route method (``masuka/testing/video.py`` or ``masuka/testing/training.py``)
and the README only (ADDING.md).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import TypeVar

from masuka.config import env_url

T = TypeVar("T")


@dataclass(frozen=True)
class Service:
    """One outside service and how to reach it with a key."""

    name: str  # key-store name, and the provider id where it is one
    label: str
    key_env: tuple[str, ...]  # environment variables that may hold the key, in order of preference
    base_url_env: str = ""  # variable that overrides the base URL (proxies, loopback stand-ins)
    default_base_url: str = ""
    auth: tuple[str, str] = ("Authorization", "Bearer {key}")  # header carrying the key
    headers: dict[str, str] = field(default_factory=dict)  # other headers every request needs
    check_path: str = ""  # a cheap authenticated GET that proves a key works ("" = no live check)
    check_ok: frozenset[int] = frozenset()  # error statuses that still prove the key (fal's 404)

    def base_url(self) -> str:
        """The base URL, from :attr:`base_url_env` when set (read at call time)."""
        return env_url(self.base_url_env, self.default_base_url) if self.base_url_env else self.default_base_url

    def auth_headers(self, key: str) -> dict[str, str]:
        return {self.auth[0]: self.auth[1].format(key=key), **self.headers}

    def check_request(self, key: str) -> tuple[str, dict[str, str]]:
        """URL and headers of the cheap authenticated request that proves ``key`` works."""
        return f"{self.base_url()}{self.check_path}", self.auth_headers(key)


class Declared:
    """A class that declares its :class:`Service` as ``service``; its ``name`` is the service's."""

    service: Service
    name: str = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "service", None) is not None:  # abstract bases declare none
            cls.name = cls.service.name


def declared_classes(package: str, names: tuple[str, ...], base: type[T]) -> dict[str, type[T]]:
    """Name -> the ``base`` subclass declared for it in the module ``package.name``, in the order given; a
    :class:`TypeError` names the module and the services its classes declare when none is ``name``'s."""
    found: dict[str, type[T]] = {}
    for name in names:
        module = importlib.import_module(f"{package}.{name}")
        classes = [cls for _, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, base)
                   and cls is not base]
        declared = [cls for cls in classes if getattr(cls, "name", "") == name]
        if not declared:
            seen = ", ".join(f"{cls.__name__} declares {getattr(cls, 'name', '')!r}" for cls in classes)
            raise TypeError(f"Module {module.__name__} must declare a {base.__name__} subclass whose Service is "
                            f"named {name!r} (the module's and the catalog's id): {seen or 'it declares none'}.")
        found[name] = declared[0]
    return found


HUGGINGFACE = Service("huggingface", "Hugging Face", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "HF_ENDPOINT",
                      "https://huggingface.co", check_path="/api/whoami-v2")
CIVITAI = Service("civitai", "CivitAI", ("CIVITAI_API_KEY",), "MASUKA_CIVITAI_BASE_URL", "https://civitai.com",
                  check_path="/api/v1/me")
NGROK = Service("ngrok", "ngrok", ("NGROK_AUTHTOKEN",))
#: any OpenAI-compatible chat endpoint (OpenAI, OpenRouter, a local server) for the prompt optimizer
PROMPT_LLM = Service("prompt_llm", "Prompt optimizer (OpenAI-compatible chat)", ("MASUKA_PROMPT_LLM_KEY",),
                     "MASUKA_PROMPT_LLM_URL", check_path="/models")


def hub_endpoint() -> str:
    """The Hugging Face Hub base URL (``HF_ENDPOINT`` when set, read at call time)."""
    return HUGGINGFACE.base_url()


def civitai_base_url() -> str:
    return CIVITAI.base_url()
