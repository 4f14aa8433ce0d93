"""Every outside service's key: the full list of declared services (:func:`services`: Hugging Face, the video
providers, the training backends, CivitAI, ngrok, the prompt optimizer's endpoint), each key's source and masked
form for the Settings tab, and a live check of each.

A key check makes one cheap authenticated request and reports the outcome without ever repeating the key. The
keys themselves live in :mod:`masuka.key_store`.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING

from masuka.errors import InvalidInput
from masuka.key_store import KeyStore, mask
from masuka.remote.tls import tls_context
from masuka.services import CIVITAI, HUGGINGFACE, NGROK, PROMPT_LLM, Service

if TYPE_CHECKING:
    import httpx

    from masuka.store import Store

log = logging.getLogger(__name__)
NGROK_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{20,120}$")
CHECK_TIMEOUT_S = 15.0
MAX_KEY_CHARS = 1000  # real provider keys are well under 300 characters


@functools.cache
def services() -> dict[str, Service]:
    """Every declared service by name: Hugging Face, the video providers (catalog order), the training backends,
    CivitAI, ngrok, the prompt optimizer's chat endpoint. The provider modules load on the first call."""
    from masuka.training.backends import remote_backends
    from masuka.video.providers import remote_providers

    found = {HUGGINGFACE.name: HUGGINGFACE}
    for declaring in (*remote_providers().values(), *remote_backends().values()):
        found.setdefault(declaring.service.name, declaring.service)
    found.update({CIVITAI.name: CIVITAI, NGROK.name: NGROK, PROMPT_LLM.name: PROMPT_LLM})
    return found


def service(name: str) -> Service:
    """The declared service ``name``; ``KeyError`` when there is none."""
    return services()[name]


# -- the Settings tab's key table and checks ---------------------------------------------------------
def key_labels() -> dict[str, str]:
    """Key name -> the label the Settings tab shows, from the service declarations."""
    return {name: declared.label for name, declared in services().items()}


def key_table(keys: KeyStore) -> list[dict]:
    """Each key: its label, where it comes from (env/file/none, or an unreadable key file) and its masked form."""
    rows = []
    for name, declared in services().items():
        try:
            source, masked = keys.source(declared) or "not set", mask(keys.get(declared))
        except InvalidInput:  # the key file is unreadable: Test says why, the next save moves it aside
            source, masked = "file unreadable", ""
        rows.append({"name": name, "label": declared.label, "source": source, "masked": masked,
                     "env": " or ".join(declared.key_env)})
    return rows


def _known(name: str) -> Service:
    if name not in services():
        raise InvalidInput(f"Unknown key {name!r}: choose one of {', '.join(services())}.")
    return service(name)


def save_key(keys: KeyStore, name: str, value: str | None) -> str:
    """Save (or, with an empty value, forget) a key in the key file; returns a message without the key."""
    declared = _known(name)
    value = (value or "").strip()
    if len(value) > MAX_KEY_CHARS:
        raise InvalidInput(f"The {declared.label} key is {len(value):,} characters long: keys are at most "
                           f"{MAX_KEY_CHARS:,}. Paste the key alone.")
    if any(ch.isspace() for ch in value):
        raise InvalidInput(f"The {declared.label} key contains spaces or line breaks: paste the key alone.")
    if not (value.isascii() and value.isprintable()):
        raise InvalidInput(f"The {declared.label} key contains characters no key has (non-ASCII such as '…', or "
                           "control characters): copy it again from the provider's page.")
    aside = keys.set(declared, value or None)
    moved = f" The unreadable key file was moved to {aside.name}: its keys can be recovered from it." if aside else ""
    if not value:
        return f"{declared.label} key removed from the key file.{moved}"
    shadowed = " (the environment variable still takes precedence)" if keys.source(declared) == "env" else ""
    return f"{declared.label} key saved: {mask(value)}{shadowed}.{moved}"


def check_key(keys: KeyStore, name: str, set_here: str = "paste it here") -> tuple[bool, str]:
    """Try the key against its service; ``(ok, message)``. The message never contains the key; with no key set,
    it says to ``set_here`` (the Settings tab's words by default, the CLI's command) or set the variable."""
    declared = _known(name)
    label = declared.label
    key = keys.get(declared)
    if not key:
        return False, f"No {label} key is set: {set_here} or set {declared.key_env[0]}."
    if name == NGROK.name:
        if NGROK_TOKEN.match(key):
            return True, f"The ngrok token {mask(key)} looks valid (it is checked by ngrok when a tunnel opens)."
        return False, f"The ngrok token {mask(key)} does not look like an ngrok authtoken."
    import httpx

    try:
        url, headers = declared.check_request(key)
        response = httpx.get(url, headers=headers, timeout=CHECK_TIMEOUT_S, follow_redirects=True,
                             verify=tls_context())
    except UnicodeError:  # a key saved before keys were checked for such characters
        return False, (f"The {label} key {mask(key)} contains characters no key has (non-ASCII or control "
                       "characters): save it again, copied from the provider's page.")
    except httpx.HTTPError as error:
        log.info("key check for %s could not reach %s: %s", name, httpx.URL(url).host, type(error).__name__)
        return False, f"{label} could not be reached ({type(error).__name__}): check the network and try again."
    status = response.status_code
    if status in (401, 403):
        return False, f"{label} refused the key {mask(key)} (HTTP {status}): it is wrong, revoked or lacks access."
    if status in declared.check_ok:
        return True, f"{label} accepted the key {mask(key)}."
    if status >= 400:
        return False, f"{label} answered HTTP {status}; the key {mask(key)} could not be confirmed."
    return True, f"{label} accepted the key {mask(key)}{_who(name, response)}."


def _who(name: str, response: httpx.Response) -> str:
    """A short detail from a successful check (account name, model count), when the answer has one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if name in ("huggingface", "civitai") and (body.get("name") or body.get("username")):
        return f" (signed in as {body.get('name') or body.get('username')})"
    models = body.get("data") or body.get("models")
    return f" ({len(models)} models visible)" if isinstance(models, list) else ""


def key_renewed(store: Store, keys: KeyStore, name: str) -> int:
    """Settings saved or tested the key of service ``name``: forget the models its provider refused to that key
    (:func:`masuka.video.availability.forget_unavailable`), so the next job asks again. Returns how many went."""
    from masuka.video.availability import forget_unavailable

    if name not in services():
        return 0
    try:
        key = keys.get(services()[name])
    except InvalidInput:  # an unreadable key file: nothing to forget for
        return 0
    return forget_unavailable(store, name, key)
