"""Studio settings of the generation aids: which models the prompt optimizer and the safety check use, what
happens to a flagged image, and whether the safety check is mandatory for everyone.

Kept in ``aids.json`` in the data dir (nothing secret in it: the chat endpoint's key lives in the key file as
``prompt_llm``). ``MASUKA_PROMPT_LLM_URL`` and ``MASUKA_PROMPT_LLM_MODEL`` win over the saved values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from masuka.config import Config, env_text
from masuka.errors import InvalidInput
from masuka.image.face_restore import check_restore_model
from masuka.image.safety_labels import check_safety_model
from masuka.services import PROMPT_LLM
from masuka.settings_file import load_settings, save_settings
from masuka.validation import plain_text

SAFETY_ACTIONS = {"blur": "blur the image", "withhold": "save a grey placeholder instead of the image"}
DEFAULT_PROMPT_LLM = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_SAFETY_MODEL = "Falconsai/nsfw_image_detection"
MAX_FIELD_CHARS = 1024  # a model field's limit (masuka.models.catalog)


@dataclass
class AidSettings:
    """What the generation aids use; see the module docstring."""

    prompt_llm: str = DEFAULT_PROMPT_LLM  # local instruct LLM (repo id or folder), used when no endpoint is set
    prompt_llm_url: str = ""  # base URL of an OpenAI-compatible chat endpoint ("" = the local LLM)
    prompt_llm_model: str = "gpt-4o-mini"  # the model name sent to the endpoint
    safety_model: str = DEFAULT_SAFETY_MODEL  # a transformers image classifier with an "nsfw" label
    safety_threshold: float = 0.5  # an image is flagged when its "nsfw" score reaches this
    safety_action: str = "blur"  # one of SAFETY_ACTIONS
    safety_mandatory: bool = False  # check every image of every user, whatever the request says
    face_restore_model: str = ""  # a GFPGAN-class model file run through spandrel after face detail ("" = none)

    def endpoint(self) -> str:
        """The chat endpoint's base URL (the environment first), "" when the local LLM is used."""
        return (PROMPT_LLM.base_url() or self.prompt_llm_url).rstrip("/")

    def endpoint_model(self) -> str:
        return env_text("MASUKA_PROMPT_LLM_MODEL") or self.prompt_llm_model


def _model_source(name: str, value: str) -> str:
    """``value`` stripped when it is a Hugging Face repo id or an existing folder, else :class:`InvalidInput`
    naming the field: a value no loader could use is refused when saved, not at every later generation."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    source = plain_text(f"the {name}", value, MAX_FIELD_CHARS).strip()
    if not source:
        raise InvalidInput(f"The {name} is empty: give a Hugging Face repo id or a folder.")
    try:
        validate_repo_id(source)
        return source
    except HFValidationError:
        pass
    try:
        folder = Path(source).is_dir()
    except OSError:  # a name too long for the file system
        folder = False
    if not folder:
        raise InvalidInput(f"The {name} {source!r} is neither a Hugging Face repo id (owner/name) nor an existing "
                           "folder.")
    return source


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # a malformed address, such as an unclosed [IPv6 bracket
        return None


def _path(config: Config) -> Path:
    return config.data_dir / "aids.json"


def load_aid_settings(config: Config) -> AidSettings:
    """The saved settings (a missing or unreadable file gives the built-in ones:
    :func:`~masuka.settings_file.load_settings`)."""
    saved = load_settings(_path(config))
    known = {f.name for f in fields(AidSettings)}
    return AidSettings(**{k: v for k, v in saved.items() if k in known})


def save_aid_settings(config: Config, settings: AidSettings) -> AidSettings:
    """Check and save ``settings``; :class:`InvalidInput` names a bad value."""
    if settings.safety_action not in SAFETY_ACTIONS:
        raise InvalidInput(f"What happens to a flagged image must be {' or '.join(SAFETY_ACTIONS)} "
                           f"(got {settings.safety_action!r}).")
    if not 0 < float(settings.safety_threshold) <= 1:
        raise InvalidInput(f"The safety threshold must be above 0 and at most 1 (got {settings.safety_threshold}).")
    url = plain_text("the chat endpoint", settings.prompt_llm_url, MAX_FIELD_CHARS).strip()
    if url and not (url.startswith(("http://", "https://")) and _host(url)):
        raise InvalidInput(f"The chat endpoint must be an http(s) URL such as https://api.openai.com/v1 (got {url!r}).")
    endpoint_model = plain_text("the endpoint's model name", settings.prompt_llm_model, MAX_FIELD_CHARS).strip()
    safety_model = _model_source("safety model", settings.safety_model)
    check_safety_model(safety_model)
    cleaned = AidSettings(prompt_llm=_model_source("local LLM", settings.prompt_llm), prompt_llm_url=url,
                          prompt_llm_model=endpoint_model or AidSettings.prompt_llm_model,
                          safety_model=safety_model,
                          safety_threshold=float(settings.safety_threshold), safety_action=settings.safety_action,
                          safety_mandatory=bool(settings.safety_mandatory),
                          face_restore_model=check_restore_model(settings.face_restore_model))
    save_settings(_path(config), asdict(cleaned))
    return cleaned
