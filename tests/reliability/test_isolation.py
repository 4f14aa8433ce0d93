"""Two signed-in users on one live app: neither can read, use or probe the other's files, whatever the route,
and neither can crowd the other out of the GPU queue, whatever the door (raw HTTP and gradio_client)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from masuka.guards import FILE_ROUTES
from masuka.image.aid_settings import AidSettings, save_aid_settings

USERS = "alice:pa-alice,bob:pb-bob,carol:pc-carol,admin:pz-admin"
FILE_DATA = {"_type": "gradio.FileData"}
#: Gradio routes that serve no file named by the request (its own bundle, the page, the API, the queue).
#: A route missing from here and from FILE_ROUTES fails the test until someone decides which it is.
NOT_FILE_ROUTES = {
    "/", "/config", "/config/", "/login", "/login/", "/logout", "/openapi.json", "/favicon.ico", "/theme.css",
    "/robots.txt", "/manifest.json", "/pwa_icon", "/pwa_icon/{size}", "/svelte/{path:path}", "/static/{path:path}",
    "/assets/{path:path}", "/monitoring", "/monitoring/summary", "/monitoring/{key}", "/gradio_api/deep_link",
    "/gradio_api/user", "/gradio_api/user/", "/gradio_api/login_check", "/gradio_api/login_check/",
    "/gradio_api/token", "/gradio_api/token/", "/gradio_api/app_id", "/gradio_api/app_id/", "/gradio_api/info",
    "/gradio_api/info/", "/gradio_api/openapi.json", "/gradio_api/dev/reload", "/gradio_api/runs",
    "/gradio_api/runs/", "/gradio_api/run-history/connect", "/gradio_api/run-history/buckets",
    "/gradio_api/run-history/records", "/gradio_api/run-history/records/{endpoint}/{record_id}/assets/{asset_id}",
    "/gradio_api/proxy={url_path:path}", "/gradio_api/stream/{event_id}", "/gradio_api/stream/{event_id}/close",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file", "/gradio_api/reset/",
    "/gradio_api/reset", "/gradio_api/heartbeat/{session_hash}", "/gradio_api/run/{api_name}",
    "/gradio_api/run/{api_name}/", "/gradio_api/api/{api_name}", "/gradio_api/api/{api_name}/",
    "/gradio_api/call/v2/{api_name}", "/gradio_api/call/v2/{api_name}/", "/gradio_api/call/{api_name}",
    "/gradio_api/call/{api_name}/", "/gradio_api/queue/join", "/gradio_api/cancel",
    "/gradio_api/call/{api_name}/{event_id}", "/gradio_api/call/v2/{api_name}/{event_id}", "/gradio_api/queue/data",
    "/gradio_api/queue/status", "/gradio_api/component_server", "/gradio_api/component_server/",
    "/gradio_api/upload_progress",
    "/gradio_api/upload", "/gradio_api/startup-events", "/gradio_api/theme.css", "/gradio_api/process_recording",
    "/gradio_api/vibe-edit/", "/gradio_api/vibe-edit", "/gradio_api/undo-vibe-edit/", "/gradio_api/undo-vibe-edit",
    "/gradio_api/vibe-code/", "/gradio_api/vibe-code", "/gradio_api/vibe-starter-queries/",
    "/gradio_api/vibe-starter-queries", "/gradio_api/info/{page}",
    "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}",
}
#: The REST APIs (masuka.api): pictures come and go as base64 in the body, never as a path the request names,
#: and every answer is about the caller's own work (``/sdapi/v1/loras`` lists only the LoRAs they may use).
API_ROUTES = {
    "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/png-info", "/sdapi/v1/extra-single-image",
    "/sdapi/v1/progress", "/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/options", "/sdapi/v1/sd-models",
    "/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/loras", "/sdapi/v1/upscalers",
    "/sdapi/v1/refresh-checkpoints", "/sdapi/v1/refresh-loras", "/sdapi/v1/scripts", "/v1/images/generations",
    "/v1/images/edits", "/v1/models", "/v1/models/{model:path}",  # a catalog id or OpenAI name, not a file
    "/controlnet/version", "/controlnet/model_list", "/controlnet/module_list",
    "/v1/{path:path}",  # any other /v1 request: OpenAI's 404 or 405, nothing read or served
}
#: REST routes that serve a file named by its history row id: each checks ``masuka.access.may_read`` itself.
ID_FILE_ROUTES = {"/v1/images/files/{image_id}": "image_id"}


def signed_in(url: str, user: str, password: str, address: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60, headers={"X-Forwarded-For": address} if address else None)
    assert client.post("/login", data={"username": user, "password": password}).status_code == 200
    return client


def call(client: httpx.Client, api: str, data: list) -> tuple[str, str]:
    """Run an event through ``POST /gradio_api/call/<api>``; returns (outcome event, its data)."""
    joined = client.post(f"/gradio_api/call/{api}", content=json.dumps({"data": data}),  # NaN and lone
                         headers={"Content-Type": "application/json"})  # surrogates as a hostile client sends them
    assert joined.status_code == 200, joined.text
    outcome, payload = "", ""
    with client.stream("GET", f"/gradio_api/call/{api}/{joined.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                outcome = line[7:]
            elif line.startswith("data: ") and outcome in ("complete", "error"):
                payload = line[6:]
                break
    return outcome, payload


def route_paths(routes: list, prefix: str = "") -> set[str]:
    """Every path template the app serves, routers included (FastAPI nests the included ones)."""
    found = set()
    for route in routes:
        if hasattr(route, "original_router"):
            found |= route_paths(route.original_router.routes, prefix + route.include_context.prefix)
        elif getattr(route, "path", None) is not None:
            found.add(prefix + route.path)
    return found


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model):
    """A live app where alice owns an image, a video, a dataset photo and a LoRA; bob owns an empty dataset."""
    from PIL import Image

    from masuka.config import Config
    from masuka.datasets import adding, library
    from masuka.loras.files import inspect_lora
    from masuka.loras.library import register_lora
    from masuka.models.synthetic import save_tiny_lora
    from masuka.server import launch
    from masuka.users import output_dir
    from tests.conftest import free_port

    config = Config.from_env(data_dir=tmp_path_factory.mktemp("isolation") / "data", auth=USERS,
                             max_queued_per_user=1, login_lockout_s=600, max_upload_mb=1, max_files=3,
                             max_unzipped_mb=1, trusted_proxies=(ip_network("127.0.0.1"),))  # X-Forwarded-For heeded
    running = launch(config, host="127.0.0.1", port=free_port(), block=False)
    studio = running.studio
    alice = Client(running.url, auth=("alice", "pa-alice"), verbose=False, download_files=False)
    gallery, _seeds, _status = alice.predict("a secret cabin", str(tiny_model("flux")), "", 1, 3.5, 64, 64, 9, 1, [],
                                             api_name="/generate_image")
    png = gallery[0]["image"]["url"].split("/file=", 1)[1]
    video = output_dir(config, "alice") / "videos" / "2026-01-01" / "job-1.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42secret-video")
    photo = tmp_path_factory.mktemp("photos") / "cat.png"
    Image.effect_noise((320, 320), 64).convert("RGB").save(photo)
    library.create_dataset(studio, "alices-cats", "alice")
    adding.add_images(studio, "alices-cats", "alice", [photo])
    library.create_dataset(studio, "bobs-cats", "bob")
    dataset_photo = config.absolute(studio.store.find("dataset_images", "1 = 1")[0]["processed_path"])
    lora = save_tiny_lora("flux", config.loras_dir / "alice" / "style.safetensors")
    register_lora(studio, inspect_lora(lora), "alice", "import")
    files = {"image": Path(png), "video": video, "dataset photo": dataset_photo, "lora": lora}
    yield running, files, tiny_model("flux")
    running.close()


def test_every_file_route_is_known_and_refuses_another_users_files(shared):
    running, files, _model = shared
    unknown = route_paths(running.demo.server_app.routes) - NOT_FILE_ROUTES - API_ROUTES - set(FILE_ROUTES) \
        - set(ID_FILE_ROUTES)
    assert unknown == set(), f"routes not yet reviewed for file access: {sorted(unknown)}"
    alice = signed_in(running.url, "alice", "pa-alice")
    bob = signed_in(running.url, "bob", "pb-bob")
    admin = signed_in(running.url, "admin", "pz-admin")
    assert alice.get("/gradio_api/file=" + str(files["image"])).status_code == 200
    for template, param in FILE_ROUTES.items():
        for name, path in files.items():
            climbing = str(path).replace("/alice/", "/bob/../alice/").replace("/", "%2F")
            for form in (str(path), climbing):
                url = template.replace("{" + param + ":path}", form)
                for method in ("GET", "HEAD"):
                    for headers in ({}, {"Range": "bytes=0-3"}):
                        refused = bob.request(method, url, headers=headers)
                        assert refused.status_code == 403, (url, name, method)
                        assert b"secret" not in refused.content and refused.content[:4] != b"\x89PNG"
            if name in ("image", "video", "dataset photo"):  # the folders Gradio serves
                url = template.replace("{" + param + ":path}", str(path))
                assert admin.get(url).status_code == 200
                assert httpx.get(running.url.rstrip("/") + url).status_code in (401, 403)
    image_id = next(row["id"] for row in running.studio.store.find("generations", "owner = ?", ["alice"])
                    if running.studio.config.absolute(row["output_path"]) == files["image"])
    for template, param in ID_FILE_ROUTES.items():
        url = running.url.rstrip("/") + template.replace("{" + param + "}", str(image_id))
        assert httpx.get(url, auth=("alice", "pa-alice")).content[:4] == b"\x89PNG"
        assert httpx.get(url, auth=("admin", "pz-admin")).status_code == 200
        refused = httpx.get(url, auth=("bob", "pb-bob"))
        assert refused.status_code == 404 and refused.content[:4] != b"\x89PNG", url
        assert httpx.get(url).status_code == 401
    bobs_loras = httpx.get(running.url.rstrip("/") + "/sdapi/v1/loras", auth=("bob", "pb-bob")).json()
    assert "style" not in str(bobs_loras) and str(files["lora"]) not in str(bobs_loras)


def test_another_users_file_is_refused_as_an_event_input(shared):
    running, files, _model = shared
    bob = signed_in(running.url, "bob", "pb-bob")
    alice = signed_in(running.url, "alice", "pa-alice")
    theirs = {"path": str(files["image"]), "meta": FILE_DATA}
    missing = {"path": str(files["image"].with_name("never-made.png")), "meta": FILE_DATA}
    outcome, payload = call(alice, "read_parameters", [theirs])
    assert outcome == "complete" and "a secret cabin" in payload
    outcomes = [call(bob, "read_parameters", [ref]) for ref in (theirs, missing)]
    assert [o for o, _ in outcomes] == ["error", "error"]
    assert "secret" not in str(outcomes) and "of yours" in outcomes[0][1]
    assert outcomes[0][1].replace(files["image"].name, "X") == outcomes[1][1].replace("never-made.png", "X")
    photo = {"path": str(files["dataset photo"]), "meta": FILE_DATA}
    outcome, payload = call(bob, "add_images", ["bobs-cats", [photo]])
    assert outcome == "error" and "of yours" in payload
    assert running.studio.store.count("dataset_images") == 1  # only alice's own photo


def test_another_users_lora_or_model_path_is_refused_and_says_nothing_of_existence(shared):
    running, files, model = shared
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    data_dir = running.studio.config.data_dir
    lora = files["lora"]
    refs = [str(lora), str(lora.relative_to(data_dir)), "alice/style", str(lora.with_name("absent.safetensors")),
            str(lora.with_name("absent.safetensors").relative_to(data_dir)), "alice/absent"]
    messages = []
    for ref in refs:
        with pytest.raises(Exception) as refused:
            bob.predict("x", str(model), "", 1, 1.0, 64, 64, 1, 1, [ref], api_name="/generate_image")
        messages.append(str(refused.value).replace(ref, "REF"))
    assert len(set(messages)) == 1 and "not found" in messages[0]
    run_lora = data_dir / "runs" / "run-00001" / "lora" / "x.safetensors"
    with pytest.raises(Exception, match="not found"):
        bob.predict("x", str(model), "", 1, 1.0, 64, 64, 1, 1, [str(run_lora)], api_name="/generate_image")
    folders = [str(files["image"].parent), str(files["image"].parent / "absent"), "/etc"]
    model_messages = set()
    for folder in folders:
        with pytest.raises(Exception) as refused:
            bob.predict("x", folder, "", 1, 1.0, 64, 64, 1, 1, [], api_name="/generate_image")
        model_messages.add(str(refused.value).replace(folder, "F"))
    assert len(model_messages) == 1 and "no model folder of yours" in model_messages.pop()


def test_a_nul_byte_in_a_file_path_or_model_path_is_refused_as_not_theirs(shared):
    """A path with a NUL byte names no file: 403 on the file routes, the usual model refusal everywhere else,
    never a 500 or a "Generation failed"."""
    running, files, model = shared
    bob = signed_in(running.url, "bob", "pb-bob")
    for path in ("/tmp/x%00.png", str(files["image"]) + "%00.png", str(files["image"]).replace("/alice/", "/%00/")):
        for template, param in FILE_ROUTES.items():
            refused = bob.get(template.replace("{" + param + ":path}", path))
            assert refused.status_code == 403, (template, path)
    rest = httpx.Client(base_url=running.url, auth=("bob", "pb-bob"), timeout=60)
    nul_model = str(model) + "\x00"
    answers = [rest.post("/sdapi/v1/options", json={"sd_model_checkpoint": "/tmp/x\x00"}),
               rest.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                                     "override_settings": {"sd_model_checkpoint": nul_model}}),
               rest.post("/v1/images/generations", json={"prompt": "x", "model": nul_model, "size": "64x64"})]
    for answer in answers:
        assert 400 <= answer.status_code < 500 and "no model folder of yours" in answer.text, answer.text[:300]
    with pytest.raises(Exception, match="no model folder of yours"):
        Client(running.url, auth=("bob", "pb-bob"), verbose=False).predict(
            "x", nul_model, "", 1, 1.0, 64, 64, 1, 1, [], api_name="/generate_image")


def _join(client: httpx.Client, fn_index: object, data: list) -> httpx.Response:
    return client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "event_data": None,
                                                       "session_hash": uuid.uuid4().hex[:10], "trigger_id": None})


def test_the_gpu_queue_cap_holds_whatever_the_door(shared, monkeypatch):
    from masuka.guards import waiting_gpu_events

    running, _files, model = shared
    monkeypatch.setattr("masuka.ui.image.GPU_WAIT_S", 600)  # the running request waits for the GPU we hold
    fn_index = next(i for i, fn in running.demo.fns.items() if fn.api_name == "generate_image")
    form = ["slow", str(model), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0]
    alice = signed_in(running.url, "alice", "pa-alice")
    bob = signed_in(running.url, "bob", "pb-bob")
    with running.studio.gpu.hold("image generation for alice (a secret)"):
        assert alice.post("/gradio_api/call/generate_image", json={"data": form}).status_code == 200
        for _ in range(600):  # until it has left the queue and waits for the GPU
            if waiting_gpu_events(running.demo, "alice") == 0:
                break
            time.sleep(0.1)
        assert _join(alice, str(fn_index), form).status_code == 200  # one waiting: the most alice may have
        refusals = [alice.post("/gradio_api/call/generate_image", json={"data": form}),
                    _join(alice, str(fn_index), form), _join(alice, fn_index, form)]
        for refused in refusals:
            assert refused.status_code == 429 and "the most one user may queue" in refused.json()["detail"]
        assert bob.post("/gradio_api/call/generate_image", json={"data": form}).status_code == 200, \
            "bob's share is his own"
        armed = [key for key in running.studio.stops._flags if key.startswith("image:")]
        assert len(armed) == 3, "each accepted generation armed its session's Stop; no refused one did"
    direct = bob.post("/gradio_api/run/generate_image", json={"data": form})
    assert direct.status_code == 404 and "join the queue" in direct.json()["detail"]


def test_gpu_busy_names_no_other_users_job(shared):
    from masuka.errors import GPUBusy
    from masuka.image.generate import ImageRequest, generate_images

    running, _files, model = shared
    request = ImageRequest(prompt="x", model=str(model), steps=1, width=64, height=64, owner="bob")
    with running.studio.gpu.hold("image generation for alice (a secret)"), pytest.raises(GPUBusy) as busy:
        generate_images(running.studio, request, gpu_timeout=0)
    assert "busy with another job" in str(busy.value)
    assert "alice" not in str(busy.value) and "pid" not in str(busy.value)


@pytest.mark.parametrize("request_", [
    ("/gradio_api/queue/join", {"data": [], "fn_index": -1, "session_hash": "abc"}),
    ("/gradio_api/queue/join", {"data": [], "fn_index": 10**12, "session_hash": "abc"}),
    ("/gradio_api/queue/join", {"data": [], "fn_index": "x", "session_hash": "abc"}),
    ("/gradio_api/call/v2/generate_image", {"data": ["a v1 body"]}),
    ("/gradio_api/call/no_such_api", {"data": []}),
    ("/gradio_api/call/generate_image", {"data": "not a list"}),
], ids=["negative", "huge", "word", "v1 body on v2", "unknown api", "data not a list"])
def test_a_malformed_join_gets_a_4xx_with_a_reason(shared, request_):
    running, _files, _model = shared
    path, body = request_
    answer = signed_in(running.url, "bob", "pb-bob").post(path, json=body)
    assert 400 <= answer.status_code < 500 and answer.json()["detail"]


def test_private_events_refuse_non_admins_even_by_number(shared):
    running, _files, _model = shared
    from masuka.keys import key_table

    config = running.studio.config
    masked = [row["masked"] for row in key_table(running.studio.keys) if row["source"] != "not set"]
    by_name = {getattr(fn.fn, "__name__", ""): i for i, fn in running.demo.fns.items()}
    bob = signed_in(running.url, "bob", "pb-bob")
    admin = signed_in(running.url, "admin", "pz-admin")

    def run(client: httpx.Client, name: str, data: list | None = None) -> str:
        session = uuid.uuid4().hex[:10]
        joined = client.post("/gradio_api/queue/join", json={"data": data or [], "fn_index": by_name[name],
                                                             "session_hash": session})
        assert joined.status_code == 200
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[6:]) if line.startswith("data: ") else {}
                if message.get("msg") == "process_completed":
                    return json.dumps(message, ensure_ascii=False)
        return ""

    # what the page fills as it opens (one event: the key table, the generation aids' settings, …)
    opened = [c.value for c in running.demo.fns[by_name["page_opened"]].fn.inputs]

    def page(client: httpx.Client) -> str:
        return run(client, "page_opened", opened)

    assert masked and all(m in page(admin) for m in masked)
    assert str(config.data_dir) in run(admin, "storage_view")
    assert not any(m in page(bob) for m in masked)
    storage = run(bob, "storage_view")
    assert "Only an admin" in storage and str(config.data_dir) not in storage
    assert "Only an admin" in run(bob, "sign_ins_view")
    save_aid_settings(config, AidSettings(prompt_llm_url="https://llm.internal.example/v1"))
    assert "llm.internal.example" in page(admin)
    assert "llm.internal.example" not in page(bob)


def test_private_events_cannot_be_called_by_name(shared):
    running, _files, _model = shared
    bob = signed_in(running.url, "bob", "pb-bob")
    private = [fn.api_name for fn in running.demo.fns.values() if fn.api_visibility == "private"]
    assert "page_opened" in private
    for name in private:
        answer = bob.post(f"/gradio_api/call/{name}", json={"data": []})
        assert answer.status_code == 404 and f"no API endpoint /{name}" in answer.json()["detail"], name
        assert bob.post(f"/gradio_api/call/v2/{name}", json={}).status_code == 400, name  # v2 knows public names only
    assert call(bob, "sign_ins", [])[0] == "error", "a public event is still called by name (and refused there)"


def test_repeated_wrong_passwords_lock_the_account_and_the_address(shared, caplog):
    running, _files, _model = shared
    caplog.set_level(logging.WARNING, logger="masuka.logins")
    attacker = httpx.Client(base_url=running.url, timeout=60, headers={"X-Forwarded-For": "203.0.113.7"})
    answers = [attacker.post("/login", data={"username": "carol", "password": f"guess-{i}"}) for i in range(7)]
    locked = "Too many failed sign-ins"
    assert [a.status_code for a in answers] == [400] * 7, "a 400, the only refusal Gradio's sign-in page shows"
    assert locked in answers[5].json()["detail"], "the 6th try is refused before checking"
    assert int(answers[6].headers["Retry-After"]) > 0
    right = attacker.post("/login", data={"username": "carol", "password": "pc-carol"})
    assert locked in right.json()["detail"], "a locked account stays locked even for the right password"
    elsewhere = httpx.post(running.url.rstrip("/") + "/login", data={"username": "carol", "password": "pc-carol"},
                           headers={"X-Forwarded-For": "198.51.100.2"}, timeout=60)
    assert locked in elsewhere.json()["detail"], "the account is locked from every address"
    assert locked in attacker.post("/login", data={"username": "alice", "password": "pa-alice"}).json()["detail"]
    signed_in(running.url, "alice", "pa-alice", address="198.51.100.3")  # alice elsewhere is untouched
    assert "sign-in locked" in caplog.text and "'carol'" in caplog.text
    admin = Client(running.url, auth=("admin", "pz-admin"), verbose=False)
    table = admin.predict(api_name="/sign_ins")
    names = {row[1]: row for row in table["data"]}
    assert names["carol"][3] > 0 and names["203.0.113.7"][3] > 0


def test_files_are_private_to_the_user_running_masuka(shared):
    running, files, _model = shared
    config = running.studio.config
    made = [config.data_dir, config.outputs_dir, files["image"].parent, config.db_path, *files.values()]
    assert {oct(path.stat().st_mode & 0o077) for path in made} == {"0o0"}


def test_uploads_have_limits(shared, tmp_path):
    import zipfile

    running, _files, _model = shared
    bob_http = signed_in(running.url, "bob", "pb-bob")
    too_big = bob_http.post("/gradio_api/upload", files={"files": ("big.png", b"x" * (2 * 2**20))})
    assert too_big.status_code == 413
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    photos = []
    for number in range(4):
        photos.append(tmp_path / f"p{number}.txt")
        photos[-1].write_text("a caption")
    with pytest.raises(Exception, match="more than 3"):
        bob.predict("bobs-cats", [handle_file(p) for p in photos], api_name="/add_images")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", b"\0" * (3 * 2**20))
    assert bomb.stat().st_size < 2**20
    rows, _summary = bob.predict("bobs-cats", [handle_file(bomb)], api_name="/add_images")
    assert rows["data"] == [["bomb.zip", "refused", "the zip unpacks to 3 MB, more than 1 MB, the most one "
                                                    "request may unpack (MASUKA_MAX_UNZIPPED_MB): split it; nothing "
                                                    "was unpacked"]]


def test_a_zip_too_big_once_unpacked_writes_nothing(tmp_path):
    import zipfile

    from masuka.datasets.sources import ZipLimits, collect

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(4):
            archive.writestr(f"{number}.png", b"\0" * 2**20)
    staging = tmp_path / "staging"
    collected = collect([bomb], staging, limits=ZipLimits(files=100, unpacked_bytes=3 * 2**20))
    assert [r.reason for r in collected.refused] == [
        "the zip unpacks to 4 MB, more than 3 MB, the most one request may unpack (MASUKA_MAX_UNZIPPED_MB): split it; "
        "nothing was unpacked"]
    assert not staging.exists()
    collected = collect([bomb], staging, limits=ZipLimits(files=3, unpacked_bytes=2**30))
    assert "holds 4 files, more than 3" in collected.refused[0].reason and not staging.exists()


@pytest.mark.parametrize("field, value, message", [
    (0, 5, "Prompt must be text"),
    (0, "a\ud800b", "broken character"),
    (0, "an \u202egpj.exe image", "U+202E"),
    (0, "zero\u200bwidth", "U+200B"),
    (9, [5], "LoRAs must be a list of names"),
    (9, "style", "LoRAs must be a list of names"),
    (7, float("nan"), "Seed"),
    (3, float("inf"), "Steps must be a number"),
    (11, "yes", "must be true or false"),
])
def test_wrong_types_and_hidden_characters_get_a_clear_refusal(shared, field, value, message):
    running, _files, model = shared
    form = ["a fox", str(model), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0]
    form[field] = value
    outcome, payload = call(signed_in(running.url, "bob", "pb-bob"), "generate_image", form)
    assert outcome == "error" and message in payload
    assert "Traceback" not in payload and "Error:" not in payload


def test_caption_templates_and_typed_captions_are_checked(shared):
    running, _files, _model = shared
    bob = Client(running.url, auth=("bob", "pb-bob"), verbose=False)
    for template in ("{caption:x<50000000}", "{caption!r}"):
        with pytest.raises(Exception, match="may not format its fields"):
            bob.predict("padded", "sks", template, api_name="/create_dataset")
    alice = Client(running.url, auth=("alice", "pa-alice"), verbose=False)
    image_id = running.studio.store.find("dataset_images", "1 = 1")[0]["id"]
    with pytest.raises(Exception, match="U\\+2066"):
        alice.predict("alices-cats", {"headers": ["id", "file", "caption"], "data": [[image_id, "cat.png",
                      "a cat \u2066hidden"]]}, api_name="/save_captions")


def test_who_owns_what_in_the_data_dir(tmp_path):
    from masuka.access import may_read
    from masuka.config import Config
    from masuka.studio import Studio

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="alice:1,videos:2,bob:3"))
    try:
        store, data = studio.store, studio.config.data_dir
        store.insert("generations", {"owner": "alice", "kind": "video", "output_path": "outputs/videos/d/1.mp4"})
        run = store.insert("jobs", {"owner": "alice", "kind": "train", "status": "completed", "title": "run"})
        dataset = store.insert("datasets", {"owner": "alice", "name": "cats"})
        store.insert("loras", {"owner": "local", "name": "shared", "path": "loras/shared.safetensors"})
        alices = [data / "outputs/videos/d/1.mp4", data / f"runs/run-{run:05d}/samples/1.png",
                  data / f"datasets/{dataset}/processed/1.png", data / "outputs/alice/exports/a.zip",
                  data / "loras/alice/style.safetensors"]
        for path in alices:
            assert may_read(studio, "alice", path) and not may_read(studio, "bob", path), path
        assert not may_read(studio, "videos", alices[0]), "a user named like a shared folder owns nothing there"
        assert not any(may_read(studio, "alice", data / name) for name in ("masuka.db", "secrets.json",
                                                                           "outputs/videos/inputs/1.png"))
        assert may_read(studio, "bob", data / "loras/shared.safetensors") and may_read(studio, "bob", data / "models/x")
    finally:
        studio.close()


def test_local_video_and_captioner_folders_say_nothing_of_existence(tmp_path):
    """A local video model or captioner folder of another user, a missing one and a non-model folder get one
    message, before anything is loaded or any job row is written."""
    from masuka.config import Config
    from masuka.datasets import library
    from masuka.datasets.captioning import CaptionRequest, caption_dataset
    from masuka.errors import InvalidInput
    from masuka.studio import Studio
    from masuka.users import output_dir
    from masuka.video.jobs import start_video
    from masuka.video.request import VideoRequest

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=USERS))
    alices = output_dir(studio.config, "alice") / "models" / "mine"
    alices.mkdir(parents=True)
    for marker in ("model_index.json", "config.json"):
        (alices / marker).write_text("{}", encoding="utf-8")
    library.create_dataset(studio, "bobs-cats", "bob")
    messages = set()
    for folder in (alices, alices.parent / "absent", Path("/etc")):
        with pytest.raises(InvalidInput) as video:
            start_video(studio, VideoRequest(provider="local", model=str(folder), prompt="a boat", owner="bob"))
        with pytest.raises(InvalidInput) as caption:
            caption_dataset(studio, CaptionRequest(dataset="bobs-cats", owner="bob", captioner=str(folder)))
        messages |= {str(video.value).replace(str(folder), "F"), str(caption.value).replace(str(folder), "F")}
    assert len(messages) == 1 and "no model folder of yours" in messages.pop()
    assert studio.store.find("jobs", "kind = ?", ["video"]) == []
    studio.close()


def test_model_paths_relative_to_where_masuka_runs_say_nothing_of_existence(tmp_path, monkeypatch):
    """``data/outputs/alice/...`` typed without ``./`` is a path too: another user's folder, a missing one and a
    folder that is no model get the message absolute paths get; ``owner/name`` stays a Hub repo id."""
    from masuka.access import usable_model
    from masuka.config import Config
    from masuka.errors import InvalidInput
    from masuka.studio import Studio
    from masuka.users import output_dir

    monkeypatch.chdir(tmp_path)
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=USERS))
    mine = output_dir(studio.config, "alice") / "models" / "mine"
    mine.mkdir(parents=True)
    (mine / "model_index.json").write_text("{}", encoding="utf-8")
    (tmp_path / "datasets" / "7").mkdir(parents=True)
    relative = str(mine.relative_to(tmp_path))
    messages = set()
    for folder in (relative, relative + "-absent", str(Path(relative).parent), "datasets/7", "data/outputs",
                   "~nosuchuser-masuka/x"):  # a home folder of nobody: the same refusal, no traceback
        with pytest.raises(InvalidInput) as refused:
            usable_model(studio, "bob", folder)
        messages.add(str(refused.value).replace(folder, "F"))
    assert len(messages) == 1 and "no model folder of yours" in messages.pop()
    assert usable_model(studio, "alice", relative) == relative
    assert usable_model(studio, "bob", "black-forest-labs/FLUX.1-dev") == "black-forest-labs/FLUX.1-dev"
    studio.close()


def test_a_session_hash_belongs_to_the_user_who_used_it_first(shared):
    """Gradio keys a session's stream, state and cancelling by its hash alone, and a script may pick the hash
    (the README's HTTP examples keep one): another user naming it is refused, whatever the route."""
    running, _files, model = shared
    alice, bob = signed_in(running.url, "alice", "pa-alice"), signed_in(running.url, "bob", "pb-bob")
    fn_index = next(i for i, fn in running.demo.fns.items() if fn.api_name == "generate_image")
    session = f"fixed-{uuid.uuid4().hex[:6]}"
    join = {"data": ["alice's cabin", str(model), "", 1, 1.0, 64, 64, 1, 1, []], "fn_index": fn_index,
            "event_data": None, "session_hash": session, "trigger_id": None}
    assert alice.post("/gradio_api/queue/join", json=join).status_code == 200
    refused = [bob.get("/gradio_api/queue/data", params={"session_hash": session}),
               bob.post("/gradio_api/queue/join", json=join),
               bob.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index, "event_id": "x"}),
               bob.get("/gradio_api/deep_link", params={"session_hash": session}),
               bob.get(f"/gradio_api/heartbeat/{session}"),
               httpx.get(running.url.rstrip("/") + f"/gradio_api/heartbeat/{session}")]  # nobody signed in
    assert [answer.status_code for answer in refused] == [403] * len(refused)
    assert "another user" in refused[0].json()["detail"]
    with alice.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        messages = [line for line in stream.iter_lines() if line.startswith("data: ")]
    completed = [json.loads(line[6:]) for line in messages if "process_completed" in line]
    assert completed and completed[0]["success"], messages
    assert bob.post("/gradio_api/queue/join", json={**join, "session_hash": uuid.uuid4().hex}).status_code == 200


def test_a_data_dir_folder_named_beyond_sqlite_s_integers_is_owned_by_no_one(tmp_path):
    """``datasets/99999999999999999999/...`` in a file URL is refused like any other user's file, not a 500."""
    from masuka.access import may_read
    from masuka.config import Config
    from masuka.jobs import lookup
    from masuka.studio import Studio

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=USERS))
    try:
        data = studio.config.data_dir
        for folder in ("datasets/99999999999999999999", "runs/run-99999999999999999999", "characters/1e30"):
            assert not may_read(studio, "bob", data / folder / "x.png")
        assert lookup(studio.store, 99999999999999999999) is None
    finally:
        studio.close()


def _result(client: httpx.Client, api: str, event_id: str) -> tuple[int, str]:
    """(status, the outcome event: complete, error...) of a /call/ event's result stream, as ``client`` reads it."""
    with client.stream("GET", f"/gradio_api/call/{api}/{event_id}") as stream:
        if stream.status_code != 200:
            stream.read()
            return stream.status_code, stream.text
        outcome = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                outcome = line[7:]
            if outcome in ("complete", "error") and line.startswith("data: "):
                break
    return 200, outcome


def test_another_users_event_cannot_be_cancelled_read_or_streamed_by_its_id(shared, monkeypatch):
    """Gradio's cancel, a /call/ result and a stream's input name an event by its id alone (cancel checks no sign-in
    at all), and a /call/ event is its own session: only the user who queued it may use any of them."""
    from masuka.guards import waiting_gpu_events

    running, _files, model = shared
    monkeypatch.setattr("masuka.ui.image.GPU_WAIT_S", 600)  # the running request waits for the GPU we hold
    fn_index = next(i for i, fn in running.demo.fns.items() if fn.api_name == "generate_image")
    form = ["alice's slow cabin", str(model), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0]
    alice, bob = signed_in(running.url, "alice", "pa-alice"), signed_in(running.url, "bob", "pb-bob")
    nobody = httpx.Client(base_url=running.url, timeout=60)
    with running.studio.gpu.hold("image generation for carol"):
        first = alice.post("/gradio_api/call/generate_image", json={"data": form}).json()["event_id"]
        for _ in range(600):  # until it has left the queue and waits for the GPU
            if waiting_gpu_events(running.demo, "alice") == 0:
                break
            time.sleep(0.1)
        waiting = alice.post("/gradio_api/call/generate_image", json={"data": form}).json()["event_id"]
        assert waiting_gpu_events(running.demo, "alice") == 1
        cancel = {"session_hash": uuid.uuid4().hex[:10], "fn_index": fn_index, "event_id": waiting}
        assert nobody.post("/gradio_api/cancel", json=cancel).status_code == 401
        as_json = {"content": json.dumps(cancel).encode()}  # the JSON content types FastAPI reads, as it reads them
        refused = [bob.post("/gradio_api/cancel", json=cancel),
                   bob.post("/gradio_api/cancel", json={**cancel, "event_id": first}),
                   bob.post("/gradio_api/cancel", headers={"Content-Type": "application/JSON"}, **as_json),
                   bob.post("/gradio_api/cancel", headers={"Content-Type": "Application/Vnd.Api+Json; charset=utf-8"},
                            **as_json),
                   bob.post("/gradio_api/cancel", headers={"Content-Type": ""}, **as_json),
                   bob.get(f"/gradio_api/call/generate_image/{waiting}"),
                   bob.get(f"/gradio_api/call/v2/generate_image/{waiting}"),
                   bob.get("/gradio_api/queue/data", params={"session_hash": waiting}),
                   bob.get(f"/gradio_api/heartbeat/{waiting}"),
                   bob.post(f"/gradio_api/stream/{waiting}/close")]
        assert [answer.status_code for answer in refused] == [403] * len(refused), [a.text for a in refused]
        assert "another user" in refused[0].json()["detail"]
        assert waiting_gpu_events(running.demo, "alice") == 1, "alice's request still waits"
        unknown = {**cancel, "event_id": uuid.uuid4().hex}  # as Gradio answers for an event that has ended
        assert bob.post("/gradio_api/cancel", json=unknown).json() == {"success": True}
        own = {"session_hash": waiting, "fn_index": fn_index, "event_id": waiting}  # a /call/ event's session: its id
        assert alice.post("/gradio_api/cancel", json=own).json() == {"success": True}
        assert waiting_gpu_events(running.demo, "alice") == 0
    assert _result(alice, "generate_image", first) == (200, "complete")
    assert _result(alice, "generate_image", waiting) == (200, "complete"), "a cancel ends the stream (no output)"


def test_a_call_result_is_read_only_by_the_user_who_made_the_call(shared):
    """``GET /call/<api>/<id>`` streams (and so takes) the result: another user gets a 403, and the caller still
    gets it after; an id nobody queued is answered as Gradio answers it."""
    running, _files, _model = shared
    alice, bob = signed_in(running.url, "alice", "pa-alice"), signed_in(running.url, "bob", "pb-bob")
    event_id = alice.post("/gradio_api/call/queue_status", json={"data": []}).json()["event_id"]
    assert _result(bob, "queue_status", event_id)[0] == 403
    assert _result(bob, "queue_status", uuid.uuid4().hex) == (200, "error")  # no such event: as Gradio answers it
    assert _result(alice, "queue_status", event_id) == (200, "complete")


def test_gradio_s_monitoring_is_off(shared):
    """Gradio's /monitoring counts every user's calls per endpoint: MASUKA turns it off, for everyone."""
    running, _files, _model = shared
    alice, bob = signed_in(running.url, "alice", "pa-alice"), signed_in(running.url, "bob", "pb-bob")
    admin = signed_in(running.url, "admin", "pz-admin")
    assert call(alice, "queue_status", [])[0] == "complete"
    for client in (bob, admin):
        for route in ("/monitoring/summary", "/monitoring", "/monitoring/0123456789"):
            answer = client.get(route)
            assert answer.status_code == 403 and "queue_status" not in answer.text, (route, answer.text)


def test_training_samples_and_character_pictures_are_served_in_place_to_their_owner_only(shared):
    """The Train tab's samples and the Characters tab's photos and face crops are served where they lie (Gradio does
    not copy them into its upload cache, whose URLs no owner check sees), to their owner and admins only; they are
    shown even where the data dir is outside the app's folder and the system's temp folder."""
    from gradio import utils

    running, _files, _model = shared
    studio, data = running.studio, running.studio.config.data_dir
    run = studio.store.insert("jobs", {"owner": "alice", "kind": "train", "status": "completed", "title": "run"})
    character = studio.store.insert("characters", {"owner": "alice", "name": "anna", "trigger": "ohwx"})
    pictures = [data / f"runs/run-{run:05d}/samples/000010-0.png", data / f"characters/{character}/faces/0.png"]
    alice, bob = signed_in(running.url, "alice", "pa-alice"), signed_in(running.url, "bob", "pb-bob")
    admin = signed_in(running.url, "admin", "pz-admin")
    for picture in pictures:
        picture.parent.mkdir(parents=True)
        picture.write_bytes(b"\x89PNG secret")
        assert utils.is_static_file(str(picture)), picture  # handed to the page as it lies, never copied
        url = "/gradio_api/file=" + str(picture)
        assert alice.get(url).content == b"\x89PNG secret" and admin.get(url).status_code == 200
        assert bob.get(url).status_code == 403
