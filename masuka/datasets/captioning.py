"""A caption pass over a dataset: batched, on the GPU runner, a ``caption`` job run through the job runner
(:meth:`masuka.jobs.JobRunner.run_here`: the request waits for it), stoppable.

Captions are written batch by batch, so stopping keeps every caption made so far. Images that already have a
caption keep it unless ``overwrite`` is set; images deleted while the pass runs are skipped and counted. A
template typed for the pass becomes the dataset's once the pass has written a caption with it (a pass refused, or
one that captions nothing, leaves the dataset as it was). The captioner is unloaded afterwards, leaving the memory
to training and generation.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

from PIL import Image

from masuka import jobs
from masuka.access import usable_model
from masuka.datasets.caption_template import apply_template, check_template
from masuka.datasets.captioners import DEFAULT_FAMILY, MODES, CaptionerSpec, load_captioner, resolve_captioner
from masuka.datasets.library import HOLDS, dataset_images, ensure_exists, find_dataset, set_caption, update_dataset
from masuka.errors import Cancelled, InvalidInput, NotFound
from masuka.gpu import zerogpu
from masuka.jobs import JobContext, Progress, Watch
from masuka.models.manage import using_models
from masuka.services import HUGGINGFACE
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.zerogpu import caption_chunks, request_seconds

KIND = "caption"
MAX_BATCH = 64
KEPT_NOTE = "kept the caption saved while the pass ran"
REMOVED_NOTE = "removed from the dataset while the pass ran"
KEPT = "the captions made so far are kept"


@dataclass
class CaptionRequest:
    dataset: str | int
    owner: str = LOCAL_USER
    captioner: str = DEFAULT_FAMILY
    mode: str = "detailed"
    template: str | None = None
    overwrite: bool = False
    batch_size: int = 8
    admin: bool = False


@dataclass
class CaptionReport:
    job_id: int
    total: int
    captioned: int = 0
    kept: int = 0
    stopped: bool = False
    captions: dict[int, str] = field(default_factory=dict)
    done: int = 0  # of the images to caption, those handled (captioned, kept as saved meanwhile, or removed)
    removed: int = 0  # of the images to caption, those deleted from the dataset while the pass ran

    def to_dict(self) -> dict:
        return {"job": self.job_id, "total": self.total, "captioned": self.captioned, "kept": self.kept,
                "removed": self.removed, "stopped": self.stopped}

    def record(self, row: dict, outcome: str, caption: str, ctx: JobContext) -> None:
        """Count one image of the to-do list as ``outcome`` (``captioned``, ``kept`` or ``removed``) and tell
        ``ctx``'s watcher (the caption, or what happened instead)."""
        self.done += 1
        if outcome == "captioned":
            self.captioned += 1
            self.captions[row["id"]] = caption
        elif outcome == "kept":
            self.kept += 1
            caption = KEPT_NOTE
        else:
            self.removed += 1
            caption = REMOVED_NOTE
        ctx.tell(Progress(self.done, self.total, message=row["source_name"], detail=caption))


def caption_dataset(studio: Studio, request: CaptionRequest, *, watch: Watch | None = None,
                    stop: threading.Event | None = None, gpu_timeout: float | None = None) -> CaptionReport:
    """Caption the dataset's images as a ``caption`` job run here, through the job runner; returns what was done
    (``stopped`` when ``stop`` or the job's stop flag ended it early). The captioner is downloaded first when
    needed, outside the GPU slot. ``watch`` sees the download's progress, then one report per image captioned
    (``message`` its file name, ``detail`` its final caption, :data:`KEPT_NOTE` for one saved meanwhile or
    :data:`REMOVED_NOTE` for one deleted meanwhile)."""
    dataset = find_dataset(studio, request.dataset, request.owner, request.admin)
    spec = check_captioner(studio, request.owner, request.captioner)
    if request.mode not in MODES:
        raise InvalidInput(f"Caption mode must be one of {', '.join(MODES)} (got {request.mode!r}).")
    if not 1 <= int(request.batch_size) <= MAX_BATCH:
        raise InvalidInput(f"Batch size must be between 1 and {MAX_BATCH}.")
    template = check_template(request.template or dataset["template"])
    rows = dataset_images(studio, dataset["id"])
    if not rows:
        raise InvalidInput(f"Dataset {dataset['name']!r} has no images to caption: add some first.")
    todo = [row for row in rows if request.overwrite or not (row["caption"] or "").strip()]
    with studio.store.transaction():  # from here on, deleting the dataset is refused until the pass ends
        ensure_exists(studio, dataset)
        job_id = studio.runner().create(KIND, request.owner, title=f"Caption {dataset['name']} with "
                                        f"{spec.name or spec.id}", model=spec.source, total=len(todo), step=0,
                                        progress=0.0, state={HOLDS: dataset["id"]},
                                        params={"dataset": dataset["id"], "captioner": spec.id,
                                                "mode": request.mode, "template": template,
                                                "overwrite": request.overwrite, "batch_size": request.batch_size})
    report = CaptionReport(job_id, len(todo), kept=len(rows) - len(todo))
    ctx = JobContext(studio.store, job_id, interrupt=stop, watch=watch)

    def work(ctx: JobContext) -> None:
        ctx.progress(result=report.to_dict())
        if not todo:
            return
        with using_models(studio, request.owner, spec.source, watch=ctx.watch), \
                studio.hold_gpu(f"captioning {dataset['name']} for {request.owner}", request.owner,
                                timeout=gpu_timeout):
            try:
                for chunk in caption_chunks(todo):  # one GPU call each on ZeroGPU, where calls are short
                    ctx.check_stop(kept=KEPT)
                    vars(report).update(vars(_run(studio, spec, dataset, template, chunk, request, report, ctx)))
                    if report.stopped:
                        raise Cancelled(KEPT)
            finally:
                studio.models.release()

    try:
        studio.runner().run_here(job_id, work, ctx)
    except Cancelled:
        report.stopped = True
    finally:
        _keep_template(studio, dataset, template, report)
    return report


def _keep_template(studio: Studio, dataset: dict, template: str, report: CaptionReport) -> None:
    """Make ``template`` the dataset's once the pass wrote a caption with it (stopped or failed later on too: the
    captions written follow it), not before: a pass that captions nothing changes nothing."""
    if report.captioned and template != dataset["template"]:
        with contextlib.suppress(NotFound):  # deleted once the pass ended: nothing to keep it in
            update_dataset(studio, dataset, template=template)


def check_captioner(studio: Studio, owner: str, choice: str) -> CaptionerSpec:
    """The captioner ``choice`` names (a catalog family, a Hub repo or a model folder), refused unless ``owner``
    may use it."""
    return resolve_captioner(usable_model(studio, owner, choice, marker="config.json"))


def _estimate_seconds(studio: Studio, spec: CaptionerSpec, dataset: dict, template: str, todo: list, *args) -> int:
    """ZeroGPU duration of this pass (refused there when one GPU call may not take that long)."""
    return request_seconds("caption", images=len(todo))


@zerogpu(duration=_estimate_seconds)
def _run(studio: Studio, spec: CaptionerSpec, dataset: dict, template: str, todo: list[dict],
         request: CaptionRequest, report: CaptionReport, ctx: JobContext) -> CaptionReport:
    """Caption ``todo`` and return ``report`` brought up to date (on ZeroGPU the worker's copy of it),
    ``stopped`` when a stop ended it early."""
    captioner = load_captioner(studio.models, spec, studio.keys.optional(HUGGINGFACE))
    size = int(request.batch_size)
    try:
        for start in range(0, len(todo), size):
            ctx.check_stop(kept=KEPT)
            batch, images = [], []
            for row in todo[start:start + size]:
                try:
                    with Image.open(row["file"]) as image:
                        images.append(image.convert("RGB"))
                    batch.append(row)
                except FileNotFoundError:
                    if not _gone(studio, row):
                        raise
                    report.record(row, "removed", "", ctx)
            for row, text in zip(batch, captioner.caption(images, request.mode) if images else []):
                final = apply_template(template, dataset["trigger"] or "", text)
                report.record(row, _save(studio, row, final, dataset["owner"], spec.id, request.overwrite), final,
                              ctx)
            jobs.progress(ctx.store, ctx.job_id, report.done, report.total, result=report.to_dict())  # per batch
    except Cancelled:  # the report goes back with what was written (on ZeroGPU it is the worker's copy)
        report.stopped = True
    return report


def _save(studio: Studio, row: dict, caption: str, owner: str, source: str, replace: bool) -> str:
    """Write one image's caption; returns ``captioned``, ``kept`` (a caption the user saved since the pass began
    is theirs to keep unless ``replace``) or ``removed`` (the image was deleted meanwhile)."""
    try:
        written = set_caption(studio, row["id"], caption, owner, admin=True, source=source,
                              expected=None if replace else "")
    except NotFound:
        if not _gone(studio, row):
            raise
        return "removed"
    return "captioned" if written else "removed" if _gone(studio, row) else "kept"


def _gone(studio: Studio, row: dict) -> bool:
    """Whether the dataset image ``row`` was deleted since the pass listed it."""
    return studio.store.get("dataset_images", row["id"]) is None
