"""Whether the Hugging Face Hub can be reached: one fast probe, remembered for a minute.

Loading a model that is not downloaded while the Hub is unreachable would otherwise wait through the Hub
client's retries for every file (minutes) before failing. Loaders ask :func:`hub_reachable` first and load
from the local cache only (``local_files_only``) when the answer is no, so the failure comes in seconds with
the usual "not downloaded and the Hub cannot be reached" message. ``HF_HUB_OFFLINE`` means no, without a probe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from masuka.errors import ModelUnavailable
from masuka.remote.tls import tls_context
from masuka.services import hub_endpoint

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 3.0
REMEMBER_S = 60.0
_lock = threading.Lock()
_answers: dict[str, tuple[float, bool]] = {}  # endpoint -> (monotonic time of the probe, reachable)


def hub_cache_dir() -> Path:
    """The Hugging Face cache (``HF_HUB_CACHE`` when set, read at call time)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def repo_cache_folder(repo: str, cache: Path | None = None) -> Path:
    """The folder of model ``repo`` in the Hugging Face cache (``cache``, else :func:`hub_cache_dir`)."""
    from huggingface_hub.file_download import repo_folder_name

    return (cache or hub_cache_dir()) / repo_folder_name(repo_id=repo, repo_type="model")


def cached_file(repo: str, file: str, revision: str = "main") -> str | None:
    """The local path of ``file`` of model ``repo`` at ``revision`` when the Hugging Face cache holds it whole."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, file, cache_dir=hub_cache_dir(), revision=revision)
    return found if isinstance(found, str) else None  # None, or a marker that the Hub has no such file


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as the Hub client itself read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


OFFLINE = "offline: HF_HUB_OFFLINE is set"  # why the Hub cannot be reached, when that is why


def not_downloaded(what: str, remedy: str) -> ModelUnavailable:
    """``what`` is not in the cache and the Hub cannot be reached (why, when known): ``remedy`` says what to do."""
    why = OFFLINE if hub_offline() else "check the network"
    return ModelUnavailable(f"{what} is not downloaded and the Hugging Face Hub ({hub_endpoint()}) cannot be reached "
                            f"({why}): {remedy}.")


def hub_reachable() -> bool:
    """True when the Hub answered a probe within the last minute (or answers one now)."""
    if hub_offline():
        return False
    endpoint = hub_endpoint()
    with _lock:
        probed = _answers.get(endpoint)
        if probed is None or time.monotonic() - probed[0] > REMEMBER_S:
            probed = (time.monotonic(), _probe(endpoint))
            _answers[endpoint] = probed
    return probed[1]


def _probe(endpoint: str) -> bool:
    import httpx  # here, not at import: the benchmark suite runs where only the model libraries are installed

    try:
        httpx.head(f"{endpoint}/api/models", timeout=PROBE_TIMEOUT_S, follow_redirects=False, verify=tls_context())
    except httpx.HTTPError as error:
        log.warning("the Hugging Face Hub (%s) cannot be reached: %s", endpoint, error)
        return False
    return True


def cache_only(source: str) -> bool:
    """Whether loading ``source`` must stay in the local cache: a repo id while the Hub is unreachable."""
    return not Path(source).expanduser().is_dir() and not hub_reachable()
