"""History actions on real generations made with a tiny pipeline: reuse, missing files, delete, export."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from masuka.errors import InvalidInput, NotFound
from masuka.history.actions import delete_entries, export_zip, reuse_parameters
from masuka.history.browse import browse, entry
from masuka.image.generate import ImageRequest, InitImage, generate_images, parse_lora
from masuka.loras.files import inspect_lora
from masuka.loras.imports import import_lora_file
from masuka.loras.library import list_loras, register_lora
from masuka.models.synthetic import save_tiny_lora


def make(studio, model, **kw):
    values = dict(prompt="a lighthouse at dusk", model=str(model), steps=2, width=64, height=64, seed=5,
                  negative_prompt="fog", guidance=4.0)
    values.update(kw)
    return generate_images(studio, ImageRequest(**values))


def test_reuse_parameters_remakes_the_same_image_alone_even_from_a_batch(studio, tiny_model):
    """The second image of a batch comes back with its own seed and a batch of 1: Generate remakes it alone."""
    _first, second = make(studio, tiny_model("sdxl"), seed=77, batch=2)  # a model whose negative prompt counts
    kind, fields = reuse_parameters(studio, "local", False, f"g{second.id}")
    assert kind == "image"
    assert (fields["prompt"], fields["negative"], fields["seed"], fields["steps"], fields["batch"]) == (
        "a lighthouse at dusk", "fog", 78, 2, 1)
    again = generate_images(studio, ImageRequest(
        prompt=fields["prompt"], model=fields["model"], negative_prompt=fields["negative"], steps=fields["steps"],
        guidance=fields["guidance"], width=fields["width"], height=fields["height"], seed=fields["seed"],
        batch=fields["batch"], loras=[parse_lora(x) for x in fields["loras"]]))
    [remade] = again
    assert np.array_equal(np.asarray(Image.open(second.path)), np.asarray(Image.open(remade.path)))


def test_missing_and_corrupted_files_are_shown_as_such(studio, tiny_model):
    missing, corrupted, fine = make(studio, tiny_model("flux"), batch=3)
    missing.path.unlink()
    corrupted.path.write_bytes(corrupted.path.read_bytes()[:60])
    status = {e["id"]: e["file_status"] for e in browse(studio, "local", False).entries}
    assert status == {missing.id: "missing", corrupted.id: "corrupted", fine.id: "ok"}
    assert entry(studio, "local", False, f"g{missing.id}")["file"] is None


def test_delete_removes_rows_and_files_and_refuses_running_jobs(studio, tiny_model):
    result = make(studio, tiny_model("flux"))[0]
    job = studio.store.insert("jobs", {"kind": "train", "status": "running", "title": "a run"})
    with pytest.raises(InvalidInput, match="still running"):
        delete_entries(studio, "local", False, [f"j{job}", f"g{result.id}"])
    assert result.path.is_file()
    assert "1 file" in delete_entries(studio, "local", False, [f"g{result.id}"])
    assert not result.path.exists() and studio.store.get("generations", result.id) is None
    studio.store.update("jobs", job, status="completed")
    studio.store.add_metric(job, step=1, loss=0.5)
    delete_entries(studio, "local", False, [f"j{job}"])
    assert studio.store.count("jobs") == 0 and studio.store.count("job_metrics") == 0


def test_delete_refuses_a_remote_run_whose_job_may_still_run_at_the_service(studio):
    """An interrupted fal run (a Ctrl-C to the CLI, a cancel fal did not take) still has a paid job at fal: only
    the run can follow or cancel it."""
    job = studio.store.insert("jobs", {"kind": "train", "status": "interrupted", "title": "fox on fal",
                                       "params": {"backend": "fal"},
                                       "state": {"backend": "fal", "ref": {"id": "job1"}, "phase": "running"}})
    with pytest.raises(InvalidInput, match=f"j{job}: Stop it first: its job still runs at fal.ai"):
        delete_entries(studio, "local", False, [f"j{job}"])
    assert studio.store.get("jobs", job) is not None
    studio.store.update("jobs", job, status="cancelled")  # Stop cancelled it at fal
    assert "Deleted 1 entry" in delete_entries(studio, "local", False, [f"j{job}"])


def test_export_zip_holds_files_and_metadata(studio, tiny_model):
    results = make(studio, tiny_model("flux"), batch=2)
    job = studio.store.insert("jobs", {"kind": "caption", "status": "completed", "title": "captions", "pid": 7,
                                       "holder": "a-studio-token"})
    keys = [f"g{r.id}" for r in results] + [f"j{job}"]
    with zipfile.ZipFile(export_zip(studio, "local", False, keys)) as archive:
        records = [json.loads(line) for line in archive.read("metadata.jsonl").decode().splitlines()]
        names = set(archive.namelist())
    assert [r["key"] for r in records] == keys
    assert records[0]["seed"] == 5 and records[0]["prompt"] == "a lighthouse at dusk"
    assert {r["file_name"] for r in records[:2]} <= names and records[2]["file_name"] is None
    assert not {"pid", "holder"} & set(records[2]), "which process held a job is not the user's to keep"


def test_actions_on_another_users_entry_are_refused(studio, tiny_model):
    result = make(studio, tiny_model("flux"), owner="alice")[0]
    for action in (reuse_parameters, lambda *a: delete_entries(*a[:3], [a[3]]),
                   lambda *a: export_zip(*a[:3], [a[3]])):
        with pytest.raises(NotFound):
            action(studio, "bob", False, f"g{result.id}")
    assert result.path.is_file()
    assert "alice" in result.path.parts


def image_row(studio, **params) -> str:
    """The key of an image entry with the given params (no file needed to reuse it)."""
    return "g" + str(studio.store.insert("generations", {
        "kind": "image", "status": "completed", "prompt": "a fox", "negative_prompt": "", "model": "flux-dev",
        "seed": 1, "steps": 2, "guidance": 1.0, "width": 64, "height": 64, "loras": [], "params": params}))


def test_reuse_sends_every_image_field_so_no_earlier_value_stays(studio):
    import gradio as gr

    from masuka.ui.common import Form
    from masuka.ui.history import reuse
    from masuka.ui.image_modes import reuse_fields

    aided = image_row(studio, sampler="Euler a", face_detail={"detector": "haar", "strength": 0.6, "faces": []},
                      safety={"score": 0.1, "flagged": False}, prompt_optimizer="local", original_prompt="fox")
    plain = image_row(studio)
    _kind, fields = reuse_parameters(studio, "local", False, aided)
    assert (fields["sampler"], fields["face_detail"], fields["face_strength"], fields["safety_check"]) == (
        "Euler a", True, 0.6, True)
    assert fields["optimize_prompt"] is False, "the prompt reused is already the rewrite"
    _kind, fields = reuse_parameters(studio, "local", False, plain)
    assert {name: fields[name] for name in ("negative", "sampler", "optimize_prompt", "safety_check", "face_detail",
                                            "face_strength", "init_image", "mask", "references")} == {
        "negative": "", "sampler": "", "optimize_prompt": False, "safety_check": False, "face_detail": False,
        "face_strength": 0.4, "init_image": None, "mask": None, "references": []}
    names = ["negative", "sampler", "optimize_prompt", "safety_check", "face_detail", "face_strength"]
    form = Form("image", {name: gr.Textbox() for name in names}, adapt=reuse_fields)
    values = reuse.__wrapped__(studio, {"image": form}, [("image", name) for name in names], False, plain)
    assert list(values[:len(names)]) == ["", "", False, False, False, 0.4], "the UI fills them all, skips none"


def test_reuse_sets_every_mode_field_so_no_earlier_task_stays(studio):
    """Reuse of an inpaint after an outpaint empties the padding (Generate outpainted again); a field the entry
    lacks (a text-to-image's strength, an image-to-image's mask blur, the inpaint options, Control and Reference
    settings) takes the form's opening value, as Read parameters gives it. An inpaint's options come back."""
    import gradio as gr

    from masuka.ui.common import Form
    from masuka.ui.history import reuse
    from masuka.ui.image_modes import inpaint_from_parameters, reuse_fields, task_from_parameters

    names = ["mode", "strength", "mask_blur", "outpaint", "init_image", "control_kind", "control_weight",
             "control_start", "control_end", "control_image", "reference_weight", "reference_image", "mask_mode",
             "masked_content", "inpaint_area", "only_masked_padding"]
    form = Form("image", {name: gr.Textbox() for name in names}, adapt=reuse_fields)

    def reused(**params) -> dict:
        values = reuse.__wrapped__(studio, {"image": form}, [("image", name) for name in names], False,
                                   image_row(studio, **params))
        return dict(zip(names, values[:len(names)]))

    from PIL import Image

    picture = "outputs/local/inputs/photo.png"  # kept with the entry (Reuse empties a picture deleted since)
    studio.config.absolute(picture).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), "teal").save(studio.config.absolute(picture))
    outpaint = reused(task="outpaint", strength=1.0, init_image=picture, mask_blur=0, outpaint=[0, 32, 0, 0],
                      control_kind="depth", control_image=picture, control_weight=0.5, control_start=0.1,
                      control_end=0.9, reference_image=picture, reference_weight=0.3)
    assert (outpaint["outpaint"], outpaint["control_weight"], outpaint["reference_weight"]) == ("0,32,0,0", 0.5, 0.3)
    inpaint = reused(task="inpaint", strength=0.6, init_image=picture, mask="outputs/local/inputs/mask.png",
                     mask_blur=2, invert_mask=True, fill_masked=True, only_masked_padding=12)
    options = ["mask_mode", "masked_content", "inpaint_area", "only_masked_padding"]
    assert [inpaint.pop(name) for name in options] == ["Inpaint not masked", "fill", "Only masked", 12]
    assert inpaint == {"mode": "Inpaint/Outpaint", "strength": 0.6, "mask_blur": 2, "outpaint": "",
                       "init_image": str(studio.config.absolute(picture)),
                       "control_kind": "canny", "control_weight": 1.0, "control_start": 0.0, "control_end": 1.0,
                       "control_image": None, "reference_weight": 1.0, "reference_image": None}
    img2img = reused(task="img2img", strength=0.5, init_image=picture)
    assert [img2img[name] for name in ("mode", "strength", "mask_blur", "outpaint", *options)] == [
        "Image", 0.5, 4, "", "Inpaint masked", "original", "Whole picture", 32]
    older = reused(task="inpaint", strength=1.0, init_image=picture, mask_blur=0, mask_inverted=True)
    assert older["mask_mode"] == "Inpaint masked", "an older row kept its mask inverted: it repaints it as it is"
    text = reused()
    shown = [text[name] for name in ("strength", "mask_blur", "outpaint", "mode")]
    assert shown == [0.75, 4, "", "Text"] == list(task_from_parameters({})), "as Read parameters gives them"
    assert [text[name] for name in options] == inpaint_from_parameters({})


def test_reuse_names_a_lora_by_its_file_when_the_library_does_not_know_it(studio, tiny_model, tmp_path):
    checkpoint = studio.config.runs_dir / "run-00001" / "checkpoint-000002" / "run-00001-step2.safetensors"
    checkpoint.parent.mkdir(parents=True)
    save_tiny_lora("flux", checkpoint)
    relative = "runs/run-00001/checkpoint-000002/run-00001-step2.safetensors"
    first = make(studio, tiny_model("flux"), loras=[(relative, 0.7)])[0]
    _kind, fields = reuse_parameters(studio, "local", False, f"g{first.id}")
    assert fields["loras"] == [f"{relative}:0.7"]
    again = make(studio, tiny_model("flux"), loras=[parse_lora(x) for x in fields["loras"]])[0]
    assert np.array_equal(np.asarray(Image.open(first.path)), np.asarray(Image.open(again.path)))
    save_tiny_lora("flux", tmp_path / "style.safetensors", seed=3)
    import_lora_file(studio, "local", tmp_path / "style.safetensors")
    styled = make(studio, tiny_model("flux"), loras=[("style", 0.00001)])[0]
    assert reuse_parameters(studio, "local", False, f"g{styled.id}")[1]["loras"] == ["style:0.00001"]


def test_delete_removes_input_copies_no_other_entry_uses(studio, tiny_model, tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "photo.png")
    one, two = make(studio, tiny_model("flux"), batch=2, init=InitImage(str(tmp_path / "photo.png"), 0.5))
    copy = studio.config.absolute(entry(studio, "local", False, f"g{one.id}")["params"]["init_image"])
    assert copy.parent.name == "inputs" and copy.is_file()
    assert "1 file" in delete_entries(studio, "local", False, [f"g{one.id}"])
    assert copy.is_file(), "the batch's other image still uses it"
    assert "2 file" in delete_entries(studio, "local", False, [f"g{two.id}"])
    assert not copy.exists() and not list(copy.parent.iterdir())


def test_deleting_a_training_run_removes_its_folder_and_its_loras_from_the_library(studio):
    run = studio.config.runs_dir / "run-00001"
    lora = save_tiny_lora("flux", run / "lora" / "fox-flux-run1.safetensors")
    (run / "checkpoint-000500").mkdir()
    (run / "checkpoint-000500" / "optimizer.pt").write_bytes(b"x" * 100)
    (run / "samples").mkdir()
    (run / "samples" / "step-000500-0.png").write_bytes(b"png")
    job = studio.store.insert("jobs", {
        "kind": "train", "status": "completed", "title": "fox", "state": {"run_dir": "runs/run-00001"},
        "result": {"lora": "runs/run-00001/lora/fox-flux-run1.safetensors", "lora_name": "fox-flux-run1"}})
    register_lora(studio, inspect_lora(lora), "local", "training", job_id=job)
    queued = studio.store.insert("queue", {"task": "images", "status": "queued", "title": "foxes",
                                           "params": {"request": {"loras": [["fox-flux-run1", 0.8]]}}})
    with pytest.raises(InvalidInput, match="unfinished work"):
        delete_entries(studio, "local", False, [f"j{job}"])
    assert lora.is_file()
    studio.store.update("queue", queued, status="cancelled")
    done = delete_entries(studio, "local", False, [f"j{job}"])
    assert "3 file" in done and "fox-flux-run1 left the LoRA library" in done
    assert not run.exists() and studio.store.count("loras") == 0 and list_loras(studio, "local") == []


def test_an_image_request_cannot_take_a_run_s_lora_while_the_run_is_being_deleted(studio, monkeypatch):
    """A request that checks its LoRA while the run's deletion removes files waits for the deletion and is told the
    LoRA was deleted: it never holds a file that is then removed under it."""
    import threading

    from masuka.history import actions
    from masuka.loras.usage import lora_files_in_use

    run = studio.config.runs_dir / "run-00001"
    lora = save_tiny_lora("flux", run / "lora" / "fox-flux-run1.safetensors")
    job = studio.store.insert("jobs", {
        "kind": "train", "status": "completed", "title": "fox", "state": {"run_dir": "runs/run-00001"},
        "result": {"lora": "runs/run-00001/lora/fox-flux-run1.safetensors", "lora_name": "fox-flux-run1"}})
    register_lora(studio, inspect_lora(lora), "local", "training", job_id=job)
    outcome: list[str] = []

    def request() -> None:
        try:
            with lora_files_in_use(studio, [lora]):
                outcome.append("held")
        except InvalidInput as error:
            outcome.append(str(error))

    owned, arrivals = actions._owned_files, []

    def files_while_a_request_comes(studio_, row):
        if not arrivals:  # the deletion has made its checks and starts removing files
            arrivals.append(threading.Thread(target=request))
            arrivals[0].start()
            arrivals[0].join(timeout=0.5)  # it is answered only once the deletion has ended
        return owned(studio_, row)

    monkeypatch.setattr(actions, "_owned_files", files_while_a_request_comes)
    delete_entries(studio, "local", False, [f"j{job}"])
    arrivals[0].join()
    assert len(outcome) == 1 and "was deleted" in outcome[0] and not run.exists()


def video_row(studio, **columns) -> str:
    """The key of a video entry (no file needed to reuse it)."""
    values = {"kind": "video", "status": "completed", "prompt": "waves at dusk", "provider": "gemini",
              "model": "veo-3.1-generate-001", "params": {"seconds": 8, "size": "1280x720"}, **columns}
    return "g" + str(studio.store.insert("generations", values))


def test_reuse_of_a_video_empties_the_video_fields_it_lacks(studio, tmp_path):
    """Reusing a text-to-video entry after one made with a negative prompt and frames leaves none of them in the
    form: the next Generate would send them (another paid request)."""
    Image.new("RGB", (16, 16), "teal").save(tmp_path / "frame.png")
    framed = video_row(studio, negative_prompt="fog", params={
        "seconds": 6, "size": "1280x720", "image": str(tmp_path / "frame.png"), "last_frame": str(
            tmp_path / "frame.png")})
    assert reuse_parameters(studio, "local", False, framed)[1]["negative"] == "fog"
    _kind, fields = reuse_parameters(studio, "local", False, video_row(studio, negative_prompt=""))
    assert {name: fields[name] for name in ("negative", "image", "last_frame", "source_video", "references")} == {
        "negative": "", "image": None, "last_frame": None, "source_video": None, "references": []}


def test_a_chains_clips_go_with_the_last_entry_of_its_job(studio, fake):
    from masuka.video.jobs import clip_dir, start_video, wait_video
    from masuka.video.request import VideoRequest

    fake("openai")
    single, chained = (wait_video(studio, start_video(studio, VideoRequest(
        provider="openai", model="sora-2", prompt="a train crossing a valley", seconds=seconds)), timeout=60)
        for seconds in (4, 20))
    assert not clip_dir(studio, single["id"]).exists(), "a one-clip video leaves no clip folder"
    clips = clip_dir(studio, chained["id"])
    assert sorted(path.name for path in clips.iterdir()) == ["clip-00.mp4", "clip-01.mp4", "frame-01.png"]
    delete_entries(studio, "local", False, [f"g{chained['result']['generation_id']}"])
    assert clips.is_dir(), "the job entry still names them"
    assert "3 file" in delete_entries(studio, "local", False, [f"j{chained['id']}"])
    assert not clips.exists()
