"""Prompt optimizer: an OpenAI-compatible chat endpoint on loopback (and its failures) or a tiny local LLM rewrites
the prompt before generation; the image is made from the rewrite and history keeps both."""

from __future__ import annotations

import json
import time

import pytest

from masuka.cli import main
from masuka.image.aid_settings import AidSettings, save_aid_settings
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.prompt_optimizer import PromptOptimizerError
from masuka.testing.http import FakeServer, Reply
from tests.image.tiny_aids import WORDS, save_tiny_llm

DETAILED = "a red fox curled up in fresh snow, soft morning light, misty pine forest, detailed fur, 85mm photo"


def completion(text: str) -> Reply:
    return Reply(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": "tiny",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]})


@pytest.fixture
def endpoint(monkeypatch):
    """A chat endpoint answering with ``answers`` in turn (the last one repeats); its URL is set in the env."""

    class Endpoint:
        answers: list = [completion(f"Prompt: \"{DETAILED}\"")]

        def route(self, request):
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return answer() if callable(answer) else answer

    chat = Endpoint()
    with FakeServer(chat.route) as server:
        monkeypatch.setenv("MASUKA_PROMPT_LLM_URL", f"{server.url}/v1")
        monkeypatch.setenv("MASUKA_PROMPT_LLM_KEY", "sk-test-123456789")
        chat.server = server
        yield chat


def generate(studio, model, **kw):
    values = dict(prompt="a fox in snow", model=str(model), steps=1, seed=3, width=64, height=64,
                  optimize_prompt=True)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))


def test_endpoint_rewrites_the_prompt_and_history_keeps_both(studio, tiny_model, endpoint):
    result = generate(studio, tiny_model("flux"))[0]
    row = studio.store.get("generations", result.id)
    assert row["prompt"] == DETAILED, "the label and quotes around the answer are dropped"
    assert row["params"]["original_prompt"] == "a fox in snow"
    assert row["params"]["prompt_optimizer"] == "endpoint:gpt-4o-mini"
    assert parse_parameters(read_parameters(result.path)).prompt == DETAILED
    [sent] = endpoint.server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-123456789"
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][1] == {"role": "user", "content": "a fox in snow"}
    assert "natural language" in body["messages"][0]["content"]


def test_sdxl_asks_for_tags(studio, tiny_model, endpoint):
    generate(studio, tiny_model("sdxl"))
    assert "comma-separated list of short descriptive tags" in endpoint.server.requests[0].json()["messages"][0][
        "content"]


def test_a_429_is_retried_after_the_wait_it_asks(studio, tiny_model, endpoint):
    endpoint.answers = [Reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"}),
                        completion(DETAILED)]
    result = generate(studio, tiny_model("flux"))[0]
    assert len(endpoint.server.requests) == 2
    assert studio.store.get("generations", result.id)["prompt"] == DETAILED


def test_a_failing_server_gives_a_clear_message_and_makes_nothing(studio, tiny_model, endpoint):
    endpoint.answers = [Reply(503, {"error": {"message": "overloaded"}}, {"Retry-After": "0"})]
    with pytest.raises(PromptOptimizerError) as caught:
        generate(studio, tiny_model("flux"))
    message = str(caught.value)
    assert "HTTP 503" in message and "overloaded" in message and "your prompt was not changed" in message
    assert "sk-test" not in message
    assert len(endpoint.server.requests) == 3, "server errors are retried before giving up"
    assert studio.store.count("generations") == 0


def test_a_wrong_key_is_said_so(studio, tiny_model, endpoint):
    endpoint.answers = [Reply(401, {"error": {"message": "bad key"}})]
    with pytest.raises(PromptOptimizerError, match="refused the key"):
        generate(studio, tiny_model("flux"))


def test_a_silent_server_times_out(studio, tiny_model, endpoint, monkeypatch):
    monkeypatch.setenv("MASUKA_PROMPT_LLM_TIMEOUT_S", "0.2")

    def slow():
        time.sleep(1.0)
        return completion(DETAILED)

    endpoint.answers = [slow]
    with pytest.raises(PromptOptimizerError, match="did not answer within 0.2 s"):
        generate(studio, tiny_model("flux"))


def test_cli_shows_the_optimized_prompt_and_refuses_cleanly(studio, tiny_model, endpoint, capsys):
    args = ["generate", "--data-dir", str(studio.config.data_dir), "--model", str(tiny_model("flux")), "--prompt",
            "a fox in snow", "--steps", "1", "--width", "64", "--height", "64", "--optimize-prompt", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["optimized_prompt"] == DETAILED
    endpoint.answers = [Reply(500, "boom", {"Retry-After": "0"})]
    assert main(args) == 2
    assert "HTTP 500" in capsys.readouterr().err


def test_local_llm_rewrites_with_its_chat_template(studio, tiny_model, tmp_path):
    llm = save_tiny_llm(tmp_path / "tiny-llm")
    save_aid_settings(studio.config, AidSettings(prompt_llm=str(llm)))
    result = generate(studio, tiny_model("flux"))[0]
    row = studio.store.get("generations", result.id)
    words = row["prompt"].split()
    assert len(words) >= 4 and set(words) <= set(WORDS), "the LLM's own words, no special tokens"
    assert row["params"]["original_prompt"] == "a fox in snow"
    assert row["params"]["prompt_optimizer"] == f"local:{llm}"


@pytest.mark.parametrize("answer, expected", [
    ("Okay, the user wants a fox.</think>\n\nA red fox in fresh snow", "A red fox in fresh snow"),
    ([{"type": "text", "text": "A red fox"}, {"type": "image_url", "image_url": {"url": "x"}},
      {"type": "text", "text": " in fresh snow"}], "A red fox in fresh snow"),
])
def test_reasoning_and_content_parts_leave_the_prompt_alone(studio, tiny_model, endpoint, answer, expected):
    endpoint.answers = [completion(answer)]
    result = generate(studio, tiny_model("flux"))[0]
    assert studio.store.get("generations", result.id)["prompt"] == expected


@pytest.mark.parametrize("answer, message", [
    ("<think>Okay, the user wants a portrait. Let me think about the lighting, the subject", "gave an empty answer"),
    ("a fox\x00 in\x07 snow", "contains control characters"),
])
def test_a_cut_off_or_garbled_answer_is_refused(studio, tiny_model, endpoint, answer, message):
    endpoint.answers = [completion(answer)]
    with pytest.raises(PromptOptimizerError, match=message):
        generate(studio, tiny_model("flux"))
    assert studio.store.count("generations") == 0


def test_a_trigger_word_and_lora_tag_the_rewrite_lost_are_put_back(studio, tiny_model, endpoint):
    from masuka.characters.library import new_character
    from masuka.image.prompt_optimizer import optimize_prompt

    new_character(studio, "anna", "local", "ohwx", {})
    endpoint.answers = [completion("A warm portrait of Anna, a young woman, soft light")]
    result = generate(studio, tiny_model("flux"), prompt="ohwx anna, portrait")[0]
    assert studio.store.get("generations", result.id)["prompt"] == \
        "ohwx, A warm portrait of Anna, a young woman, soft light"
    assert optimize_prompt(studio, "<lora:style:0.8> ohwx anna", "natural", "local").prompt == \
        "<lora:style:0.8> ohwx, A warm portrait of Anna, a young woman, soft light"
    endpoint.answers = [completion("OHWX anna in warm light")]
    assert optimize_prompt(studio, "ohwx anna", "natural", "local").prompt == "OHWX anna in warm light"


def test_the_timeout_bounds_a_server_that_drips_its_answer(studio, tiny_model, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    body = json.dumps(completion(DETAILED).body).encode()

    class Drip(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:  # one byte every 0.1 s: each read is quick, the whole answer takes ~25 s
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MASUKA_PROMPT_LLM_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("MASUKA_PROMPT_LLM_TIMEOUT_S", "1")
    model = tiny_model("flux")  # built before the clock starts: only the wait for the answer is timed
    started = time.monotonic()
    try:
        with pytest.raises(PromptOptimizerError, match="did not answer within 1 s"):
            generate(studio, model)
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 15, "the whole answer (~25 s) was waited for, not cut off after 1 s"


def test_the_trigger_of_a_lora_given_by_its_file_is_put_back_too(studio, tiny_model, endpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    from masuka.models.synthetic import save_tiny_lora

    lora = save_tiny_lora("flux", tmp_path / "style.safetensors")
    save_file(load_file(lora), lora, metadata={"masuka.architecture": "flux", "masuka.trigger": "zq9"})
    endpoint.answers = [completion("A painted harbour at dusk, soft light")]
    [result] = generate_images(studio, ImageRequest(prompt="zq9 style, a harbour", model=str(tiny_model("flux")),
                                                    steps=1, width=64, height=64, optimize_prompt=True,
                                                    loras=[(str(lora), 1.0)]), allow_any_path=True)
    assert studio.store.get("generations", result.id)["prompt"] == "zq9, A painted harbour at dusk, soft light"


def test_the_local_llm_repo_is_held_from_its_download_to_its_answer(studio, monkeypatch, tmp_path):
    from masuka.image.prompt_optimizer import optimize_prompt
    from masuka.models.manage import delete_model
    from tests.models.in_use import cached_repo, deletion_tried_in

    repo = cached_repo(monkeypatch, tmp_path / "hf-cache", save_tiny_llm(tmp_path / "tiny-llm"), "acme/tiny-llm")
    save_aid_settings(studio.config, AidSettings(prompt_llm=repo))
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.gpu)
    optimized = optimize_prompt(studio, "a fox in snow", "natural", "local",
                                gpu=lambda: studio.hold_gpu("prompt optimizer", "local"))
    assert optimized.source == "local:acme/tiny-llm" and len(refusals) == 2
    assert delete_model(studio, repo) > 0  # once the answer is in


def test_a_local_llm_not_downloaded_is_refused_offline_before_the_gpu(studio, tiny_model, monkeypatch, tmp_path):
    from masuka.errors import ModelUnavailable
    from tests.models.in_use import use_cache

    use_cache(monkeypatch, tmp_path / "empty-hf-cache")
    save_aid_settings(studio.config, AidSettings(prompt_llm="acme/not-downloaded"))
    slots = []
    monkeypatch.setattr(studio.gpu, "hold", lambda *args, **kwargs: slots.append(args))
    with pytest.raises(ModelUnavailable, match="acme/not-downloaded is not downloaded .* cannot be reached"):
        generate(studio, tiny_model("flux"))
    assert slots == [] and studio.store.count("generations") == 0
