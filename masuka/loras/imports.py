"""Bringing LoRAs in: an uploaded ``.safetensors``, a file of a Hugging Face repo, or a CivitAI model version.

Every file is checked with :func:`masuka.loras.files.inspect_lora` (a real safetensors file, not truncated,
LoRA weights for a known architecture; pickles refused unread) before it is copied into the owner's LoRA
folder and listed with its trigger words and base model. The copy is written under a name of its own and put in
place only if no file has the name yet, so two imports of one name at once give one LoRA and one "already have";
a failed import leaves neither file nor row.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path

from masuka.errors import InvalidInput, ModelUnavailable, ProviderError
from masuka.key_store import mask
from masuka.loras.files import inspect_lora
from masuka.loras.library import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    TAKEN,
    check_lora_name,
    check_name,
    lora_folder,
    register_lora,
)
from masuka.models.catalog import REPO_ID
from masuka.remote.tls import tls_context
from masuka.services import CIVITAI, HUGGINGFACE, civitai_base_url, hub_endpoint
from masuka.store import is_id_text
from masuka.studio import Studio
from masuka.validation import composed

log = logging.getLogger(__name__)
NAME = re.compile(r"[^\w.\-]+")
INVISIBLE = ("Cc", "Cf")  # the Unicode categories of control and format characters (bidi, zero-width…)
MAX_LORA_BYTES = 4 * 2**30
TIMEOUT_S = 60.0


def import_lora_file(studio: Studio, owner: str, source: str | Path, name: str | None = None, origin: str = "upload",
                     trigger: str = "", base_model: str = "") -> dict:
    """Check ``source`` and copy it into ``owner``'s LoRA folder; returns the library row."""
    source = Path(source)
    inspect_lora(source)  # refuse before copying anything
    stem = _library_name(studio, owner, name) if name else _library_name(studio, owner, source.stem, shorten=True)
    folder = lora_folder(studio, owner)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.safetensors"
    if target.exists():
        raise InvalidInput(TAKEN.format(stem))
    partial = folder / f".{stem}.{uuid.uuid4().hex}.part"  # each import its own: two at once never mix bytes
    try:
        shutil.copyfile(source, partial)
        try:
            _claim(partial, target)
        except FileExistsError:  # another import of this name got there first
            raise InvalidInput(TAKEN.format(stem)) from None
    finally:
        partial.unlink(missing_ok=True)
    try:
        row_id = register_lora(studio, inspect_lora(target), owner, origin, trigger=trigger, base_model=base_model)
    except BaseException:  # no file without its row (one that another caller recorded meanwhile stays)
        if not studio.store.count("loras", "path = ?", [studio.config.relative(target)]):
            target.unlink(missing_ok=True)
        raise
    return studio.store.existing("loras", row_id)


def _claim(partial: Path, target: Path) -> None:
    """Put ``partial`` at ``target`` unless a file is there already (:class:`FileExistsError`), in one step: a hard
    link, or where the file system has none (some network and FUSE mounts) an exclusive create replaced at once."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError:
        with open(target, "xb"):
            pass
        try:
            os.replace(partial, target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _library_name(studio: Studio, owner: str, name: str, shorten: bool = False) -> str:
    """``name`` as a LoRA file's stem (composed: :func:`~masuka.validation.composed`; other characters than letters,
    digits, '-', '_', '.' made '_'), refused when empty, only digits, longer than :data:`MAX_NAME_CHARS` characters
    or :data:`MAX_NAME_BYTES` bytes (a name not chosen by the user, a file's or a CivitAI model's, gets a ``lora-``
    prefix or is cut there instead: ``shorten``), when one of ``owner``'s LoRAs has it already
    (:func:`~masuka.loras.library.check_name`, the rule training names keep too), or when the user's holds a
    control or invisible character, which would vanish."""
    name = composed(name)
    if not shorten and (hidden := next((char for char in name if unicodedata.category(char) in INVISIBLE), "")):
        raise InvalidInput(f"LoRA name holds a control or invisible character (U+{ord(hidden):04X}): remove it.")
    stem = _stem(name)
    if shorten:
        stem = f"lora-{stem}" if is_id_text(stem) else stem
        stem = stem[:MAX_NAME_CHARS]
        while len(stem.encode()) > MAX_NAME_BYTES:
            stem = stem[:-1]
        stem = stem.rstrip("._")
    if not stem:
        raise InvalidInput("Give the LoRA a name (letters, digits, '-', '_' or '.').")
    check_name(stem)
    check_lora_name(studio, owner, stem)
    return stem


def _stem(name: str) -> str:
    """``name`` composed, its characters other than letters, digits, '-', '_', '.' made '_', '.' and '_' stripped
    from its ends: empty when it has no letter or digit."""
    return NAME.sub("_", composed(name)).strip("._")


def import_from_hub(studio: Studio, owner: str, repo: str, filename: str, name: str | None = None) -> dict:
    """Download one ``.safetensors`` file of a Hub repo (token from Settings) and import it."""
    from huggingface_hub import hf_hub_download

    repo, filename = (repo or "").strip(), (filename or "").strip()
    if not REPO_ID.match(repo):
        raise InvalidInput(f"{repo!r} is not a Hugging Face repo id (owner/name).")
    if not filename.endswith(".safetensors"):
        raise InvalidInput("Choose the repo's .safetensors file (pickle formats are refused).")
    from masuka.models.hub import hub_reachable
    from masuka.models.manage import download_error, hub_unreachable

    title = _library_name(studio, owner, name) if name else \
        _library_name(studio, owner, Path(filename).stem, shorten=True)  # refused before the download
    again = f"import {repo} {filename} again"
    if not hub_reachable():  # in seconds, not after the Hub client's retries
        raise hub_unreachable(again)
    token = studio.keys.optional(HUGGINGFACE)
    with tempfile.TemporaryDirectory(dir=studio.config.tmp_dir) as tmp:
        try:
            path = hf_hub_download(repo, filename, local_dir=tmp, endpoint=hub_endpoint(), token=token)
        except Exception as error:  # gated, missing, offline: one message naming the repo
            raise download_error(repo, error, bool(token), again, admin=studio.config.is_admin(owner),
                                 unreadable=None if token else studio.keys.unreadable()) from error
        return import_lora_file(studio, owner, path, title, "huggingface")


def import_from_civitai(studio: Studio, owner: str, version_id: str | int, name: str | None = None) -> dict:
    """Import a CivitAI model version (``CIVITAI_API_KEY`` from Settings): its SafeTensor file, trigger words
    and base model."""
    import httpx

    version = str(version_id).strip()
    if not version.isdigit():
        raise InvalidInput(f"{version_id!r} is not a CivitAI model version id (a number, as in "
                           "civitai.com/models/…?modelVersionId=123456).")
    key = studio.keys.get(CIVITAI)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = civitai_base_url()
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=True, headers=headers, verify=tls_context()) as client:
        details = _civitai_json(client, f"{base}/api/v1/model-versions/{version}", key)
        files = details.get("files") or []
        primary = next((f for f in files if f.get("primary")), files[0] if files else {})
        if (primary.get("metadata") or {}).get("format", "SafeTensor") != "SafeTensor":
            raise InvalidInput(f"CivitAI version {version} is a {primary['metadata']['format']} file: only "
                               "SafeTensor LoRAs are accepted (pickle formats can run code).")
        title = _library_name(studio, owner, name) if name else \
            _library_name(studio, owner, _civitai_name(details, primary, version), shorten=True)  # before the download
        with tempfile.TemporaryDirectory(dir=studio.config.tmp_dir) as tmp:
            path = Path(tmp) / f"civitai-{version}.safetensors"
            _civitai_download(client, f"{base}/api/download/models/{version}", path, key)
            return import_lora_file(studio, owner, path, title, "civitai",
                                    trigger=", ".join(details.get("trainedWords") or []),
                                    base_model=details.get("baseModel") or "")


def _civitai_name(details: dict, primary: dict, version: str) -> str:
    """The name a CivitAI version gets when the user gives none: its model's name, else (that has no letter or
    digit, as "🔥🔥") its file's, else ``civitai-<version>``."""
    found = [(details.get("model") or {}).get("name"), Path(str(primary.get("name") or "")).stem]
    return next((str(name) for name in found if name and _stem(str(name))), f"civitai-{version}")


def _civitai_json(client, url: str, key: str | None) -> dict:
    """The model version CivitAI answers at ``url``: a JSON object whose parts read here have their shapes;
    :class:`ProviderError` for anything else."""
    response = _civitai_get(client, url, key)
    try:
        details = response.json()
    except ValueError:
        details = None
    if not _version_shaped(details):
        raise ProviderError("CivitAI answered with something other than a JSON object; try again later.")
    return details


def _version_shaped(details: object) -> bool:
    """Whether ``details`` is an object whose model is one, whose files are a list of objects (each metadata an
    object), trained words a list of text and base model text; each may be missing or null."""
    if not isinstance(details, dict):
        return False
    files, words = details.get("files") or [], details.get("trainedWords") or []
    return (isinstance(details.get("model") or {}, dict) and isinstance(details.get("baseModel") or "", str)
            and isinstance(files, list)
            and all(isinstance(file, dict) and isinstance(file.get("metadata") or {}, dict) for file in files)
            and isinstance(words, list) and all(isinstance(word, str) for word in words))


def _civitai_download(client, url: str, path: Path, key: str | None) -> None:
    import httpx

    try:
        with client.stream("GET", url) as response:
            _raise_for_civitai(response, key)
            if "text/html" in response.headers.get("content-type", "").lower():  # a sign-in page, not the file
                detail = (f"check that the CivitAI key {mask(key)} may download it" if key else
                          "it may need a CivitAI API key (set CIVITAI_API_KEY in Settings → API keys) or sign-in")
                raise ProviderError(f"CivitAI sent a web page instead of the file: {detail}.")
            written = 0
            with open(path, "wb") as handle:
                for chunk in response.iter_bytes():
                    written += len(chunk)
                    if written > MAX_LORA_BYTES:
                        raise InvalidInput("This CivitAI file is larger than 4 GB: it is not a LoRA.")
                    handle.write(chunk)
    except httpx.HTTPError as error:
        raise ModelUnavailable(f"CivitAI cannot be reached ({type(error).__name__}): check the network.") from None


def _civitai_get(client, url: str, key: str | None):
    import httpx

    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise ModelUnavailable(f"CivitAI cannot be reached ({type(error).__name__}): check the network.") from None
    _raise_for_civitai(response, key)
    return response


def _raise_for_civitai(response, key: str | None) -> None:
    status = response.status_code
    if status in (401, 403):
        detail = f"the CivitAI key {mask(key)} was refused" if key else "it needs a CivitAI API key"
        raise ProviderError(f"CivitAI refused the download: {detail}. Set CIVITAI_API_KEY in Settings → API keys.")
    if status == 404:
        raise InvalidInput("CivitAI has no model version with this id.")
    if status >= 400:
        raise ProviderError(f"CivitAI answered HTTP {status}; try again later.")
