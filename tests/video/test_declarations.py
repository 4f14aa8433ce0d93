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


def test_a_module_whose_service_is_named_otherwise_is_told_by_name(tmp_path, monkeypatch):
    from masuka.services import declared_classes
    from masuka.video.providers.base import Provider

    package = tmp_path / "misnamed_providers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "acme.py").write_text("from masuka.services import Service\n"
                                     "from masuka.video.providers.base import Provider\n\n\n"
                                     "class Acme(Provider):\n"
                                     "    service = Service('acme-video', 'Acme', ('ACME_KEY',))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=re.escape(
            "Module misnamed_providers.acme must declare a Provider subclass whose Service is named 'acme' (the "
            "module's and the catalog's id): Acme declares 'acme-video'.")):
        declared_classes("misnamed_providers", ("acme",), Provider)


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


def test_a_new_providers_stand_in_is_one_route_method(monkeypatch, sample_mp4):
    """A provider the stand-in has never heard of is served by its ``_<id>`` method alone: the model-gone
    answer, where the create request names its model and which routes serve it come from ``APIS`` or its
    defaults, not from branches on provider names."""
    import json

    from masuka.services import Service
    from masuka.testing import video as stand_ins

    declared = Service("lumen", "Lumen", ("LUMEN_API_KEY",), auth=("X-Lumen-Key", "{key}"))
    monkeypatch.setattr(stand_ins, "service", lambda name: declared)

    class WithLumen(stand_ins.FakeProvider):
        def _lumen(self, route, method, path, body):
            return 200, {}, json.dumps({"id": self._new_job(json.loads(body)), "route": route}).encode()

    server = WithLumen("lumen", sample_mp4)
    try:
        server.gone_models = {"lumen-0"}
        headers = {"x-lumen-key": stand_ins.KEY}
        status, _headers, body = server.handle("POST", "/v2/videos", headers, b'{"model": "lumen-0"}')
        assert status == 404 and "lumen-0" in body.decode()
        status, _headers, body = server.handle("POST", "/v2/videos", headers, b'{"model": "lumen-1"}')
        assert (status, json.loads(body)["route"], server.creates) == (200, "create", 1)
    finally:
        server.close()
