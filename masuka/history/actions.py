"""What can be done with history entries: reuse their parameters, delete them with their files, export them."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.history.browse import entry
from masuka.image.compare import unfinished_using
from masuka.image.control import FORM_PICTURES as CONTROL_PICTURES
from masuka.image.reference import FORM_PICTURES as REFERENCE_PICTURES
from masuka.store import UNFINISHED
from masuka.studio import Studio
from masuka.users import output_dir
from masuka.video.request import INPUT_FILES, sound_choice

#: row column -> form field name (the fields a tab registers with ``UIContext.register_form``, e.g. ``negative``)
FORM_FIELDS = {"prompt": "prompt", "negative_prompt": "negative", "model": "model", "provider": "provider",
               "steps": "steps", "guidance": "guidance", "width": "width", "height": "height", "seed": "seed"}
MAX_EXPORT = 1000
#: an image row's input files (copied into the data dir when it was made)
IMAGE_INPUT_FILES = ("init_image", "mask")


def reuse_parameters(studio: Studio, user: str, admin: bool, key: str) -> tuple[str, dict]:
    """``(kind, fields)`` that refill the form which made the entry: the row's columns, then its params."""
    row = entry(studio, user, admin, key)
    if row["table"] != "generations":
        raise InvalidInput(f"Entry {key} is a {row['kind']} job: only images and videos can be made again.")
    fields = {name: row[column] for column, name in FORM_FIELDS.items() if row.get(column) not in (None, "")}
    fields["loras"] = [f"{x['name']}:{x['weight']:g}" for x in row.get("loras") or [] if isinstance(x, dict)]
    for name, value in (row.get("params") or {}).items():
        fields.setdefault(name, value)
    for name in (*INPUT_FILES, *IMAGE_INPUT_FILES, *CONTROL_PICTURES, *REFERENCE_PICTURES):  # files it can show
        if isinstance(fields.get(name), str) and (path := studio.config.absolute(fields[name])).is_file():
            fields[name] = str(path)
    if row["kind"] == "image":  # an image made without them empties the form's control and reference pictures
        fields.update({name: None for name in (*CONTROL_PICTURES, *REFERENCE_PICTURES) if name not in fields})
    if isinstance(fields.get("references"), list):  # an edit's images, a video's reference images
        fields["references"] = [str(path) for path in map(studio.config.absolute, fields["references"])
                                if path.is_file()]
    if isinstance(fields.get("outpaint"), list):  # as the form and the CLI write it
        fields["outpaint"] = ",".join(str(side) for side in fields["outpaint"])
    if row["kind"] == "video":
        fields["sound"] = sound_choice(fields.get("audio"))
    return row["kind"], fields


def delete_entries(studio: Studio, user: str, admin: bool, keys: list[str]) -> str:
    """Delete entries and their files; unfinished jobs are refused. Returns what was done (an entry named twice,
    as ``g4 g4``, is deleted once)."""
    found = (entry(studio, user, admin, key) for key in keys)
    rows = list({(row["table"], row["id"]): row for row in found}.values())
    busy = [row["key"] for row in rows if row["status"] in UNFINISHED]
    if busy:
        raise InvalidInput(f"{', '.join(busy)} still running or queued: stop it before deleting.")
    tests = unfinished_using(studio, {row["id"] for row in rows if row["table"] == "generations"})
    files = 0
    for row in rows:
        for path in _owned_files(studio, row):
            path.unlink(missing_ok=True)
            files += 1
        if row["table"] == "jobs":
            studio.store.delete_where("job_metrics", "job_id = ?", [row["id"]])
        studio.store.delete(row["table"], row["id"])
    done = f"Deleted {len(rows)} entr{'y' if len(rows) == 1 else 'ies'} and {files} file(s)."
    if tests:
        done += (f" A/B test(s) {', '.join(map(str, tests))} had pairs not judged yet with these images: those "
                 "pairs are skipped now.")
    return done


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
            record = {k: v for k, v in row.items() if k not in ("file", "table", "pid", "log", "metrics")}
            record["file_name"] = None
            if row["file"] is not None:
                record["file_name"] = f"{row['key']}-{row['file'].name}"
                archive.write(row["file"], record["file_name"])
            lines.append(json.dumps(record, ensure_ascii=False, default=str))
        archive.writestr("metadata.jsonl", "\n".join(lines) + "\n")
    return path
