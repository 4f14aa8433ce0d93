"""The dataset layouts trainers and the Hub use, both ways.

* ``kohya``: images, each with a same-named one-line ``.txt`` caption (kohya_ss, ai-toolkit, SimpleTuner,
  FluxGym; sd-scripts reads only a caption's first line), in a ``<repeats>_<trigger>`` folder as sd-scripts
  reads repeats from it, next to a ``dataset.toml`` for sd-scripts' ``--dataset_config``
  (``caption_extension = ".txt"``: sd-scripts' default is ``.caption``; aspect-ratio buckets on, as images
  keep their aspect ratio and are never upscaled).
* ``imagefolder``: images plus a ``metadata.jsonl`` with ``file_name`` and ``text`` per line, which
  ``datasets.load_dataset("imagefolder", data_dir=...)`` loads; a ``metadata.csv`` with the same columns is
  read too.

Reading either layout back is part of adding images (see :mod:`masuka.datasets.sources`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from masuka.errors import InvalidInput

METADATA_FILE = "metadata.jsonl"
METADATA_FILES = (METADATA_FILE, "metadata.csv")
KOHYA_CONFIG = "dataset.toml"
DEFAULT_REPEATS = 10
MAX_REPEATS = 1000
FORMATS = ("kohya", "imagefolder")
MAX_CAPTION_CHARS = 4000
#: the largest caption file and metadata file read; larger ones are refused unread (:class:`ReadLimit`)
MAX_CAPTION_FILE_BYTES = 64 * 2**10
MAX_METADATA_BYTES = 2 * 2**20
#: unusable lines of a metadata file named one by one; the others are counted in one more problem
MAX_LINE_PROBLEMS = 20


@dataclass(frozen=True)
class ReadLimit:
    """The most bytes a ``what`` file is read to; a bigger one is refused unread, with ``advice``."""

    what: str
    most: int
    advice: str = ""

    def problem(self, size: int) -> str | None:
        """Why a file of ``size`` bytes is not read, or None when it is within the limit."""
        if size <= self.most:
            return None
        return f"{self.what} too big ({size / 2**10:,.0f} KB, limit {self.most // 2**10:,} KB): not read{self.advice}"


CAPTION_FILE_LIMIT = ReadLimit("caption file", MAX_CAPTION_FILE_BYTES, " (type the caption in the Datasets tab)")
METADATA_LIMIT = ReadLimit("metadata file", MAX_METADATA_BYTES)


def read_caption_file(path: Path) -> str:
    """A caption ``.txt`` (or ``.caption``): UTF-8 with or without a byte-order mark, surrounding whitespace
    removed; :class:`UnicodeDecodeError` when it is not UTF-8 text, :class:`InvalidInput` when it is over
    :data:`MAX_CAPTION_FILE_BYTES`."""
    text = _read_at_most(path, CAPTION_FILE_LIMIT).decode("utf-8-sig")
    return io.StringIO(text, newline=None).read().strip()[:MAX_CAPTION_CHARS]  # line endings as read_text


def read_metadata(path: Path) -> tuple[dict[str, str], list[str]]:
    """``file_name`` → ``text`` (or ``caption``) from a ``metadata.jsonl`` or a ``metadata.csv`` (UTF-8, a
    byte-order mark allowed), and the problems of unusable lines (the first :data:`MAX_LINE_PROBLEMS` named,
    then how many more); :class:`InvalidInput` when the file is over :data:`MAX_METADATA_BYTES`."""
    is_csv = path.suffix.lower() == ".csv"
    data = _read_at_most(path, METADATA_LIMIT).removeprefix(codecs.BOM_UTF8)
    problems = _Problems()
    records = _csv_records(data, problems) if is_csv else _jsonl_records(data, problems)
    texts: dict[str, str] = {}
    for number, record in records:
        file_name, text = record.get("file_name"), record.get("text", record.get("caption")) or ""
        if not isinstance(file_name, str) or not file_name or not isinstance(text, str):
            problems.add(f"line {number} " + ("has no file_name: skipped" if is_csv else
                                              "is not a JSON object with file_name and text: skipped"))
            continue
        texts[file_name] = text.strip()[:MAX_CAPTION_CHARS]
    return texts, problems.listed()


def _read_at_most(path: Path, limit: ReadLimit) -> bytes:
    """The bytes of ``path``; refused (:class:`InvalidInput`) unread when it holds more than ``limit`` allows."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        data = b"" if size > limit.most else file.read(limit.most + 1)  # grown since: still no more is read
    if problem := limit.problem(max(size, len(data))):
        raise InvalidInput(problem)
    return data


@dataclass
class _Problems:
    """The unusable lines of a metadata file: the first :data:`MAX_LINE_PROBLEMS` in words, the rest counted."""

    named: list[str] = field(default_factory=list)
    more: int = 0

    def add(self, problem: str) -> None:
        if len(self.named) < MAX_LINE_PROBLEMS:
            self.named.append(problem)
        else:
            self.more += 1

    def listed(self) -> list[str]:
        return self.named + ([f"…and {self.more:,} more lines skipped"] if self.more else [])


def _jsonl_records(data: bytes, problems: _Problems) -> list[tuple[int, dict]]:
    """``(line number, JSON object)`` per usable line; a problem per other non-blank line."""
    records: list[tuple[int, dict]] = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.add(f"line {number} is not UTF-8 text: skipped (save the file as UTF-8)")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append((number, record))
        else:
            problems.add(f"line {number} is not a JSON object with file_name and text: skipped")
    return records


def _csv_records(data: bytes, problems: _Problems) -> list[tuple[int, dict]]:
    """``(line number, row by column)`` per row under the header row, as 🤗 datasets reads a metadata.csv."""
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    except UnicodeDecodeError:
        problems.add("not UTF-8 text: skipped (save the file as UTF-8)")
        return []
    if "file_name" not in (reader.fieldnames or []):
        problems.add("no file_name column: skipped")
        return []
    return [(reader.line_num, row) for row in reader]


def write_layout(items: Iterable[tuple[Path, str, str]], fmt: str, out_dir: Path, *, trigger: str = "",
                 repeats: int = DEFAULT_REPEATS, resolution: int = 1024) -> int:
    """Write ``(image file, exported name, caption)`` items in layout ``fmt`` into ``out_dir``; returns how many.

    ``trigger``, ``repeats`` and ``resolution`` name the kohya folder and fill its ``dataset.toml``.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}: choose {' or '.join(FORMATS)}.")
    if not 1 <= repeats <= MAX_REPEATS:
        raise InvalidInput(f"Repeats must be between 1 and {MAX_REPEATS} (got {repeats}).")
    images_dir = out_dir / kohya_folder(trigger, repeats) if fmt == "kohya" else out_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    records = []
    count = 0
    for source, file_name, caption in items:
        count += 1
        shutil.copyfile(source, images_dir / file_name)
        if fmt == "kohya":
            (images_dir / file_name).with_suffix(".txt").write_text(caption_line(caption), encoding="utf-8")
        else:
            records.append(json.dumps({"file_name": file_name, "text": caption}, ensure_ascii=False))
    if fmt == "imagefolder":
        (out_dir / METADATA_FILE).write_text("".join(r + "\n" for r in records), encoding="utf-8")
    else:
        (out_dir / KOHYA_CONFIG).write_text(kohya_config(images_dir.name, trigger, repeats, resolution),
                                            encoding="utf-8")
    return count


def caption_line(caption: str) -> str:
    """A caption as a ``.txt`` caption file holds it: one line (sd-scripts reads only the first), runs of
    whitespace as one space."""
    return " ".join(caption.split())


def kohya_folder(trigger: str, repeats: int) -> str:
    """sd-scripts' ``<repeats>_<class>`` image folder name."""
    return f"{repeats}_{trigger.strip() or 'images'}"


def kohya_config(folder: str, trigger: str, repeats: int, resolution: int) -> str:
    """A ``dataset.toml`` for sd-scripts' ``--dataset_config``; ``image_dir`` is relative to the export folder,
    so the training command runs from there. TOML basic strings take JSON's escapes.

    Buckets are on (sd-scripts' default is off, which needs every image ``resolution`` × ``resolution``) and
    never upscale; their bounds take in ``resolution`` (sd-scripts refuses one above ``max_bucket_reso``).
    """
    lowest, highest = min(256, resolution // 64 * 64), max(1024, math.ceil(resolution / 64) * 64)
    return (f"[general]\ncaption_extension = \".txt\"\nshuffle_caption = false\n"
            f"keep_tokens = {1 if trigger.strip() else 0}\n\n"
            f"[[datasets]]\nresolution = {resolution}\nbatch_size = 1\nenable_bucket = true\n"
            f"bucket_no_upscale = true\nmin_bucket_reso = {lowest}\nmax_bucket_reso = {highest}\n\n"
            f"  [[datasets.subsets]]\n  image_dir = {json.dumps(folder, ensure_ascii=False)}\n"
            f"  num_repeats = {repeats}\n  class_tokens = {json.dumps(trigger.strip(), ensure_ascii=False)}\n")


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip every file of ``folder`` (paths relative to it) into ``target``; images are stored, not deflated.

    The zip is written under a name of its own and renamed into place, so zips made at once never mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                method = zipfile.ZIP_DEFLATED if path.suffix in (".txt", ".jsonl") else zipfile.ZIP_STORED
                archive.write(path, path.relative_to(folder).as_posix(), compress_type=method)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
