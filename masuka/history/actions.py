"""What can be done with history entries: reuse their parameters, delete them with their files, export them."""

from __future__ import annotations

import json
import shutil
import zipfile
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from masuka.disk import still_used
from masuka.errors import InvalidInput
from masuka.history.browse import PRIVATE_COLUMNS, entry
from masuka.image.compare import unfinished_using
from masuka.image.control import FORM_PICTURES as CONTROL_PICTURES
from masuka.image.generate import ImageRequest, resolve_lora_path
from masuka.image.metadata import format_weight
from masuka.image.reference import FORM_PICTURES as REFERENCE_PICTURES
from masuka.jobs import JobRow
from masuka.jobs import lookup as jobs_lookup
from masuka.loras.library import loras_in
from masuka.loras.usage import while_unused
from masuka.store import UNFINISHED
from masuka.studio import Studio
from masuka.training.runs import still_runs_at
from masuka.users import output_dir
from masuka.video.jobs import clip_dir
from masuka.video.request import INPUT_FILES, fallback_parts, sound_choice

#: row column -> form field name (the fields a tab registers with ``UIContext.register_form``, e.g. ``negative``)
FORM_FIELDS = {"prompt": "prompt", "negative_prompt": "negative", "model": "model", "provider": "provider",
               "steps": "steps", "guidance": "guidance", "width": "width", "height": "height", "seed": "seed"}
MAX_EXPORT = 1000
#: an image row's input files (copied into the data dir when it was made)
IMAGE_INPUT_FILES = ("init_image", "mask")
#: per kind, the file fields of the form that remakes it (emptied when the entry lacks them)
FORM_FILES = {"image": (*IMAGE_INPUT_FILES, *CONTROL_PICTURES, *REFERENCE_PICTURES), "video": INPUT_FILES}
#: the key of Reuse's fields that names the entry's input files deleted since (emptied in the form), when any
GONE_FILES = "gone_files"


def reuse_parameters(studio: Studio, user: str, admin: bool, key: str) -> tuple[str, dict]:
    """``(kind, fields)`` that refill the form which made the entry: the row's columns, then its params."""
    row = entry(studio, user, admin, key)
    if row["table"] != "generations":
        row = _as_video_entry(row)
    params = row.get("params") or {}
    fields = {name: row[column] for column, name in FORM_FIELDS.items() if row.get(column) not in (None, "")}
    fields["loras"] = [_lora_field(studio, user, x) for x in row.get("loras") or [] if isinstance(x, dict)]
    for name, value in params.items():
        fields.setdefault(name, value)
    gone = []
    for name in (name for files in FORM_FILES.values() for name in files):  # files it can show
        if isinstance(fields.get(name), str) and fields[name]:
            path = studio.config.absolute(fields[name])
            if not path.is_file():  # deleted since: the form gets none (a path it cannot show is refused)
                gone.append(name)
            fields[name] = str(path) if path.is_file() else None
    if row["kind"] == "image":
        fields.update(_image_switches(row.get("negative_prompt"), params))
        if row.get("seed") is not None:  # this image, made alone from its own seed (not its batch again)
            fields["batch"] = 1
    elif row["kind"] == "video":
        fields.setdefault("negative", "")
        fields["sound"] = sound_choice(fields.get("audio"))
        fields["fallback"] = _video_fallback(studio, row, fields)
    if row["kind"] in FORM_FILES:  # every field, so that nothing of the entry reused before stays in the form
        fields.update({name: None for name in FORM_FILES[row["kind"]] if name not in fields})
        fields.setdefault("references", [])
    if isinstance(fields.get("references"), list):  # an edit's images, a video's reference images
        kept = [path for path in map(studio.config.absolute, fields["references"]) if path.is_file()]
        if len(kept) < len(fields["references"]):
            gone.append("references")
        fields["references"] = [str(path) for path in kept]
    if gone:
        fields[GONE_FILES] = gone
    if isinstance(fields.get("outpaint"), list):  # as the form and the CLI write it
        fields["outpaint"] = ",".join(str(side) for side in fields["outpaint"])
    return row["kind"], fields


def gone_files_note(fields: dict) -> str:
    """What Reuse says of the entry's input files deleted since (:data:`GONE_FILES`): left empty in the form."""
    gone = fields.get(GONE_FILES) or []
    if not gone:
        return ""
    names = ", ".join(name.replace("_", " ") for name in gone)
    return (f" Its {names} {'is' if len(gone) == 1 and gone[0] != 'references' else 'are'} no longer there (deleted "
            "since): left empty in the form.")


def _video_fallback(studio: Studio, row: dict, fields: dict) -> list[str]:
    """The Video form's Fallback for a video entry, always set (``[]`` for none), so no fallback of the entry reused
    before stays: a video job's own fallbacks; for a made video, those of its job that come after the provider that
    made it (none when its job is gone, or it was made by its job's last choice)."""
    if row["table"] == "jobs":
        return [str(spec) for spec in fields.get("fallback") or []]
    job = jobs_lookup(studio.store, row["job_id"]) if row.get("job_id") else None
    request = job.params.get("request") if job is not None else None
    if not isinstance(request, dict):
        return []
    specs = [str(spec) for spec in request.get("fallback") or []]
    if (request.get("provider"), request.get("model")) == (row.get("provider"), row.get("model")):
        return specs
    for index, spec in enumerate(specs):  # made by a fallback: the ones after it
        name, model = fallback_parts(spec)
        if name == row.get("provider") and model in ("", row.get("model")):
            return [later for later in specs[index + 1:] if fallback_parts(later)[0] != name]
    return []


def _as_video_entry(row: dict) -> dict:
    """A video job's entry (failed, cancelled, interrupted or made) as the History entry of the video it asks for:
    its stored request (``params.request``: the provider and model chosen, the fallbacks, the input files) in
    the columns and params a made video's entry has, so Reuse fills the Video form to send it again. Any other
    job (training, a download) has no form to fill: refused saying so."""
    request = (row.get("params") or {}).get("request") if isinstance(row.get("params"), dict) else None
    if row.get("kind") != "video" or not isinstance(request, dict):
        raise InvalidInput(f"Entry {row['key']} is a {row['kind']} job: Reuse fills the Image or Video form, so "
                           "only images, videos and video jobs can be made again.")
    made = ("prompt", "negative_prompt", "provider", "model", "steps", "seed")
    params = {name: value for name, value in request.items()
              if name not in (*made, "owner", "aspect", "fps") and value not in (None, [], "")}
    size, seconds = row["params"].get("size"), row["params"].get("seconds")
    params.update({name: value for name, value in (("size", size), ("seconds", seconds)) if value})
    return {**row, **{name: request.get(name) for name in made}, "loras": None, "params": params}


def _image_switches(negative: str | None, params: dict) -> dict[str, Any]:
    """The Image form's text and switches an entry may not have stored (a default sampler, an aid left off).

    The prompt reused is the one the image was made from (the rewrite when the prompt optimizer ran), so Optimize
    prompt is off: on, it would rewrite the rewrite.
    """
    face = params.get("face_detail")
    return {"negative": negative or "", "sampler": params.get("sampler") or "", "optimize_prompt": False,
            "safety_check": "safety" in params, "face_detail": isinstance(face, dict),
            "face_strength": face.get("strength", ImageRequest.face_strength) if isinstance(face, dict)
            else ImageRequest.face_strength}


def _lora_field(studio: Studio, user: str, lora: dict) -> str:
    """A LoRA of the entry as the form's LoRA field takes it: ``name:weight``, or the file's path (relative to the
    data dir) when the name would find another file or none (a run's checkpoint, a file given by its path)."""
    ref, stored = lora["name"], lora.get("path")
    if stored and (path := studio.config.absolute(stored)).is_file():
        try:
            same = resolve_lora_path(studio, ref, user, False).resolve() == path.resolve()
        except InvalidInput:  # not in the library
            same = False
        ref = ref if same else studio.config.relative(path)
    return f"{ref}:{format_weight(lora['weight'])}"


def delete_entries(studio: Studio, user: str, admin: bool, keys: list[str]) -> str:
    """Delete entries and their files; unfinished jobs are refused. Returns what was done (an entry named twice,
    as ``g4 g4``, is deleted once).

    An entry's input pictures (the copies in ``inputs/`` of an img2img, inpaint, edit or upscale) go with it
    unless another entry or a queued job still uses them; a chained video's clips go with the last entry of its
    job (the job or the video it made). A training run goes with its whole folder (checkpoints,
    samples, model card, its LoRAs), whose LoRAs leave the library; refused while unfinished work uses it, and
    while its job may still run at a remote service (an interrupted remote run: deleted, nothing could follow or
    cancel that job).
    """
    found = (entry(studio, user, admin, key) for key in keys)
    rows = list({(row["table"], row["id"]): row for row in found}.values())
    busy = [row["key"] for row in rows if row["status"] in UNFINISHED]
    if busy:
        raise InvalidInput(f"{', '.join(busy)} still running or queued: stop it before deleting.")
    for row in rows:
        if row["table"] == "jobs" and (service := still_runs_at(JobRow.from_row(row))):
            raise InvalidInput(f"{row['key']}: Stop it first: its job still runs at {service} (Stop cancels it "
                               "there; deleted, the run could no longer follow or cancel it).")
    runs = {row["key"]: folder for row in rows if (folder := _run_folder(studio, row)) is not None}
    libraries = {key: loras_in(studio, folder) for key, folder in runs.items()}
    uses = [(key, folder, [(lora["name"], lora["owner"]) for lora in libraries[key]]) for key, folder in runs.items()]
    # no image request takes a run's LoRA between the check and its removal; other deletions hold nothing
    with while_unused(studio, uses) if uses else nullcontext():
        tests = unfinished_using(studio, {row["id"] for row in rows if row["table"] == "generations"})
        inputs = {path for row in rows for path in _input_files(studio, row)}
        video_jobs = {job for row in rows if (job := _video_job(row)) is not None}
        files = 0
        for row in rows:
            for path in _owned_files(studio, row):
                path.unlink(missing_ok=True)
                files += 1
            if row["table"] == "jobs":
                studio.store.delete_where("job_metrics", "job_id = ?", [row["id"]])
            studio.store.delete(row["table"], row["id"])
        for path in inputs:
            if not still_used(studio.store, path):
                path.unlink(missing_ok=True)
                files += 1
        for job_id in video_jobs:  # a chain's clips go with the last entry of its job (the job or its video)
            if not (studio.store.count("jobs", "id = ?", [job_id]) or
                    studio.store.count("generations", "job_id = ?", [job_id])):
                files += _remove_folder(clip_dir(studio, job_id))
        for key, folder in runs.items():
            for lora in libraries[key]:
                studio.store.delete("loras", lora["id"])
            files += _remove_folder(folder)
    done = f"Deleted {len(rows)} entr{'y' if len(rows) == 1 else 'ies'} and {files} file(s)."
    if names := [lora["name"] for loras in libraries.values() for lora in loras]:
        done += f" LoRA(s) {', '.join(names)} left the LoRA library with the run's folder."
    if tests:
        done += (f" A/B test(s) {', '.join(map(str, tests))} had pairs not judged yet with these images: those "
                 "pairs are skipped now.")
    return done


def _run_folder(studio: Studio, row: dict) -> Path | None:
    """The folder of a training run entry (``runs/run-NNNNN``), when it has one."""
    if row["table"] != "jobs" or row["kind"] != "train":
        return None
    state = row.get("state")
    stored = state.get("run_dir") if isinstance(state, dict) else None
    if not isinstance(stored, str) or not stored:
        return None
    folder, runs = studio.config.absolute(stored), studio.config.runs_dir.resolve()
    inside = folder.resolve().is_relative_to(runs) and folder.resolve() != runs
    return folder if inside and folder.is_dir() else None


def _video_job(row: dict) -> int | None:
    """The video job an entry belongs to (a video job entry, or the video it made), when it is one."""
    if row.get("kind") != "video":
        return None
    return row["id"] if row["table"] == "jobs" else row.get("job_id")


def _remove_folder(folder: Path) -> int:
    """Remove ``folder`` with everything in it, when it is there; returns how many files it held."""
    if not folder.is_dir():
        return 0
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    shutil.rmtree(folder)
    return files


def _input_files(studio: Studio, row: dict) -> set[Path]:
    """The pictures an entry's params point at in an ``inputs`` folder of the outputs (copies kept for it)."""
    outputs = studio.config.outputs_dir.resolve()
    found: set[Path] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and PurePath(value).parent.name == "inputs":
            path = studio.config.absolute(value)
            if path.resolve().is_relative_to(outputs) and path.is_file():
                found.add(path)

    walk(row.get("params"))
    return found


def _owned_files(studio: Studio, row: dict) -> list[Path]:
    """Files of an entry that go with it: its output, and for a job the files it names under runs/."""
    paths = [studio.config.absolute(row["output_path"])] if row.get("output_path") else []
    if row["table"] == "jobs" and isinstance(row.get("result"), dict):
        for value in row["result"].values():
            if isinstance(value, str) and value:
                candidate = studio.config.absolute(value)
                if candidate.resolve().is_relative_to(studio.config.runs_dir.resolve()) and candidate.is_file():
                    paths.append(candidate)
    return [p for p in paths if p.resolve().is_relative_to(studio.config.data_dir.resolve())]


def export_zip(studio: Studio, user: str, admin: bool, keys: list[str]) -> Path:
    """A zip of the entries' files with ``metadata.jsonl`` (one line per entry, every parameter)."""
    keys = [k for k in dict.fromkeys(keys) if k]
    if not keys:
        raise InvalidInput("Select at least one entry to export.")
    if len(keys) > MAX_EXPORT:
        raise InvalidInput(f"Export at most {MAX_EXPORT} entries at a time.")
    rows = [entry(studio, user, admin, key) for key in keys]
    folder = output_dir(studio.config, user) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"masuka-history-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}.zip"
    lines = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            record = {k: v for k, v in row.items() if k not in {"file", "table", "log", "metrics", *PRIVATE_COLUMNS}}
            record["file_name"] = None
            if row["file"] is not None:
                record["file_name"] = f"{row['key']}-{row['file'].name}"
                archive.write(row["file"], record["file_name"])
            lines.append(json.dumps(record, ensure_ascii=False, default=str))
        archive.writestr("metadata.jsonl", "\n".join(lines) + "\n")
    return path
