"""Each remote video provider and training backend declares itself once; key variables, base URLs, Settings
labels, key checks and the stand-ins all follow that declaration, and the product never imports the stand-ins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from masuka.key_store import KeyStore
from masuka.keys import check_key, key_labels, key_table, service
from masuka.testing.http import FakeServer, Reply
from masuka.training.backends import REMOTE_BACKENDS, remote_backends, trainer_catalog
from masuka.video.catalog import REMOTE_PROVIDERS, video_catalog
from masuka.video.providers import provider_class

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", [*REMOTE_PROVIDERS, *REMOTE_BACKENDS])
def test_a_provider_declaration_feeds_keys_urls_and_settings(name, monkeypatch, config):
    declared = (provider_class(name) if name in REMOTE_PROVIDERS else remote_backends()[name]).service
    assert declared is service(name) and (name in video_catalog() or name in trainer_catalog())
    keys = KeyStore(config.data_dir)
    row = {row["name"]: row for row in key_table(keys)}[name]
    assert row["env"] == " or ".join(declared.key_env) and key_labels()[name] == declared.label
    seen = []

    def answer(request):
        seen.append(request)
        return Reply(200, {"data": []})

    with FakeServer(answer) as server:
        monkeypatch.setenv(declared.base_url_env, server.url + "/")
        monkeypatch.setenv(declared.key_env[0], "key-for-the-check-0001")
        ok, message = check_key(keys, name)
    assert ok and declared.label in message
    sent = seen[0].headers
    assert all(sent[header.lower()] == value for header, value in declared.auth_headers(
        "key-for-the-check-0001").items())


def test_runway_version_is_written_once():
    sources = [path for path in (ROOT / "masuka").rglob("*.py") if "2024-11-06" in path.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in sources] == ["masuka/video/providers/runway.py"]


def test_the_stand_in_refuses_a_request_without_a_declared_header(fake, studio):
    import httpx

    from masuka.testing.video import KEY

    server = fake("runway")
    without_version = httpx.get(f"{server.base}/v1/tasks/x", headers={"Authorization": f"Bearer {KEY}"})
    declared = httpx.get(f"{server.base}/v1/tasks/x", headers=service("runway").auth_headers(KEY))
    assert (without_version.status_code, declared.status_code) == (401, 404)


def test_the_app_never_imports_the_stand_ins():
    allowed = {"masuka/bench/load.py"}
    importers = {path.relative_to(ROOT).as_posix() for path in (ROOT / "masuka").rglob("*.py")
                 if re.search(r"masuka\.testing|from masuka import testing", path.read_text())
                 and "masuka/testing/" not in path.as_posix()}
    assert importers <= allowed
