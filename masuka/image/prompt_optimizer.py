"""Prompt optimizer: a short prompt made into a detailed one, in the style the model's architecture reads best
(sentences for FLUX, Qwen-Image and Z-Image; comma-separated tags for SDXL: ``Profile.prompt_style``).

The rewrite comes from any OpenAI-compatible chat endpoint (``POST {base}/chat/completions``: OpenAI,
OpenRouter, a local server) when one is set, else from a small local instruct LLM through transformers
(downloaded on first use). A failure raises :class:`PromptOptimizerError` and leaves the user's prompt as it was.

The answer is cleaned (reasoning, labels, quotes), checked like typed text, and any trigger word (of the user's
characters and LoRAs) or ``<lora:…>`` tag the prompt had and the rewrite lost is put back in front.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from masuka.config import env_number
from masuka.datasets.caption_template import has_trigger
from masuka.errors import Cancelled, InvalidInput, ProviderError
from masuka.image.aid_settings import AidSettings, load_aid_settings
from masuka.jobs import Watch
from masuka.loras.tags import LORA_TAG
from masuka.models.manage import using_models
from masuka.remote.tls import tls_context
from masuka.services import PROMPT_LLM
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.validation import plain_text

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
INSTRUCTIONS = {
    "natural": "You write prompts for a text-to-image model. Rewrite the user's short prompt as one detailed "
               "paragraph of natural language: subject, setting, composition, lighting, colours, style and camera. "
               "Keep everything the user asked for. Answer with the prompt only, no quotes or comments.",
    "tags": "You write prompts for a Stable Diffusion XL model. Rewrite the user's short prompt as a comma-separated "
            "list of short descriptive tags: subject, details, setting, lighting, style and quality tags. Keep "
            "everything the user asked for. Answer with the tags only, no sentences, quotes or comments.",
}
ATTEMPTS = 3
POLL_S = 0.1  # how often a wait for the chat endpoint asks whether it was stopped
MAX_WAIT_S = 10.0
MAX_NEW_TOKENS = 160
MAX_CHARS = 4000  # the generation form's prompt limit
THINKING = re.compile(r"<think>.*?(</think>|$)", re.S)  # unclosed: the answer ran out while reasoning


class PromptOptimizerError(ProviderError):
    """The prompt could not be optimized; the message says why and that the prompt is unchanged."""


@dataclass
class Optimized:
    prompt: str
    original: str
    source: str  # "endpoint:<model>" or "local:<model>"


def optimize_prompt(studio: Studio, prompt: str, style: str, owner: str,
                    on_download: Watch | None = None,
                    gpu: Callable[[], AbstractContextManager] = nullcontext, triggers: Iterable[str] = (),
                    cancelled: Callable[[], bool] | None = None) -> Optimized:
    """The detailed version of ``prompt`` in ``style`` ("natural" or "tags"); the local LLM runs inside
    ``gpu()`` (a GPU slot), after its download. Trigger words the rewrite lost (the owner's LoRAs' and
    characters', and ``triggers``: those of the request's LoRAs) are put back. ``cancelled()`` saying yes ends
    the wait for the chat endpoint (:class:`~masuka.errors.Cancelled`)."""
    settings = load_aid_settings(studio.config)
    messages = [{"role": "system", "content": INSTRUCTIONS.get(style, INSTRUCTIONS["natural"])},
                {"role": "user", "content": prompt.strip()}]
    if settings.endpoint():
        answer = _ask_endpoint(settings, studio.keys.get(PROMPT_LLM), messages, cancelled or (lambda: False))
        source = f"endpoint:{settings.endpoint_model()}"
    else:
        with using_models(studio, owner, settings.prompt_llm, watch=on_download), gpu():
            answer = _ask_local(studio, settings.prompt_llm, messages)
        source = f"local:{settings.prompt_llm}"
    detailed = _clean(answer)
    if not detailed:
        raise PromptOptimizerError(f"The prompt optimizer ({source}) gave an empty answer; your prompt was not "
                                   "changed. Try again or turn the optimizer off.")
    try:
        plain_text("the optimized prompt", detailed, MAX_CHARS)
    except InvalidInput as error:
        raise PromptOptimizerError(f"The prompt optimizer ({source}) gave an answer that cannot be used ({error}); "
                                   "your prompt was not changed.") from None
    known = [*triggers, *_known_triggers(studio, owner)]
    return Optimized(_restore(prompt.strip(), detailed, known), prompt.strip(), source)


def timeout_s() -> float:
    """Seconds one request to the chat endpoint may take, to its last byte (``MASUKA_PROMPT_LLM_TIMEOUT_S``)."""
    return env_number("MASUKA_PROMPT_LLM_TIMEOUT_S", 60.0, float, minimum=0.1)


def _ask_endpoint(settings: AidSettings, key: str | None, messages: list[dict], cancelled: Callable[[], bool]) -> str:
    """One chat completion; 429 and 5xx are retried (honouring ``Retry-After``), the rest is explained; the wait
    (for an answer, or before a retry) ends as soon as ``cancelled()`` says so."""
    import httpx

    from masuka.remote.http import provider_message, retry_delay
    from masuka.remote.timing import RemoteSettings

    url = f"{settings.endpoint()}/chat/completions"
    host = httpx.URL(url).host
    headers = PROMPT_LLM.auth_headers(key) if key else {}
    body = {"model": settings.endpoint_model(), "messages": messages, "temperature": 0.7,
            "max_tokens": MAX_NEW_TOKENS * 2}
    unchanged = "your prompt was not changed"
    for attempt in range(ATTEMPTS):
        try:
            response = _post(url, body, headers, cancelled)
        except httpx.TimeoutException:
            raise PromptOptimizerError(f"The prompt optimizer at {host} did not answer within {timeout_s():g} s; "
                                       f"{unchanged}. Try again, or set MASUKA_PROMPT_LLM_TIMEOUT_S.") from None
        except httpx.HTTPError as error:
            raise PromptOptimizerError(f"The prompt optimizer at {host} could not be reached "
                                       f"({type(error).__name__}); {unchanged}.") from None
        status = response.status_code
        if (status == 429 or status >= 500) and attempt + 1 < ATTEMPTS:
            delay = retry_delay(response, attempt, RemoteSettings(max_wait_s=MAX_WAIT_S))
            log.info("prompt optimizer at %s answered HTTP %d; retrying in %.1f s", host, status, delay)
            _wait(delay, cancelled)
            continue
        if status in (401, 403):
            raise PromptOptimizerError(f"The prompt optimizer at {host} refused the key (HTTP {status}): set it in "
                                       f"Settings → API keys or MASUKA_PROMPT_LLM_KEY; {unchanged}.")
        if status >= 400:
            busy = " (too many requests, still after retries)" if status == 429 else ""
            raise PromptOptimizerError(f"The prompt optimizer at {host} answered HTTP {status}{busy}: "
                                       f"{provider_message(response)[:200]}; {unchanged}.")
        try:
            return _text(response.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise PromptOptimizerError(f"The prompt optimizer at {host} did not answer like an OpenAI-compatible "
                                       f"chat endpoint; {unchanged}.") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _wait(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep ``seconds``, or until ``cancelled()`` (then :class:`Cancelled`)."""
    deadline = time.monotonic() + seconds
    while not cancelled():
        if time.monotonic() >= deadline:
            return
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    raise Cancelled(at="while the prompt optimizer waited for its LLM")


def _post(url: str, body: dict, headers: dict, cancelled: Callable[[], bool]) -> httpx.Response:
    """The answer to one POST, made on a thread of its own so that ``cancelled()`` saying yes ends the wait at
    once (:class:`Cancelled`; the abandoned request ends within its timeout)."""
    answer: Future[httpx.Response] = Future()

    def ask() -> None:
        try:
            answer.set_result(_read_whole(url, body, headers))
        except BaseException as error:  # handed to the waiting caller
            answer.set_exception(error)

    threading.Thread(target=ask, name="prompt-optimizer-request", daemon=True).start()
    while True:
        if cancelled():
            raise Cancelled(at="while the prompt optimizer waited for its LLM")
        try:
            return answer.result(timeout=POLL_S)
        except TimeoutError:
            if answer.done():  # the request's own error
                raise


def _read_whole(url: str, body: dict, headers: dict) -> httpx.Response:
    """The answer to one POST, read whole within :func:`timeout_s` (httpx's timeout bounds each read only: a
    server sending a byte now and then would hold it for ever); :class:`httpx.ReadTimeout` past it."""
    import httpx

    limit = timeout_s()
    deadline = time.monotonic() + limit
    with httpx.stream("POST", url, json=body, headers=headers, timeout=limit, verify=tls_context()) as response:
        content = bytearray()
        for chunk in response.iter_raw():
            content += chunk
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"no whole answer within {limit:g} s", request=response.request)
    return httpx.Response(response.status_code, headers=response.headers, content=bytes(content),
                          request=response.request)


def _text(content: Any) -> str:
    """A chat answer's text: the string, or the text parts of a list of content parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise TypeError(f"message content is a {type(content).__name__}")
    return "".join(part if isinstance(part, str) else str(part.get("text") or "") for part in content
                   if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text"))


def _ask_local(studio: Studio, source: str, messages: list[dict]) -> str:
    """Greedy decoding with the local instruct LLM, loaded once into the aids' model cache."""
    import torch

    from masuka.gpu import device_plan
    from masuka.models.catalog import ModelSpec, explain_load_error
    from masuka.models.hub import cache_only

    plan = device_plan(2.0)

    def load():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            local = cache_only(source)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
            # Any: the decorator transformers wraps from_pretrained in hides that it is a classmethod
            loader: Any = AutoModelForCausalLM
            model = loader.from_pretrained(source, dtype=plan.dtype, use_safetensors=True, local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec("prompt-llm", source, None, name=source), error) from error
        return tokenizer, model.to(plan.device).eval()

    tokenizer, model = studio.aids.get(("prompt-llm", source, plan.device, plan.dtype_name), load)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(plan.device)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _clean(answer: str) -> str:
    """The prompt alone: no reasoning (a block, an unclosed one, or one whose opening tag the chat template
    wrote), label, surrounding quotes or line breaks; at most MAX_CHARS."""
    text = THINKING.sub("", answer).rpartition("</think>")[2].strip()
    text = re.sub(r"^(optimi[sz]ed |detailed |improved )?(prompt|tags)\s*:\s*", "", text, flags=re.I)
    text = " ".join(text.strip().strip("\"'`").split())
    return text[:MAX_CHARS].rstrip()


def _known_triggers(studio: Studio, owner: str) -> list[str]:
    """The trigger words of the user's characters and of the library LoRAs they may use, read from their rows
    (no scan of the LoRA folder on each optimized prompt; the characters package stands above this one)."""
    rows = [*studio.store.find("characters", "owner = ? and trigger != ''", [owner]),
            *studio.store.find("loras", "owner in (?, ?) and trigger != ''", [owner, LOCAL_USER])]
    return [row["trigger"] for row in rows]


def _restore(original: str, rewrite: str, triggers: Iterable[str]) -> str:
    """``rewrite`` with what it must not lose put back in front: the ``<lora:…>`` tags of ``original`` and those
    of ``triggers`` that ``original`` has; at most MAX_CHARS."""
    tags = [tag.group(0) for tag in LORA_TAG.finditer(original) if tag.group(0) not in rewrite]
    lost = [word for word in dict.fromkeys(triggers) if has_trigger(original, word) and not has_trigger(rewrite, word)]
    front = " ".join([*tags, ", ".join(lost)]).strip()
    text = f"{front}, {rewrite}" if lost else f"{front} {rewrite}".strip()
    return text[:MAX_CHARS].rstrip()
