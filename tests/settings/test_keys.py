"""API keys: owner-only storage, masked display, never logged, and a live check against fake providers."""

from __future__ import annotations

import logging
import stat

import pytest

from masuka.errors import InvalidInput
from masuka.key_store import KeyStore
from masuka.keys import check_key, key_table, save_key, service, services
from masuka.testing.http import FakeServer, Reply, bearer

GOOD = {"huggingface": "hf_good_key_0001", "openai": "sk-good-key-0002", "comet": "comet-good-key-0003",
        "gemini": "gemini-good-key-0004", "runway": "runway-good-key-0005", "fal": "fal-good-key:0006",
        "civitai": "civitai-good-key-0007"}


def providers(request):
    """One fake for every provider's key check: each answers 200 only for its good key."""
    path, headers = request.path, request.headers
    if path == "/api/whoami-v2":
        return Reply(200, {"name": "tester"}) if bearer(request) == GOOD["huggingface"] else Reply(401, {})
    if path == "/v1/models":
        ok = bearer(request) in (GOOD["openai"], GOOD["comet"])
        return Reply(200, {"data": [{"id": "sora-2"}, {"id": "gpt-4o"}]}) if ok else Reply(401, {})
    if path == "/v1beta/models":
        return Reply(200, {"models": [{"name": "veo"}]}) if headers.get("x-goog-api-key") == GOOD["gemini"] else \
            Reply(400, {"error": {"message": "API key not valid"}}) if headers.get("x-goog-api-key") else Reply(403, {})
    if path == "/v1/organization":
        ok = bearer(request) == GOOD["runway"] and headers.get("x-runway-version")
        return Reply(200, {"creditBalance": 100}) if ok else Reply(401, {})
    if path.startswith("/fal-ai/"):
        return Reply(404, {"detail": "Request not found"}) if headers.get("authorization") == f"Key {GOOD['fal']}" \
            else Reply(401, {"detail": "No user found"})
    if path == "/api/v1/me":
        return Reply(200, {"username": "painter"}) if bearer(request) == GOOD["civitai"] else Reply(401, {})
    return Reply(404, {})


@pytest.fixture
def keys(config):
    return KeyStore(config.data_dir)


@pytest.fixture
def fake_providers(monkeypatch):
    with FakeServer(providers) as server:
        for env in ("HF_ENDPOINT", "MASUKA_OPENAI_BASE_URL", "MASUKA_COMET_BASE_URL", "MASUKA_GEMINI_BASE_URL",
                    "MASUKA_RUNWAY_BASE_URL", "MASUKA_FAL_BASE_URL", "MASUKA_CIVITAI_BASE_URL"):
            monkeypatch.setenv(env, server.url)
        yield server


def test_saved_keys_are_owner_only_and_shown_masked(keys):
    message = save_key(keys, "openai", "  sk-secret-value-WXYZ \n")
    assert "WXYZ" in message and "secret" not in message and "value-" not in message
    path = keys.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    table = {row["name"]: row for row in key_table(keys)}
    assert table["openai"]["source"] == "file" and table["openai"]["masked"] == "•" * 8 + "WXYZ"
    assert table["gemini"]["source"] == "not set" and table["gemini"]["masked"] == ""
    assert keys.get(service("openai")) == "sk-secret-value-WXYZ"
    save_key(keys, "openai", "")
    assert keys.get(service("openai")) is None and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_key_row_shows_only_the_last_4_characters(keys, monkeypatch):
    secrets = {name: f"{name}-Secret-Middle-{i:04d}" for i, name in enumerate(services())}
    for name, secret in secrets.items():
        for env in service(name).key_env:
            monkeypatch.delenv(env, raising=False)
        assert save_key(keys, name, secret).endswith(f"saved: {'•' * 8}{secret[-4:]}.")
    rows = key_table(keys)
    assert {row["name"] for row in rows} == set(secrets)
    for row in rows:
        assert row["source"] == "file" and row["masked"] == "•" * 8 + secrets[row["name"]][-4:], row["name"]
        assert "Secret" not in str(row) and "Middle" not in str(row), row["name"]


def test_environment_keys_win_and_are_reported_as_env(keys, monkeypatch):
    save_key(keys, "fal", "fal-from-file-1111")
    monkeypatch.setenv("FAL_KEY", "fal-from-env-2222")
    row = {r["name"]: r for r in key_table(keys)}["fal"]
    assert row["source"] == "env" and row["masked"].endswith("2222")
    assert "environment variable still takes precedence" in save_key(keys, "fal", "fal-again-3333")


def test_bad_key_names_and_values_are_refused(keys):
    with pytest.raises(InvalidInput, match="Unknown key"):
        save_key(keys, "aws", "x")
    with pytest.raises(InvalidInput, match="spaces"):
        save_key(keys, "openai", "sk-abc def")


def test_a_key_over_the_documented_length_is_refused_and_changes_nothing(keys):
    from masuka.keys import MAX_KEY_CHARS

    save_key(keys, "openai", "sk-kept-1234")
    before = keys.path.read_bytes()
    with pytest.raises(InvalidInput, match=f"OpenAI key is 100,003 characters long: keys are at most "
                                           f"{MAX_KEY_CHARS:,}") as refused:
        save_key(keys, "openai", "sk-" + "a" * 100_000)
    assert "aaaa" not in str(refused.value)
    assert keys.path.read_bytes() == before and keys.get(service("openai")) == "sk-kept-1234"
    assert save_key(keys, "openai", "k" * MAX_KEY_CHARS).startswith("OpenAI key saved")


@pytest.mark.parametrize("name", sorted(GOOD))
def test_each_key_check_tells_a_good_key_from_a_bad_one(keys, fake_providers, name, caplog):
    caplog.set_level(logging.DEBUG)
    ok, message = check_key(keys, name)
    assert not ok and "No " in message
    save_key(keys, name, GOOD[name])
    ok, message = check_key(keys, name)
    assert ok, message
    assert GOOD[name][-4:] in message and GOOD[name] not in message
    save_key(keys, name, "wrong-key-9876")
    ok, message = check_key(keys, name)
    assert not ok and "9876" in message and "wrong-key" not in message
    assert GOOD[name] not in caplog.text and "wrong-key-9876" not in caplog.text


def test_key_check_reports_an_unreachable_service(keys, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("MASUKA_RUNWAY_BASE_URL", f"http://127.0.0.1:{free_port()}")
    save_key(keys, "runway", "runway-key-4321")
    ok, message = check_key(keys, "runway")
    assert not ok and "could not be reached" in message and "runway-key" not in message


def test_ngrok_token_is_checked_for_its_format(keys):
    save_key(keys, "ngrok", "2abcDEFghiJKLmnoPQRstuVWX_1a2b3c4d5e6f7g8h9i")
    assert check_key(keys, "ngrok")[0]
    save_key(keys, "ngrok", "short!")
    assert not check_key(keys, "ngrok")[0]


def test_saves_from_many_requests_at_once_keep_every_key(studio):
    """The studio holds one key store: saves made at the same moment (two Settings pages) never lose each other."""
    from concurrent.futures import ThreadPoolExecutor

    names = ["openai", "comet", "gemini", "runway", "fal", "replicate", "civitai", "huggingface"]
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda name: [save_key(studio.keys, name, f"{name}-key-{n:04d}") for n in range(20)], names))
    assert {row["name"]: row["masked"][-4:] for row in key_table(studio.keys) if row["name"] in names} == dict.fromkeys(
        names, "0019")


@pytest.mark.parametrize("damage", [lambda text: text[:-1], lambda text: "[]", lambda text: '{"openai": 5}',
                                    lambda text: "\xff"], ids=["truncated", "a list", "not text keys", "not UTF-8"])
def test_an_unreadable_key_file_is_never_overwritten_and_says_so(keys, damage, caplog):
    """A damaged key file names itself instead of crashing each lookup; the next save moves it aside whole (its
    keys can be recovered) instead of replacing every saved key with the new one."""
    save_key(keys, "openai", "sk-first-key-1111")
    save_key(keys, "civitai", "civitai-second-key-2222")
    keys.path.write_bytes(damage(keys.path.read_text()).encode("latin-1"))
    damaged = keys.path.read_bytes()
    with pytest.raises(InvalidInput, match="secrets.json cannot be read"):
        keys.get(service("openai"))
    table = {row["name"]: row for row in key_table(keys)}
    assert table["openai"]["source"] == "file unreadable" and table["gemini"]["source"] == "file unreadable"
    message = save_key(keys, "fal", "fal-third-key-3333")
    assert "moved to secrets.json.bad" in message and "3333" in message
    assert keys.path.with_name("secrets.json.bad").read_bytes() == damaged
    assert keys.get(service("fal")) == "fal-third-key-3333" and keys.get(service("openai")) is None
    assert "secrets.json.bad" in caplog.text and "first-key" not in caplog.text and "1111" not in caplog.text
    keys.path.write_text("{")
    save_key(keys, "fal", "")
    assert keys.path.with_name("secrets.json.bad").read_bytes() == damaged  # an earlier one is kept too
    assert keys.path.with_name("secrets.json.bad.2").read_text() == "{"


@pytest.mark.parametrize("pasted", ["hf_secret_key_value\u2026", "sk-\uff53\uff45\uff43\uff52\uff45\uff54",
                                    "hf_abc\x00def"])
def test_a_key_with_characters_no_key_has_is_refused(keys, pasted):
    """A pasted ellipsis, full-width letters or a control character: refused when saved, as an HTTP header could
    never carry them."""
    with pytest.raises(InvalidInput, match="characters no key has") as refused:
        save_key(keys, "huggingface", pasted)
    assert pasted not in str(refused.value) and keys.get(service("huggingface")) is None


def test_a_key_saved_with_such_characters_earlier_is_reported_by_its_check(keys, fake_providers):
    keys.set(service("openai"), "sk-saved-before-\u2026WXYZ")  # a key file from before the check
    ok, message = check_key(keys, "openai")
    assert not ok and "characters no key has" in message and "saved-before" not in message


def test_a_broken_key_file_does_not_stop_a_generation_that_needs_no_key(tmp_path, tiny_model, monkeypatch, capsys,
                                                                        caplog):
    """The Hugging Face token is optional (a local folder, a public model): an unreadable key file means none, said
    once; a key a provider needs is still looked up strictly."""
    from masuka.cli import main
    from masuka.services import HUGGINGFACE

    for env in (*HUGGINGFACE.key_env, *service("openai").key_env):
        monkeypatch.delenv(env, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    (data / "secrets.json").write_text("{not json", encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="masuka.key_store")
    code = main(["generate", "--data-dir", str(data), "--model", str(tiny_model("flux")), "--prompt", "a pier",
                 "--steps", "1", "--width", "64", "--height", "64", "--batch", "2"])
    assert code == 0, capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1 and str(data / "secrets.json") in warnings[0]
    with pytest.raises(InvalidInput, match="cannot be read"):
        KeyStore(data).get(service("openai"))
