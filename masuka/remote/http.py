"""HTTP for every provider: retries with back-off that honours the provider's hints, errors for people.

Polls and downloads are retried on 408/429/5xx, timeouts and dropped connections, waiting what the provider
asks (``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date, Gemini's ``RetryInfo.retryDelay``)
or an exponential back-off with jitter. A create request is retried only when it surely did not reach the
provider (connection refused, or a 429 refusal); when it got no answer (a timeout, a dropped connection, a
gateway timeout: 504, 524) the caller learns it *may* have been accepted.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx

from masuka.errors import InvalidInput, ProviderError
from masuka.key_store import mask
from masuka.remote.health import HealthTracker
from masuka.remote.timing import RemoteSettings
from masuka.remote.tls import tls_context
from masuka.services import Declared

if TYPE_CHECKING:
    from masuka.studio import Studio

log = logging.getLogger(__name__)
RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524}
#: a refusal of the key itself (401, 403) by a service that accepted the job with an earlier key: the job waits
KEY_REFUSED = (401, 403)
#: a gateway that gave up waiting for the provider (504, Cloudflare's 524): the request may have been accepted
GATEWAY_TIMEOUTS = {504, 524}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
#: what a 400/403 refusal of a create request says when the model itself (or its route) is gone or not for this
#: key, run on each clause of the provider's own message (:func:`provider_message`, :data:`CLAUSE`): "model" with
#: at most the model's name before the verdict ("The model `sora-2` does not exist", "Model gen4.5 is not
#: supported", "models/veo-2 is not found"), or the model's end in so many words ("retired", "shut down"); never a
#: refusal of a parameter that names the model ("Model gen4.5 takes 5 or 10 seconds: a duration of 7 is not
#: supported")
MODEL_GONE = re.compile(r"model_not_found|unsupported_model|\bmodels?\b(?:\s*/?\s*[`'\"]?[\w./:@+-]+[`'\"]?)?\s+"
                        r"(?:(?:is|was|are|were|has been|have been)\s+)?(?:now\s+)?(?:not found|(?:does|do) not "
                        r"exist|not exist|unsupported|not supported|not available|unavailable|no longer\b|"
                        r"deprecated|retired|shut down|discontinued)|\b(?:retired|shut down|discontinued|no longer "
                        r"(?:available|supported|offered))\b", re.I)
#: words of a refusal that passes, in the clause that says the model is not available: never remembered as "gone"
PASSING = re.compile(r"temporar|try again|retry (?:after|in)\b|currently|right now|maintenance|overload|"
                     r"at capacity|high demand|\bbusy\b", re.I)
#: where a provider's message is split into clauses: a sentence's end, a colon, a semicolon, a line break
CLAUSE = re.compile(r"(?<=[.!?:])\s+|[;\n]")
#: the ``error.code`` of OpenAI's (and CometAPI's) "no such model" answers
MODEL_CODES = {"model_not_found", "unsupported_model"}


class ProviderUnavailable(ProviderError):
    """The provider kept failing (server errors, timeouts, unreachable) after every retry."""


class RateLimited(ProviderUnavailable):
    """The provider answered every try with 429 (too many requests): the account's rate or quota limit."""


class MaybeSubmitted(ProviderError):
    """A create request failed in a way that leaves open whether the provider accepted (and charges) it."""


class ModelUnavailable(ProviderError):
    """A create request was refused because the model no longer exists or is not available to this key
    (404, or 400/403 saying so): nothing was created."""


def model_gone(response: httpx.Response, message: str, models: tuple[str, ...] = ()) -> bool:
    """Whether a create request's refusal means "this model (route) is gone or not for this key".

    Only the provider's own words count (``message``, parsed from its answer): a 400/403 that says so (never one
    that asks to try again later), or a 404 in the provider's JSON that is its "no such model" answer (OpenAI's
    ``model_not_found``) or names the model asked for (``models``: Gemini's ``models/X is not found``, fal's
    ``Application 'X' not found``). A bare 404 (a wrong base URL: a web server's page, ``{"detail": "Not
    Found"}``) is not about the model.

    The provider's own "no such model" code (:data:`MODEL_CODES`) decides whatever its text says. Words of a
    refusal that passes (:data:`PASSING`: "try again later", "right now", "maintenance") keep a model only when
    they are in the clause that says it is not available: "Model X has been retired. Please retry with Y." is gone.
    """
    code = _error_code(response)
    if code in MODEL_CODES:
        return response.status_code in (400, 403, 404)
    if response.status_code == 404:
        return (code is not None and any(model and model in message for model in models)
                and not PASSING.search(message))
    return response.status_code in (400, 403) and _says_gone(message)


def _says_gone(message: str) -> bool:
    """Whether a clause of ``message`` says the model is gone (:data:`MODEL_GONE`) and not that it passes."""
    return any(MODEL_GONE.search(clause) and not PASSING.search(clause) for clause in CLAUSE.split(message))


def _error_object(response: httpx.Response) -> dict | None:
    """The ``error`` object of a JSON answer (empty when it has none), None when the answer is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of a JSON error answer (``""`` for a JSON answer without one), None when not JSON."""
    error = _error_object(response)
    return None if error is None else str(error.get("code") or "")


class CutShort(ProviderError):
    """A download ended before the length its response promised."""


def save_stream(response: httpx.Response, partial: Path, chunk: int = 1 << 20) -> None:
    """Write a streamed response to ``partial``; :class:`CutShort` when fewer bytes came than announced."""
    expected = response.headers.get("content-length")
    written = 0
    with open(partial, "wb") as handle:
        for block in response.iter_bytes(chunk):
            handle.write(block)
            written += len(block)
    if expected is not None and written != int(expected):
        raise CutShort(f"got {written} of {expected} bytes")


def retry_delay(response: httpx.Response | None, attempt: int, settings: RemoteSettings) -> float:
    """Seconds to wait before try ``attempt + 1``: the provider's hint when it gives one, else back-off."""
    hint = _hinted_delay(response) if response is not None else None
    if hint is None:
        hint = settings.backoff_s * 2 ** attempt * random.uniform(0.75, 1.25)
    return max(0.0, min(hint, settings.max_wait_s))


def _hinted_delay(response: httpx.Response) -> float | None:
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    after = response.headers.get("retry-after")
    if after:
        try:
            return float(after)
        except ValueError:
            try:
                return (parsedate_to_datetime(after) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                pass
    return _retry_info(response)


def _retry_info(response: httpx.Response) -> float | None:
    """Google's ``error.details[].retryDelay`` ("34s") of a ``google.rpc.RetryInfo``."""
    details = (_error_object(response) or {}).get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def provider_message(response: httpx.Response) -> str:
    """The provider's own error text, whatever its shape (OpenAI/Gemini, Runway, fal)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or error)
    if isinstance(error, str):
        return error
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
                         if isinstance(d, dict))
    if detail:
        return str(detail)
    return (body.get("message") if isinstance(body, dict) else None) or str(body)[:300]


class Caller:
    """Sends one provider's requests with retries, health accounting and key-free error messages."""

    def __init__(self, provider: str, settings: RemoteSettings, health: HealthTracker, secret: str | None,
                 sleep: Callable[[float], None] = time.sleep):
        self.provider = provider
        self.settings = settings
        self.health = health
        self.secret = secret
        self.sleep = sleep
        #: the model (and route) the create requests ask for, when the caller knows: a 404 naming one is "gone"
        self.models: tuple[str, ...] = ()

    def send(self, client: httpx.Client, method: str, url: str, *, create: bool = False,
             stream: bool = False, **kwargs) -> httpx.Response:
        """One request with retries; ``create`` requests are never re-sent once they may have arrived.

        With ``stream`` the response is returned unread (the caller reads and closes it).
        """
        last = ""
        for attempt in range(self.settings.attempts):
            response = None
            try:
                request = client.build_request(method, url, **kwargs)
                response = client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                last = f"cannot connect ({type(error).__name__})"
            except httpx.TransportError as error:  # timeouts and dropped connections after sending
                if create:
                    raise self._maybe_submitted(type(error).__name__) from error
                last = f"no answer ({type(error).__name__})"
            else:
                if response.status_code < 400:
                    self.health.success(self.provider)
                    return response
                if stream:
                    response.read()
                message = provider_message(response)
                if create and response.status_code in GATEWAY_TIMEOUTS:
                    raise self._maybe_submitted(f"HTTP {response.status_code}: {message}")
                retryable = response.status_code in RETRYABLE and (not create or response.status_code == 429)
                if not retryable:
                    if create and model_gone(response, message, self.models):
                        raise ModelUnavailable(self._clean(f"HTTP {response.status_code}: {message}"))
                    if response.status_code >= 500:
                        self.health.failure(self.provider, f"HTTP {response.status_code}")
                    raise ProviderError(self._clean(f"{self.provider} refused the request "
                                                    f"(HTTP {response.status_code}): {message}"),
                                        response.status_code)
                last = f"HTTP {response.status_code}: {message}"
            if not last.startswith("HTTP 429"):
                self.health.failure(self.provider, self._clean(last))
            if attempt + 1 < self.settings.attempts:
                delay = retry_delay(response, attempt, self.settings)
                log.info("%s %s failed (%s); retrying in %.2f s", self.provider, method, self._clean(last), delay)
                self.sleep(delay)
        if response is not None and response.status_code == 429:
            said = last.removeprefix("HTTP 429: ")
            raise RateLimited(self._clean(f"{self.provider} is rate-limiting these requests: it answered HTTP 429 "
                                          f"(too many requests) to all {self.settings.attempts} tries ({said}). "
                                          "Wait a few minutes before trying again: the limit is your account's "
                                          f"at {self.provider} (its plan or quota)."), 429)
        raise ProviderUnavailable(self._clean(f"{self.provider} is not answering after "
                                              f"{self.settings.attempts} tries (last: {last})."),
                                  response.status_code if response is not None else None)

    def _maybe_submitted(self, why: str) -> MaybeSubmitted:
        """A create request that got no real answer (``why``): counted as a failure, never sent again."""
        self.health.failure(self.provider, self._clean(f"no answer ({why})"))
        return MaybeSubmitted(self._clean(f"{self.provider} did not answer the create request ({why}); it may "
                                          "have been accepted, so MASUKA does not send it again."))

    def _clean(self, text: str) -> str:
        """Never let a key reach a message, a log line or a row."""
        return text.replace(self.secret, mask(self.secret)) if self.secret else text


def key_fix(variable: str, admin: bool) -> str:
    """How to give a missing key: an admin (or the only user) sets ``variable`` or saves it; anyone else, who
    cannot, is told to ask an admin."""
    return f"set {variable} or save the key in Settings" if admin else "ask an admin to save the key in Settings"


def service_key(studio: Studio, cls: type[ServiceClient], owner: str) -> str:
    """The key of ``cls``'s service; when none is set, :class:`InvalidInput` in words that suit ``owner``."""
    if key := studio.keys.get(cls.service):
        return key
    raise InvalidInput(f"No API key for {cls.display_name()}: "
                       f"{key_fix(cls.service.key_env[0], studio.config.is_admin(owner))}.")


Client = TypeVar("Client", bound="ServiceClient")


def open_client(studio: Studio, cls: type[Client], owner: str) -> Client:
    """A ready client of ``cls`` for work of ``owner``'s: its service's key (:func:`service_key`), retry settings and
    health tracker."""
    key = service_key(studio, cls, owner)
    settings = RemoteSettings.from_env()
    return cls(settings, HealthTracker(studio.store, settings), key)


class ServiceClient(Declared):
    """A keyed client of one declared service: requests with retries (:class:`Caller`), a client that sends the
    key to the service's base URL, and a bare one (no key) for files on other hosts."""

    def __init__(self, settings: RemoteSettings, health: HealthTracker, key: str):
        self.key = key
        self.settings = settings
        self.base_url = self.service.base_url()
        self.caller = Caller(self.name, settings, health, key)
        timeout = httpx.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s))
        self.client = httpx.Client(base_url=self.base_url, headers=self.service.auth_headers(key), timeout=timeout,
                                   verify=tls_context())
        self.bare = httpx.Client(timeout=timeout, follow_redirects=True, verify=tls_context())

    @classmethod
    def display_name(cls) -> str:
        return cls.service.label

    def close(self) -> None:
        self.client.close()
        self.bare.close()
