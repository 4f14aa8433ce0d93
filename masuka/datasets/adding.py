"""Adding images to a dataset: collect the files, ingest them on every core, refuse duplicates, record rows.

Every file handed over ends up either added or listed with the reason it was refused; a bad file never
stops the others. A duplicate's caption goes to the image it repeats when that has none, else its refusal says
it was not used. A full disk stops them all, with one :class:`masuka.errors.DiskFull`.

Files are written in this add's own pending folders (:mod:`masuka.datasets.pending`) and each gets its place and
name right after the transaction that records its row commits, so an add killed part-way leaves nothing under a
kept-looking name: ``masuka.disk.clean_leftovers`` moves a file whose row was recorded to its place and removes
the others, once the folder is an hour old. An add cut off in between (Stop, Ctrl-C, an error) does the same on
its way out; an image deleted between its row and its moves leaves no file behind, a dataset deleted there is
:class:`NotFound`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from masuka.datasets.dedupe import DuplicateIndex, Kept
from masuka.datasets.ingest import Prepared, originals_first, try_ingest
from masuka.datasets.library import dataset_dir, ensure_exists, find_dataset, set_caption, update_dataset
from masuka.datasets.pending import PENDING, kept, recorded, settle
from masuka.datasets.preprocess import PrepOptions
from masuka.datasets.sources import Candidate, Refusal, Refusals, ZipLimits, collect
from masuka.errors import InvalidInput, NotFound
from masuka.store import now
from masuka.studio import Studio

Progress = Callable[[int, int, str], None]  # (files done, files in all, last file name)
ADDING = "while images were being added: none of them were kept"


@dataclass
class AddReport:
    dataset_id: int
    added: list[dict] = field(default_factory=list)
    rejected: Refusals = field(default_factory=Refusals)
    notes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset_id, "added": len(self.added),
                "rejected": [r.to_dict() for r in self.rejected], "notes": self.notes}


def workers() -> int:
    """Threads for ingest: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_images(studio: Studio, ref: str | int, owner: str, sources: Sequence[str | Path], *, admin: bool = False,
               allow_folders: bool = False, on_progress: Progress | None = None,
               threads: int | None = None) -> AddReport:
    """Ingest ``sources`` (image files, zips, and with ``allow_folders`` folders) into a dataset. When the dataset
    is deleted meanwhile, nothing more is recorded for it, its files go and :class:`NotFound` says so."""
    dataset = find_dataset(studio, ref, owner, admin)
    config = studio.config
    if len(sources) > config.max_files:
        raise InvalidInput(f"{len(sources):,} files at once is more than {config.max_files:,}, the most one request "
                           "may add (MASUKA_MAX_FILES): add them in parts.")
    options = PrepOptions.from_dict(dataset["options"])
    folder = dataset_dir(studio, dataset["id"])
    originals, processed = folder / "originals", folder / "processed"
    token = uuid.uuid4().hex[:8]
    pending = originals / f"{PENDING}{token}", processed / f"{PENDING}{token}"  # moved out once recorded
    staging = config.tmp_dir / f"staging-{uuid.uuid4().hex[:8]}"  # emptied by clean-tmp when a kill leaves it
    report = AddReport(dataset["id"])
    known = _Known(DuplicateIndex(options.near_distance))
    known.catch_up(studio, dataset["id"])
    try:
        collected = collect([Path(s) for s in sources], staging, allow_folders,
                            ZipLimits(config.max_files, config.max_unzipped_mb * 2**20))
        report.rejected += collected.refused
        for path in pending:  # made once the zips are unpacked: a slow unpack never makes them look stale
            path.mkdir(parents=True, exist_ok=True)
        candidates = originals_first(collected.candidates)
        total = len(candidates)
        with ThreadPoolExecutor(max_workers=threads or workers(), thread_name_prefix="ingest") as pool:
            futures = [pool.submit(try_ingest, c, options, pending[0], pending[1], _base(c.name))
                       for c in candidates]
            handled = 0
            try:
                for candidate, future in zip(candidates, futures):
                    result = future.result()
                    handled += 1  # its files are no more _discard's: kept, or settled on the way out
                    if isinstance(result, str):
                        report.rejected.append(Refusal(candidate.name, result))
                    else:
                        _keep(studio, dataset, options, known, result, report)
                    if on_progress:
                        on_progress(handled, total, candidate.name)
            except BaseException:  # a full disk, say: the files prepared and not kept go
                _discard(futures[handled:])
                raise
        if report.added:
            update_dataset(studio, dataset, meanwhile=ADDING)
        else:
            ensure_exists(studio, dataset, ADDING)
    except BaseException:
        if studio.store.get("datasets", dataset["id"]) is None:  # deleted meanwhile: files written since go too
            shutil.rmtree(folder, ignore_errors=True)
        elif report.added:  # cut off part-way (Stop, a full disk): the images kept so far changed it, and its
            # export zips go; the error that cut it off is the one told
            with contextlib.suppress(Exception):
                update_dataset(studio, dataset, meanwhile=ADDING)
        raise
    finally:  # cut off between a row and its moves (Ctrl-C, an error): the recorded files take their place first
        for path in pending:
            settle(studio, path)
        for path in (staging, *pending):  # what is left in ``pending`` was not recorded
            shutil.rmtree(path, ignore_errors=True)
    return report


def _discard(futures: list[Future[Prepared | str]]) -> None:
    """Cancel the ingests not started yet and remove the files of the others."""
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled() and future.exception() is None and isinstance(prepared := future.result(), Prepared):
            prepared.discard()


@dataclass
class _Known:
    """The dataset's images a new one is checked against: those recorded up to row id ``through`` (this add's
    own included), so images kept meanwhile by another add (another tab, the CLI) are caught up on."""

    index: DuplicateIndex
    through: int = 0

    def catch_up(self, studio: Studio, dataset_id: int) -> list[dict]:
        """Index the dataset's images recorded since the last catch-up; returns their rows."""
        rows = studio.store.find("dataset_images", "dataset_id = ? and id > ? and augment_of is null",
                                 [dataset_id, self.through], order_by="id")
        self.index.add_rows(rows)
        self.through = rows[-1]["id"] if rows else self.through
        return rows


def _base(name: str) -> str:
    """A file name stem that is safe, readable and unique within the dataset."""
    stem = re.sub(r"[^\w\-]+", "_", PurePosixPath(name).stem).strip("_")[:48] or "image"
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def _keep(studio: Studio, dataset: dict, options: PrepOptions, known: _Known, item: Prepared,
          report: AddReport) -> None:
    name = item.candidate.name
    relative = studio.config.relative
    caption = item.candidate.caption or ""
    row = {"dataset_id": dataset["id"], "file_name": item.processed.name,
           "original_path": relative(kept(item.original)), "processed_path": relative(kept(item.processed)),
           "caption": caption, "width": item.size[0],
           "height": item.size[1], "original_width": item.original_size[0],
           "original_height": item.original_size[1], "sha256": item.sha256, "phash": item.phash,
           "source_name": name, "caption_source": "file" if caption else None, "created_at": now()}
    if options.dedupe and _refused(studio, dataset, known.index, item, report):
        return
    with studio.store.transaction():  # no other add records an image until this one is checked and recorded
        ensure_exists(studio, dataset, ADDING)  # deleted meanwhile: this file goes with those not kept yet
        if options.dedupe:  # against the images kept meanwhile by another add (another tab, the CLI)
            meanwhile = DuplicateIndex(options.near_distance)
            meanwhile.add_rows(known.catch_up(studio, dataset["id"]))
            if _refused(studio, dataset, meanwhile, item, report):
                return
        image_id = known.through = studio.store.insert("dataset_images", row)
        if item.flipped is not None:
            studio.store.insert("dataset_images", {**row, "file_name": item.flipped.name, "augment_of": image_id,
                                                   "processed_path": relative(kept(item.flipped)), "phash": None,
                                                   "source_name": f"{name} (flipped)"})
    moved = []
    for path in (item.original, item.processed, item.flipped):  # recorded: each file takes its place
        if path is not None:
            try:
                os.replace(path, kept(path))
            except FileNotFoundError:  # the dataset was deleted meanwhile (its folder with it)
                ensure_exists(studio, dataset, ADDING)
                raise
            moved.append(kept(path))
    for path in moved:  # the image deleted meanwhile (its row goes before its files): its files go too
        if not recorded(studio, path):
            path.unlink(missing_ok=True)
    known.index.add(Kept(name, image_id), item.sha256, item.phash)
    report.added.append({"file": name, "id": image_id})
    report.notes += [{"file": name, "note": note} for note in item.notes]


def _refused(studio: Studio, dataset: dict, index: DuplicateIndex, item: Prepared, report: AddReport) -> bool:
    """Refuse ``item`` (its files go) when it duplicates an image of ``index``; its caption is not dropped unsaid
    (:func:`_hand_caption_over`)."""
    duplicate = index.duplicate(item.sha256, item.phash, item.mirrored)
    if duplicate is None:
        return False
    item.discard()
    reason = duplicate.reason
    if item.candidate.caption:
        reason += _hand_caption_over(studio, dataset, duplicate.of, item.candidate, report)
    report.rejected.append(Refusal(item.candidate.name, reason))
    return True


def _hand_caption_over(studio: Studio, dataset: dict, kept: Kept, duplicate: Candidate, report: AddReport) -> str:
    """Give the caption of a refused ``duplicate`` to the ``kept`` image it repeats when that has none (a note on
    it says so); returns what the refusal adds: where the caption went, that it was not used (``kept`` has its
    own), or nothing when ``kept`` has the same caption."""
    caption, origin = duplicate.caption or "", duplicate.caption_file
    row = studio.store.get("dataset_images", kept.image_id)
    if row is not None and (row["caption"] or "").strip() == caption:
        return ""
    with contextlib.suppress(NotFound):  # the kept image deleted meanwhile
        if row is not None and set_caption(studio, kept.image_id, caption, dataset["owner"], source="file",
                                           expected=""):
            report.notes.append({"file": kept.name, "note": f"caption taken from {origin}, whose image "
                                                            f"{duplicate.name} was refused as its duplicate"})
            return f"; its caption from {origin} now captions {kept.name}, which had none"
    return f"; its caption from {origin} was not used ({kept.name} has a caption of its own)"
