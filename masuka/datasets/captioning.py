"""A caption pass over a dataset: batched, on the GPU runner, a ``caption`` job run through the job runner
(:meth:`masuka.jobs.JobRunner.run_here`: the request waits for it), stoppable.

Captions are written batch by batch, so stopping keeps every caption made so far. Images that already have a
caption keep it unless ``overwrite`` is set. The captioner is unloaded afterwards, leaving the memory to
training and generation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from PIL import Image

from masuka import jobs
from masuka.access import usable_model
from masuka.datasets.caption_template import apply_template, check_template
from masuka.datasets.captioners import MODES, CaptionerSpec, load_captioner, resolve_captioner
from masuka.datasets.library import dataset_images, find_dataset, set_caption, update_dataset
from masuka.errors import Cancelled, InvalidInput
from masuka.gpu import zerogpu
from masuka.jobs import JobContext, Progress, Watch
from masuka.models.manage import fetch_for_use
from masuka.services import HUGGINGFACE
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.zerogpu import caption_chunks, request_seconds

KIND = "caption"
MAX_BATCH = 64
KEPT_NOTE = "kept the caption saved while the pass ran"
KEPT = "the captions made so far are kept"


@dataclass
class CaptionRequest:
    dataset: str | int
    owner: str = LOCAL_USER
    captioner: str = "florence2"
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
    done: int = 0  # of the images to caption, those handled (captioned, or kept as saved meanwhile)

    def to_dict(self) -> dict:
        return {"job": self.job_id, "total": self.total, "captioned": self.captioned, "kept": self.kept,
                "stopped": self.stopped}


def caption_dataset(studio: Studio, request: CaptionRequest, *, watch: Watch | None = None,
                    stop: threading.Event | None = None, gpu_timeout: float | None = None) -> CaptionReport:
    """Caption the dataset's images as a ``caption`` job run here, through the job runner; returns what was done
    (``stopped`` when ``stop`` or the job's stop flag ended it early). The captioner is downloaded first when
    needed, outside the GPU slot. ``watch`` sees the download's progress, then one report per image captioned
    (``message`` its file name, ``detail`` its final caption, or :data:`KEPT_NOTE` for one saved meanwhile)."""
    dataset = find_dataset(studio, request.dataset, request.owner, request.admin)
    spec = resolve_captioner(usable_model(studio, request.owner, request.captioner, marker="config.json"))
    if request.mode not in MODES:
        raise InvalidInput(f"Caption mode must be one of {', '.join(MODES)} (got {request.mode!r}).")
    if not 1 <= int(request.batch_size) <= MAX_BATCH:
        raise InvalidInput(f"Batch size must be between 1 and {MAX_BATCH}.")
    template = check_template(request.template or dataset["template"])
    if template != dataset["template"]:
        dataset = update_dataset(studio, dataset, template=template)
    rows = dataset_images(studio, dataset["id"])
    if not rows:
        raise InvalidInput(f"Dataset {dataset['name']!r} has no images to caption: add some first.")
    todo = [row for row in rows if request.overwrite or not (row["caption"] or "").strip()]
    job_id = jobs.create(studio.store, KIND, request.owner, title=f"Caption {dataset['name']} with "
                         f"{spec.name or spec.id}", model=spec.source, total=len(todo), step=0, progress=0.0,
                         params={"dataset": dataset["id"], "captioner": spec.id, "mode": request.mode,
                                 "template": template, "overwrite": request.overwrite,
                                 "batch_size": request.batch_size})
    report = CaptionReport(job_id, len(todo), kept=len(rows) - len(todo))
    ctx = JobContext(studio.store, job_id, interrupt=stop, watch=watch)

    def work(ctx: JobContext) -> None:
        ctx.progress(result=report.to_dict())
        if not todo:
            return
        fetch_for_use(studio, request.owner, spec.source, ctx.watch)
        with studio.hold_gpu(f"captioning {dataset['name']} for {request.owner}", request.owner, timeout=gpu_timeout):
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
    return report


def _estimate_seconds(studio: Studio, spec: CaptionerSpec, dataset: dict, template: str, todo: list, *args) -> int:
    """ZeroGPU duration of this pass (refused there when one GPU call may not take that long)."""
    return request_seconds("caption", images=len(todo))


@zerogpu(duration=_estimate_seconds)
def _run(studio: Studio, spec: CaptionerSpec, dataset: dict, template: str, todo: list[dict],
         request: CaptionRequest, report: CaptionReport, ctx: JobContext) -> CaptionReport:
    """Caption ``todo`` and return ``report`` brought up to date (on ZeroGPU the worker's copy of it),
    ``stopped`` when a stop ended it early."""
    captioner = load_captioner(studio.models, spec, studio.keys.get(HUGGINGFACE))
    size = int(request.batch_size)
    try:
        for start in range(0, len(todo), size):
            ctx.check_stop(kept=KEPT)
            batch = todo[start:start + size]
            images = []
            for row in batch:
                with Image.open(row["file"]) as image:
                    images.append(image.convert("RGB"))
            for row, text in zip(batch, captioner.caption(images, request.mode)):
                report.done += 1
                final = apply_template(template, dataset["trigger"] or "", text)
                # a caption the user saved since the pass began is theirs to keep unless ``overwrite``
                if set_caption(studio, row["id"], final, dataset["owner"], admin=True, source=spec.id,
                               replace=request.overwrite):
                    report.captioned += 1
                    report.captions[row["id"]] = final
                else:
                    report.kept += 1
                    final = KEPT_NOTE
                ctx.tell(Progress(report.done, report.total, message=row["source_name"], detail=final))
            jobs.progress(ctx.store, ctx.job_id, report.done, report.total, result=report.to_dict())  # per batch
    except Cancelled:  # the report goes back with what was written (on ZeroGPU it is the worker's copy)
        report.stopped = True
    return report
