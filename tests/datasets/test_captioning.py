"""Caption passes with tiny random Florence-2 and BLIP-2 models loaded through the real from_pretrained path."""

from __future__ import annotations

import threading

import pytest

from masuka.datasets.adding import add_images
from masuka.datasets.captioners import resolve_captioner
from masuka.datasets.captioning import KEPT_NOTE, REMOVED_NOTE, CaptionRequest, caption_dataset
from masuka.datasets.library import dataset_images, delete_dataset, delete_image, set_caption
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.store import LOCAL_USER
from tests.datasets import corpus


@pytest.fixture
def photos(studio, make_dataset, tmp_path):
    """A dataset with trigger 'zorp' and four photos (flipped copies on)."""
    dataset = make_dataset(trigger="zorp", flip=True, size=256, min_side=100)
    add_images(studio, dataset["id"], LOCAL_USER, [corpus.photo(tmp_path / f"p{i}.jpg", 70 + i) for i in range(4)])
    return dataset


@pytest.mark.parametrize("family", ["florence2", "blip2"])
def test_caption_pass_writes_templated_captions_in_batches_and_unloads(studio, photos, tiny_captioner, family):

    seen = []
    report = caption_dataset(studio, CaptionRequest(photos["name"], captioner=str(tiny_captioner(family)),
                                                    mode="short", batch_size=3),
                             watch=seen.append)
    assert (report.captioned, report.kept, report.stopped) == (4, 0, False)
    assert [(p.step, p.total) for p in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p.detail.startswith("photo of zorp, ") for p in seen)
    rows = dataset_images(studio, photos["id"], augmented=True)
    assert len(rows) == 8
    for row in rows:
        assert row["caption"].startswith("photo of zorp, ") and len(row["caption"]) > len("photo of zorp, ")
    assert studio.models.key is None  # the captioner was unloaded after the pass
    job = studio.store.get("jobs", report.job_id)
    assert (job["kind"], job["status"], job["step"], job["total"]) == ("caption", "completed", 4, 4)
    assert job["params"]["template"] == "photo of {trigger}, {caption}"


def test_existing_captions_are_kept_unless_overwrite(studio, photos, tiny_captioner):
    model = str(tiny_captioner("florence2"))
    first = dataset_images(studio, photos["id"])[0]
    set_caption(studio, first["id"], "my own words about zorp", LOCAL_USER)
    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=model, mode="short",
                                                    template="{caption}, in the style of {trigger}"))
    assert (report.captioned, report.kept) == (3, 1)
    rows = dataset_images(studio, photos["id"])
    assert rows[0]["caption"] == "my own words about zorp"
    assert all(r["caption"].endswith(", in the style of zorp") for r in rows[1:])
    again = caption_dataset(studio, CaptionRequest(photos["id"], captioner=model, mode="short", overwrite=True))
    assert (again.captioned, again.kept) == (4, 0)
    assert dataset_images(studio, photos["id"])[0]["caption"].endswith(", in the style of zorp")  # template kept


def test_a_typed_template_becomes_the_datasets_only_once_a_pass_writes_a_caption_with_it(studio, photos, make_dataset,
                                                                                       tiny_captioner):
    """A pass stopped before its first caption, one with nothing to caption and one refused for an empty dataset
    used to store the template typed for them (and drop the export zips) all the same."""
    from masuka.datasets.export import export_dataset

    model, typed = str(tiny_captioner("florence2")), "{caption}, in the style of {trigger}"
    template = photos["template"]
    stop = threading.Event()
    stop.set()
    stopped = caption_dataset(studio, CaptionRequest(photos["id"], captioner=model, mode="short", template=typed),
                              stop=stop)
    assert (stopped.captioned, stopped.stopped) == (0, True)
    assert studio.store.get("datasets", photos["id"])["template"] == template
    for row in dataset_images(studio, photos["id"]):
        set_caption(studio, row["id"], "zorp by hand", LOCAL_USER)
    archive = export_dataset(studio, photos["id"], LOCAL_USER, "imagefolder")
    nothing = caption_dataset(studio, CaptionRequest(photos["id"], captioner=model, mode="short", template=typed))
    assert (nothing.captioned, nothing.kept) == (0, 4)
    assert studio.store.get("datasets", photos["id"])["template"] == template and archive.is_file()
    empty = make_dataset("empty", trigger="zorp")
    with pytest.raises(InvalidInput, match="has no images to caption"):
        caption_dataset(studio, CaptionRequest(empty["id"], captioner=model, template=typed))
    assert studio.store.get("datasets", empty["id"])["template"] == empty["template"]
    done = caption_dataset(studio, CaptionRequest(photos["id"], captioner=model, mode="short", template=typed,
                                                  overwrite=True))
    assert done.captioned == 4 and studio.store.get("datasets", photos["id"])["template"] == typed
    assert not archive.exists()


def test_a_caption_saved_during_a_pass_is_kept_without_overwrite(studio, photos, tiny_captioner):
    last = dataset_images(studio, photos["id"])[-1]

    seen = []

    def user_types_a_caption(progress):
        seen.append(progress)
        if progress.total and progress.step == 1:  # the pass took its to-do list before this
            set_caption(studio, last["id"], "my own words about zorp", LOCAL_USER)

    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=str(tiny_captioner("florence2")),
                                                    mode="short", batch_size=1), watch=user_types_a_caption)
    assert (report.total, report.captioned, report.kept) == (4, 3, 1)
    rows = dataset_images(studio, photos["id"], augmented=True)
    assert [r["caption"] for r in rows if last["id"] in (r["id"], r["augment_of"])] == ["my own words about zorp"] * 2
    assert studio.store.get("jobs", report.job_id)["step"] == 4
    assert seen[-1].message == last["source_name"] and seen[-1].detail == KEPT_NOTE  # not the unused caption


@pytest.mark.parametrize("batch_size", [1, 4], ids=["before-it-loads", "after-it-loads"])
def test_an_image_deleted_during_a_pass_is_skipped_and_counted(studio, photos, tiny_captioner, batch_size):
    """Deleting an image from the Datasets tab while a pass runs (its file gone before the pass opens it, or
    after): the pass carries on and counts it as removed meanwhile."""
    last = dataset_images(studio, photos["id"])[-1]
    seen = []

    def user_deletes_an_image(progress):
        seen.append(progress)
        if progress.total and progress.step == 1:
            delete_image(studio, last["id"], LOCAL_USER)

    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=str(tiny_captioner("florence2")),
                                                    mode="short", batch_size=batch_size),
                             watch=user_deletes_an_image)
    assert (report.total, report.captioned, report.kept, report.removed, report.stopped) == (4, 3, 0, 1, False)
    assert report.to_dict()["removed"] == 1 and last["id"] not in report.captions
    assert seen[-1].message == last["source_name"] and seen[-1].detail == REMOVED_NOTE
    job = studio.store.get("jobs", report.job_id)
    assert (job["status"], job["step"]) == ("completed", 4)
    assert all(row["caption"].startswith("photo of zorp, ") for row in dataset_images(studio, photos["id"]))


def test_a_dataset_cannot_be_deleted_while_a_caption_pass_runs_on_it(studio, photos, tiny_captioner):
    refusals = []

    def user_deletes_the_dataset(progress):
        if progress.total and progress.step == 1:
            with pytest.raises(InvalidInput) as refused:
                delete_dataset(studio, photos["name"], LOCAL_USER)
            refusals.append(str(refused.value))

    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=str(tiny_captioner("florence2")),
                                                    mode="short", batch_size=1), watch=user_deletes_the_dataset)
    name = photos["name"]
    assert len(refusals) == 1 and refusals[0].startswith(f"The caption job #{report.job_id} (Caption {name} with ")
    assert refusals[0].endswith(f"is running on dataset {name!r}: stop it, or let it finish, before deleting the "
                                "dataset.")
    assert (report.captioned, report.removed) == (4, 0)
    delete_dataset(studio, photos["name"], LOCAL_USER)  # once the pass is over
    assert studio.store.count("datasets") == 0


def test_stop_keeps_the_captions_made_so_far(studio, photos, tiny_captioner):
    stop = threading.Event()
    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=str(tiny_captioner("blip2")),
                                                    mode="short", batch_size=2),
                             stop=stop, watch=lambda _progress: stop.set())
    assert (report.captioned, report.stopped) == (2, True)
    captions = [r["caption"] for r in dataset_images(studio, photos["id"])]
    assert all(captions[:2]) and captions[2:] == ["", ""]
    job = studio.store.get("jobs", report.job_id)
    assert job["status"] == "cancelled" and job["error"] == "Stopped by the user; the captions made so far are kept."
    assert job["result"]["captioned"] == 2
    assert studio.models.key is None


def test_unknown_or_missing_captioners_say_what_to_do(studio, photos, tmp_path):
    with pytest.raises(InvalidInput, match="Unknown captioner"):
        caption_dataset(studio, CaptionRequest(photos["id"], captioner="not a model"))
    with pytest.raises(InvalidInput, match="not a Florence-2 or BLIP-2 model folder"):
        caption_dataset(studio, CaptionRequest(photos["id"], captioner=str(tmp_path)))
    with pytest.raises(InvalidInput, match="Caption mode"):
        caption_dataset(studio, CaptionRequest(photos["id"], captioner="florence2", mode="poem"))
    assert studio.store.count("jobs") == 0
    with pytest.raises(ModelUnavailable, match="florence-community/Florence-2-base is not downloaded"):
        caption_dataset(studio, CaptionRequest(photos["id"], captioner="florence2"))
    job = studio.store.find("jobs")[0]
    assert job["status"] == "failed" and "Florence-2-base" in job["error"]
    assert "cannot be reached (offline: HF_HUB_OFFLINE is set): download it in the Models tab" in job["error"]


def test_catalog_families_resolve_to_their_default_models():
    assert resolve_captioner("florence2").source == "florence-community/Florence-2-base"
    assert resolve_captioner("florence2-large").source == "florence-community/Florence-2-large"
    assert resolve_captioner("blip2").source == "Salesforce/blip2-opt-2.7b"
    assert resolve_captioner("someone/my-blip-captioner").family == "blip2"


def test_on_zerogpu_a_pass_is_split_into_calls_that_fit_and_reports_what_the_worker_did(
        on_zerogpu, studio, photos, tiny_captioner, monkeypatch):
    import importlib

    from masuka.zerogpu import CAPTION_LOAD_SECONDS, CAPTION_SECONDS

    captioning = importlib.import_module("masuka.datasets.captioning")  # decorated for ZeroGPU
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", str(CAPTION_LOAD_SECONDS + 3 * CAPTION_SECONDS))  # 3 images a call
    seen = []
    report = captioning.caption_dataset(studio, captioning.CaptionRequest(
        photos["id"], captioner=str(tiny_captioner("florence2")), mode="short", batch_size=2), watch=seen.append)
    assert [call["duration"] for call in on_zerogpu.calls] == [CAPTION_LOAD_SECONDS + 3 * CAPTION_SECONDS,
                                                               CAPTION_LOAD_SECONDS + CAPTION_SECONDS]
    assert (report.total, report.captioned, report.kept, len(report.captions)) == (4, 4, 0, 4)
    assert [p.step for p in seen if p.total == 4] == [1, 2, 3, 4]  # replayed in the app after each call
    assert all(row["caption"] for row in dataset_images(studio, photos["id"]))
    assert studio.store.get("jobs", report.job_id)["step"] == 4


def test_on_zerogpu_a_stop_ends_the_pass_between_calls_and_inside_one_keeps_the_counts(
        on_zerogpu, studio, photos, tiny_captioner, monkeypatch):
    import importlib

    from masuka import jobs
    from masuka.zerogpu import CAPTION_LOAD_SECONDS, CAPTION_SECONDS

    captioning = importlib.import_module("masuka.datasets.captioning")
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", str(CAPTION_LOAD_SECONDS + CAPTION_SECONDS))  # one image a call
    model = str(tiny_captioner("florence2"))
    stop = threading.Event()
    report = captioning.caption_dataset(studio, captioning.CaptionRequest(photos["id"], captioner=model,
                                                                          mode="short"),
                                        stop=stop, watch=lambda _progress: stop.set())
    assert (report.captioned, report.stopped, len(on_zerogpu.calls)) == (1, True, 1)  # no call after the Stop
    assert studio.store.get("jobs", report.job_id)["status"] == "cancelled"

    written = captioning.set_caption

    def then_stop(studio_, image_id, *args, **kwargs):  # the job's stop flag, seen inside the GPU call
        done = written(studio_, image_id, *args, **kwargs)
        jobs.request_stop(studio_.store, studio_.store.find("jobs", "kind = 'caption'", order_by="id desc")[0]["id"])
        return done

    monkeypatch.setattr(captioning, "set_caption", then_stop)
    monkeypatch.setenv("MASUKA_ZEROGPU_MAX_S", str(CAPTION_LOAD_SECONDS + 4 * CAPTION_SECONDS))  # one call
    again = captioning.caption_dataset(studio, captioning.CaptionRequest(photos["id"], captioner=model, mode="short",
                                                                         overwrite=True, batch_size=1))
    assert (again.captioned, again.stopped) == (1, True)  # what the worker wrote is reported


def test_a_pass_holds_its_captioner_repo_from_its_download_to_its_end(studio, photos, tiny_captioner, monkeypatch,
                                                                    tmp_path):
    from masuka.models.manage import delete_model
    from tests.models.in_use import cached_repo, deletion_tried_in

    repo = cached_repo(monkeypatch, tmp_path / "hf-cache", tiny_captioner("florence2"), "acme/tiny-florence2")
    refusals = deletion_tried_in(monkeypatch, studio, repo, studio.gpu)
    report = caption_dataset(studio, CaptionRequest(photos["id"], captioner=repo, mode="short"))
    assert report.captioned == 4 and len(refusals) == 2
    assert delete_model(studio, repo) > 0  # once the pass is over


def test_a_captioner_not_downloaded_is_refused_offline_before_the_gpu(studio, photos, monkeypatch, tmp_path):
    from tests.models.in_use import use_cache

    use_cache(monkeypatch, tmp_path / "empty-hf-cache")
    slots = []
    monkeypatch.setattr(studio.gpu, "hold", lambda *args, **kwargs: slots.append(args))
    with pytest.raises(ModelUnavailable, match="acme/tiny-florence2 is not downloaded .* cannot be reached"):
        caption_dataset(studio, CaptionRequest(photos["id"], captioner="acme/tiny-florence2"))
    assert slots == []
