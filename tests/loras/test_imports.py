"""LoRA import: uploads, Hugging Face files and CivitAI versions are checked before they are listed."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import time

import numpy as np
import pytest
from safetensors.numpy import save, save_file

from masuka.errors import InvalidInput, ModelUnavailable, ProviderError
from masuka.loras.imports import import_from_civitai, import_from_hub, import_lora_file
from masuka.loras.library import list_loras
from masuka.testing.http import FakeServer, Reply, bearer
from tests.models.fake_hub import FakeRepo, hub_online

CIVITAI_KEY = "civitai_secret_key_5678"


def flux_lora(trigger: str = "") -> dict:
    tensors = {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": np.zeros((4, 16), np.float32),
               "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": np.zeros((16, 4), np.float32)}
    return {"tensor_dict": tensors, "metadata": {"masuka.trigger": trigger} if trigger else None}


def write_flux_lora(path, trigger: str = "") -> None:
    save_file(**flux_lora(trigger), filename=str(path))


def raw_file(path, header: dict, data: bytes = b"\0" * 256):
    """A safetensors file written by hand, header as given (``A`` stands for a Flux LoRA tensor name)."""
    header = {k.replace("A", "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"): v
              for k, v in header.items()}
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


TENSOR = {"dtype": "F32", "shape": [4, 16], "data_offsets": [0, 256]}


def test_valid_upload_is_listed_with_trigger_architecture_and_rank(studio, tmp_path):
    write_flux_lora(tmp_path / "my style.safetensors", trigger="mystyle")
    row = import_lora_file(studio, "local", tmp_path / "my style.safetensors")
    listed = {r["name"]: r for r in list_loras(studio, "local")}
    assert listed["my_style"]["architecture"] == "flux" and listed["my_style"]["trigger"] == "mystyle"
    assert row["rank"] == 4 and studio.config.absolute(row["path"]).is_file()
    with pytest.raises(InvalidInput, match="already have"):
        import_lora_file(studio, "local", tmp_path / "my style.safetensors")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.with_suffix(".ckpt").write_bytes(pickle.dumps({"w": [1, 2]})) and p.with_suffix(".ckpt"),
     "must be a .safetensors file"),
    (lambda p: p.write_bytes(pickle.dumps({"state_dict": {"w": list(range(50))}})) and p, "pickle"),
    (lambda p: p.write_bytes(save(**flux_lora())[:-40]) and p, "truncated"),
    (lambda p: save_file({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight":
                          np.zeros((4, 768), np.float32)}, str(p)) or p, "is for SD 1.x; MASUKA.s models are"),
    (lambda p: save_file({"model.weight": np.zeros((2, 2), np.float32)}, str(p)) or p, "no LoRA weights"),
    (lambda p: raw_file(p, {"__metadata__": "x", "A": TENSOR}), "damaged"),
    (lambda p: raw_file(p, {"__metadata__": {"steps": 1}, "A": TENSOR}), "damaged"),
    (lambda p: raw_file(p, {"A": {"dtype": "F32", "data_offsets": [0, 256]}}), "damaged"),
    (lambda p: raw_file(p, {"A": {**TENSOR, "shape": "abc"}}), "damaged"),
    (lambda p: raw_file(p, {"A": {**TENSOR, "data_offsets": [0, 8]}}, b"\0" * 8), "damaged"),
    (lambda p: raw_file(p, {"A": TENSOR}, b"\0" * 300), "damaged"),
])
def test_unsafe_or_unusable_files_are_refused_and_not_listed(studio, tmp_path, make, message):
    path = make(tmp_path / "bad.safetensors")
    with pytest.raises(InvalidInput, match=message):
        import_lora_file(studio, "local", path)
    assert list_loras(studio, "local") == []
    assert not list((studio.config.loras_dir).rglob("*.safetensors"))


def test_imports_are_per_user(studio, tmp_path):
    write_flux_lora(tmp_path / "mine.safetensors")
    import_lora_file(studio, "alice", tmp_path / "mine.safetensors")
    assert [r["name"] for r in list_loras(studio, "alice")] == ["mine"]
    assert list_loras(studio, "bob") == []


def test_import_from_a_hugging_face_repo(studio, monkeypatch):
    with hub_online(monkeypatch, {"someone/flux-lora": FakeRepo({"lora.safetensors": save(**flux_lora("zxc"))})}):
        row = import_from_hub(studio, "local", "someone/flux-lora", "lora.safetensors", name="from-hub")
        assert (row["name"], row["source"], row["trigger"]) == ("from-hub", "huggingface", "zxc")
        with pytest.raises(InvalidInput, match=".safetensors file"):
            import_from_hub(studio, "local", "someone/flux-lora", "lora.bin")
        with pytest.raises(Exception, match="not found"):
            import_from_hub(studio, "local", "someone/missing", "lora.safetensors")


def test_a_gated_repo_tells_an_importer_who_is_not_an_admin_to_ask_one(studio, monkeypatch):
    monkeypatch.setattr(type(studio.config), "is_admin", lambda config, user: user == "admin")
    with hub_online(monkeypatch, {"someone/gated": FakeRepo({"lora.safetensors": save(**flux_lora("zxc"))},
                                                           gated=True)}):
        with pytest.raises(Exception, match="ask an admin to save the key in Settings → API keys"):
            import_from_hub(studio, "bob", "someone/gated", "lora.safetensors")


def test_a_hub_import_while_offline_fails_at_once_saying_to_import_again(studio, monkeypatch):
    import time

    from huggingface_hub import constants

    from tests.conftest import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as refused:
        import_from_hub(studio, "local", "someone/flux-lora", "lora.safetensors")
    assert str(refused.value) == (f"The Hugging Face Hub ({endpoint}) cannot be reached: check the network and "
                                  "import someone/flux-lora lora.safetensors again.")
    assert time.monotonic() - started < 5 and list_loras(studio, "local") == []


def civitai_route(files: dict[str, bytes], formats: dict[str, str], title: str = "Neon Glow"):
    def route(request):
        version = re.fullmatch(r"/api/v1/model-versions/(\d+)", request.path)
        if version and version[1] in files:
            return Reply(200, {"id": int(version[1]), "baseModel": "Flux.1 D", "trainedWords": ["ohwx", "neon"],
                               "model": {"name": title},
                               "files": [{"name": "neon.safetensors", "primary": True,
                                          "metadata": {"format": formats.get(version[1], "SafeTensor")}}]})
        download = re.fullmatch(r"/api/download/models/(\d+)", request.path)
        if download and download[1] in files:
            if bearer(request) != CIVITAI_KEY:
                return Reply(401, {"error": "Unauthorized"})
            return Reply(307, b"", {"Location": f"/storage/{download[1]}"})
        storage = re.fullmatch(r"/storage/(\d+)", request.path)
        if storage:
            return Reply(200, files[storage[1]])
        return Reply(404, {"error": "No model with id"})
    return route


def test_import_from_civitai_brings_trigger_words_and_base_model(studio, monkeypatch):
    files = {"111": save(**flux_lora()), "222": pickle.dumps({"w": 1}), "333": b"whatever"}
    with FakeServer(civitai_route(files, {"333": "PickleTensor"})) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)
        with pytest.raises(ProviderError, match="needs a CivitAI API key"):
            import_from_civitai(studio, "local", "111")
        monkeypatch.setenv("CIVITAI_API_KEY", "wrong_key_0000")
        with pytest.raises(ProviderError) as refused:
            import_from_civitai(studio, "local", "111")
        assert "0000" in str(refused.value) and "wrong_key" not in str(refused.value)
        monkeypatch.setenv("CIVITAI_API_KEY", CIVITAI_KEY)
        row = import_from_civitai(studio, "local", "111")
        assert (row["name"], row["trigger"], row["base_model"], row["source"]) == (
            "Neon_Glow", "ohwx, neon", "Flux.1 D", "civitai")
        with pytest.raises(InvalidInput, match="pickle"):
            import_from_civitai(studio, "local", "222", name="evil")
        with pytest.raises(InvalidInput, match="only SafeTensor"):
            import_from_civitai(studio, "local", "333")
        with pytest.raises(InvalidInput, match="no model version"):
            import_from_civitai(studio, "local", "999")
        with pytest.raises(InvalidInput, match="not a CivitAI model version id"):
            import_from_civitai(studio, "local", "../1")
    assert [r["name"] for r in list_loras(studio, "local")] == ["Neon_Glow"]
    assert not list(studio.config.tmp_dir.iterdir())


def test_a_civitai_model_name_without_letters_falls_back_to_the_file_then_the_version(studio, monkeypatch):
    """A name the user did not give is never asked for: a model named "🔥🔥" gets its file's name, and with no
    usable file name either ``civitai-<version>``."""
    lora = save(**flux_lora())
    files = {"1": "neon.safetensors", "2": "🔥.safetensors"}

    def route(request):
        version = request.path.rsplit("/", 1)[1]
        if request.path.startswith("/api/v1/model-versions/"):
            return Reply(200, {"model": {"name": "🔥🔥"}, "files": [{"name": files[version], "primary": True}]})
        return Reply(200, lora)

    with FakeServer(route) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)
        assert [import_from_civitai(studio, "local", version)["name"] for version in files] == ["neon", "civitai-2"]


def test_a_civitai_web_page_or_an_answer_that_is_no_object_is_told_as_such(studio, monkeypatch):
    """A sign-in page sent instead of the file is not called a pickle; a JSON list for a version is refused."""
    def route(request):
        if request.path.startswith("/api/v1/model-versions/"):
            return Reply(200, [] if request.path.endswith("/7") else {"model": {"name": "ink"}, "files": []})
        return Reply(200, "<html>Sign in</html>", {"Content-Type": "text/html; charset=utf-8"})

    with FakeServer(route) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)
        with pytest.raises(ProviderError, match="CivitAI sent a web page instead of the file: it may need a CivitAI "
                                                "API key"):
            import_from_civitai(studio, "local", "5")
        with pytest.raises(ProviderError, match="something other than a JSON object"):
            import_from_civitai(studio, "local", "7")
    assert list_loras(studio, "local") == [] and not list(studio.config.tmp_dir.iterdir())


def trained(studio, name: str, run: str = "1"):
    """A LoRA in a run's folder, in the library as a finished run puts it."""
    from masuka.loras.files import inspect_lora
    from masuka.loras.library import register_lora

    path = studio.config.runs_dir / f"run-{run}-{name}" / "lora" / f"{name}.safetensors"
    path.parent.mkdir(parents=True)
    write_flux_lora(path)
    register_lora(studio, inspect_lora(path), "local", "training")
    return path


def test_a_name_already_in_the_library_is_refused_before_anything_is_fetched(studio, tmp_path, monkeypatch):
    trained(studio, "ink")
    write_flux_lora(tmp_path / "other.safetensors")
    with pytest.raises(InvalidInput, match="already have a LoRA named 'ink'"):
        import_lora_file(studio, "local", tmp_path / "other.safetensors", name="ink")
    with hub_online(monkeypatch, {}):  # the repo does not exist: refused before asking for it
        with pytest.raises(InvalidInput, match="already have a LoRA named 'ink'"):
            import_from_hub(studio, "local", "someone/nothing", "lora.safetensors", name="ink")
    with FakeServer(civitai_route({"111": save(**flux_lora())}, {})) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)  # no key: the download would be refused
        with pytest.raises(InvalidInput, match="already have a LoRA named 'ink'"):
            import_from_civitai(studio, "local", "111", name="ink")
    assert [r["name"] for r in list_loras(studio, "local")] == ["ink"]
    with pytest.raises(InvalidInput, match="A shared LoRA is named 'ink'"):  # local's LoRAs are offered to all
        import_lora_file(studio, "bob", tmp_path / "other.safetensors", name="ink")
    assert import_lora_file(studio, "bob", tmp_path / "other.safetensors", name="pen")["owner"] == "bob"
    assert import_lora_file(studio, "alice", tmp_path / "other.safetensors", name="pen")["owner"] == "alice"


def test_made_up_names_get_a_free_suffix_and_a_gone_file_frees_its_name(studio):
    from masuka.loras.library import free_lora_name

    folder = studio.config.runs_dir / "run-new" / "lora"
    assert free_lora_name(studio, "local", "fox-flux-run1", folder) == "fox-flux-run1"
    first = trained(studio, "fox-flux-run1")
    trained(studio, "fox-flux-run1-2")
    assert free_lora_name(studio, "local", "fox-flux-run1", folder) == "fox-flux-run1-3"
    assert free_lora_name(studio, "local", "fox-flux-run1", first.parent) == "fox-flux-run1", "its own file"
    assert free_lora_name(studio, "alice", "fox-flux-run1", folder) == "fox-flux-run1-3", "local's are shared"
    assert free_lora_name(studio, "alice", "fox", folder) == "fox"
    first.unlink()  # deleted with its run's History entry
    assert free_lora_name(studio, "local", "fox-flux-run1", folder) == "fox-flux-run1"
    again = trained(studio, "fox-flux-run1", run="2")  # the gone file's row makes room
    assert [r["path"] for r in list_loras(studio, "local") if r["name"] == "fox-flux-run1"] == [
        studio.config.relative(again)]


def test_a_dropped_file_named_like_a_library_lora_is_not_offered_twice(studio):
    trained(studio, "ink")
    studio.config.loras_dir.mkdir(parents=True, exist_ok=True)
    write_flux_lora(studio.config.loras_dir / "ink.safetensors")
    assert [r["name"] for r in list_loras(studio, "local")] == ["ink"]
    assert studio.store.count("loras", "name = 'ink'") == 1


def test_admins_are_offered_only_the_loras_they_can_use(studio, tmp_path):
    from masuka.image.generate import resolve_lora_path

    write_flux_lora(tmp_path / "bobstyle.safetensors")
    import_lora_file(studio, "bob", tmp_path / "bobstyle.safetensors")
    write_flux_lora(tmp_path / "adminstyle.safetensors")
    import_lora_file(studio, "admin", tmp_path / "adminstyle.safetensors")
    offered = [r["name"] for r in list_loras(studio, "admin")]
    assert offered == ["adminstyle"]
    assert all(resolve_lora_path(studio, name, "admin", False).is_file() for name in offered)


def test_long_names_are_refused_before_anything_is_fetched_and_found_ones_are_shortened(studio, tmp_path,
                                                                                         monkeypatch):
    write_flux_lora(tmp_path / "x.safetensors")
    for name in ("a" * 101, "é" * 101, "字" * 70):
        with pytest.raises(InvalidInput, match="too long"):
            import_lora_file(studio, "local", tmp_path / "x.safetensors", name=name)
    assert import_lora_file(studio, "local", tmp_path / "x.safetensors", name="字" * 66)["name"] == "字" * 66
    files = {"111": save(**flux_lora())}
    title = "Neon Glow " * 40  # the model's own name, as CivitAI answers it: cut, not refused
    with FakeServer(civitai_route(files, {}, title=title)) as server:
        monkeypatch.setenv("MASUKA_CIVITAI_BASE_URL", server.url)  # no key: the download would be refused
        with pytest.raises(InvalidInput, match="too long"):
            import_from_civitai(studio, "local", "111", name="n" * 300)
        assert [r.path for r in server.requests] == ["/api/v1/model-versions/111"], "refused before the download"
        monkeypatch.setenv("CIVITAI_API_KEY", CIVITAI_KEY)
        row = import_from_civitai(studio, "local", "111")  # the long title comes through the real request and parse
        assert [r.path for r in server.requests][-2:] == ["/api/download/models/111", "/storage/111"]
    assert row["name"] == ("Neon_Glow_" * 10).rstrip("_") and studio.config.absolute(row["path"]).is_file()


def test_a_name_typed_with_a_combining_accent_is_the_composed_name(studio, tmp_path):
    write_flux_lora(tmp_path / "x.safetensors")
    row = import_lora_file(studio, "local", tmp_path / "x.safetensors", name="Cafe\u0301")  # "e" + U+0301
    assert row["name"] == "Caf\u00e9" and row["path"].endswith("Caf\u00e9.safetensors")
    with pytest.raises(InvalidInput, match="already have a LoRA named 'Caf\u00e9'"):
        import_lora_file(studio, "local", tmp_path / "x.safetensors", name="Caf\u00e9")


@pytest.mark.parametrize("name, code", [("evil\u202eexe", "U+202E"), ("bell\x07", "U+0007"),
                                        ("zero\u200dwidth", "U+200D"), ("soft\u00adhyphen", "U+00AD")])
def test_a_name_with_a_control_or_invisible_character_is_refused_by_name(studio, tmp_path, name, code):
    write_flux_lora(tmp_path / "x.safetensors")
    with pytest.raises(InvalidInput, match=re.escape(f"LoRA name holds a control or invisible character ({code})")):
        import_lora_file(studio, "local", tmp_path / "x.safetensors", name=name)
    assert not list_loras(studio, "local")
    assert import_lora_file(studio, "local", tmp_path / "x.safetensors")["name"] == "x", "a file's own name is cut"


def test_two_imports_of_one_name_at_once_give_one_whole_lora_and_one_refusal(studio, tmp_path, monkeypatch):
    import shutil
    import threading

    sources = {}
    for rank in (4, 8):
        path = tmp_path / f"rank{rank}.safetensors"
        save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": np.full((rank, 16), rank,
                                                                                                np.float32),
                   "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": np.zeros((16, rank),
                                                                                                np.float32)},
                  str(path))
        sources[rank] = path
    copy, both = shutil.copyfile, threading.Barrier(2, timeout=30)

    def side_by_side(source, target):  # two tabs: both past the name check, both copying, before either lands
        both.wait()
        copy(source, target)
        both.wait()

    monkeypatch.setattr(shutil, "copyfile", side_by_side)
    answers: dict[int, object] = {}

    def import_as_same(rank: int) -> None:
        try:
            answers[rank] = import_lora_file(studio, "local", sources[rank], name="same")
        except Exception as error:
            answers[rank] = error

    threads = [threading.Thread(target=import_as_same, args=(rank,)) for rank in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = [a for a in answers.values() if isinstance(a, dict)]
    refused = [a for a in answers.values() if not isinstance(a, dict)]
    assert len(rows) == 1 and len(refused) == 1, answers
    assert isinstance(refused[0], InvalidInput) and "already have a LoRA named 'same'" in str(refused[0])
    landed = studio.config.absolute(rows[0]["path"])
    assert landed.read_bytes() == sources[rows[0]["rank"]].read_bytes(), "one file whole, not a mixture"
    assert sorted(p.name for p in landed.parent.iterdir()) == ["same.safetensors"], "no partial copy left"
    assert [(r["name"], r["rank"]) for r in list_loras(studio, "local")] == [("same", rows[0]["rank"])]


def test_an_import_that_fails_after_copying_leaves_neither_file_nor_row(studio, tmp_path, monkeypatch):
    import sqlite3

    from masuka.loras import imports

    write_flux_lora(tmp_path / "ink.safetensors")
    register = imports.register_lora

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(imports, "register_lora", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        import_lora_file(studio, "local", tmp_path / "ink.safetensors")
    assert list(studio.config.loras_dir.rglob("*")) == [studio.config.loras_dir / "local"]
    monkeypatch.setattr(imports, "register_lora", register)
    assert import_lora_file(studio, "local", tmp_path / "ink.safetensors")["name"] == "ink"


def settle(path) -> None:
    """Make ``path`` older than an import in progress can be."""
    from masuka.disk import TMP_AGE_S

    old = time.time() - TMP_AGE_S - 60
    os.utime(path, (old, old))


def test_a_file_whose_import_was_killed_before_its_row_is_listed_and_can_be_deleted(studio, tmp_path):
    from masuka.loras.library import delete_lora

    left = studio.config.loras_dir / "local" / "ink.safetensors"  # as a SIGKILL between file and row leaves it
    left.parent.mkdir(parents=True)
    write_flux_lora(left, trigger="inky")
    assert list_loras(studio, "local") == [], "a new file may be an import still registering it"
    settle(left)
    write_flux_lora(tmp_path / "ink.safetensors")
    with pytest.raises(InvalidInput, match="already have a LoRA named 'ink'"):
        import_lora_file(studio, "local", tmp_path / "ink.safetensors")
    assert [(r["name"], r["trigger"]) for r in list_loras(studio, "local")] == [("ink", "inky")]
    assert delete_lora(studio, "ink", "local", admin=False)["name"] == "ink" and not left.exists()

    write_flux_lora(left)  # deleted by name even before any list
    settle(left)
    assert delete_lora(studio, "ink", "local", admin=False)["name"] == "ink" and not left.exists()
    assert import_lora_file(studio, "local", tmp_path / "ink.safetensors")["name"] == "ink"


def test_a_list_during_an_import_leaves_its_file_to_the_import_with_its_trigger_and_base_model(studio, tmp_path,
                                                                                              monkeypatch):
    from masuka.loras import imports, library

    write_flux_lora(tmp_path / "neon.safetensors")
    claim = imports._claim

    def listed_meanwhile(partial, target):  # another tab lists LoRAs between the file landing and its row
        claim(partial, target)
        list_loras(studio, "local")

    monkeypatch.setattr(imports, "_claim", listed_meanwhile)
    row = import_lora_file(studio, "local", tmp_path / "neon.safetensors", origin="civitai", trigger="ohwx",
                           base_model="Flux.1 D")
    assert (row["source"], row["trigger"], row["base_model"]) == ("civitai", "ohwx", "Flux.1 D")

    insert = library.insert_named
    adopted: list[int] = []

    def adopted_first(store, table, fields, taken):  # a list records the file as the import's insert starts
        if not adopted:
            adopted.append(insert(store, table, {**fields, "source": "import", "trigger": "", "base_model": ""},
                                  taken))
        return insert(store, table, fields, taken)

    monkeypatch.setattr(imports, "_claim", claim)
    monkeypatch.setattr(library, "insert_named", adopted_first)
    row = import_lora_file(studio, "local", tmp_path / "neon.safetensors", name="neon2", trigger="ohwx",
                           base_model="Flux.1 D")
    assert row["id"] == adopted[0] and (row["trigger"], row["base_model"]) == ("ohwx", "Flux.1 D")
    assert studio.config.absolute(row["path"]).is_file()
    assert [r["name"] for r in list_loras(studio, "local")] == ["neon", "neon2"]


def test_a_failed_import_keeps_a_file_that_another_caller_recorded(studio, tmp_path, monkeypatch):
    import sqlite3

    from masuka.loras import imports, library

    write_flux_lora(tmp_path / "ink.safetensors")
    register = imports.register_lora

    def recorded_then_failed(*args, **kwargs):
        register(*args, **kwargs)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(imports, "register_lora", recorded_then_failed)
    with pytest.raises(sqlite3.OperationalError):
        import_lora_file(studio, "local", tmp_path / "ink.safetensors")
    [row] = list_loras(studio, "local")
    assert studio.config.absolute(row["path"]).is_file(), "the row's file stays"
    assert library.lora_folder(studio, "local") == studio.config.absolute(row["path"]).parent


def test_listing_loras_reads_the_known_files_once_however_many_there_are(studio, tmp_path, monkeypatch):
    calls = []
    for method in ("count", "find", "query"):
        real = getattr(studio.store, method)
        monkeypatch.setattr(studio.store, method, lambda *a, real=real, **k: calls.append(a) or real(*a, **k))

    def queries_with(files: int) -> int:
        for number in range(files):
            write_flux_lora(tmp_path / f"n{number}.safetensors")
            if not studio.store.count("loras", "name = ?", [f"n{number}"]):
                import_lora_file(studio, "local", tmp_path / f"n{number}.safetensors")
        calls.clear()
        list_loras(studio, "local")
        return len(calls)

    assert queries_with(2) == queries_with(6)


def test_a_file_dropped_into_the_library_folder_is_everyones_at_once(tmp_path):
    """A shared app: a LoRA file dropped into ``loras/`` is offered to a signed-in user who is no admin, and
    called by name before anyone has listed the library."""
    from masuka.config import Config
    from masuka.image.generate import resolve_lora_path
    from masuka.studio import Studio

    team = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="admin:pz,bob:pb"))
    try:
        team.config.loras_dir.mkdir(parents=True, exist_ok=True)
        write_flux_lora(team.config.loras_dir / "called.safetensors")
        assert resolve_lora_path(team, "called", "bob", False) == team.config.loras_dir / "called.safetensors"
        write_flux_lora(team.config.loras_dir / "listed.safetensors")
        assert [r["name"] for r in list_loras(team, "bob")] == ["called", "listed"]
    finally:
        team.close()
