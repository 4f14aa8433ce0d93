"""What a person hands over (files, folders, zips) as image candidates with their captions, plus refusals.

Captions come along as same-named ``.txt`` (or sd-scripts' ``.caption``) files, which caption every image of
that name in their folder as sd-scripts reads them, or as an ``imagefolder`` ``metadata.jsonl`` or
``metadata.csv``, whose ``file_name`` names one image by its path from the metadata file (a caption file wins
when both exist; ``.txt`` wins over ``.caption``). Zip entries are checked before anything is written: absolute
paths, ``..``, symlinks, encrypted and oversized entries (a caption or metadata file over its read limit too)
are refused, and accepted entries are written under new names inside the staging folder only, so nothing from
a zip can land anywhere else. Symbolic links inside a folder are refused too, so nothing outside the folder is
read.
"""

from __future__ import annotations

import lzma
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from masuka.datasets.formats import (
    CAPTION_FILE_LIMIT,
    KOHYA_CONFIG,
    METADATA_FILES,
    METADATA_LIMIT,
    ReadLimit,
    read_caption_file,
    read_metadata,
)
from masuka.errors import InvalidInput, as_disk_full

MAX_ENTRY_BYTES = 512 * 2**20
MAX_LISTED_REFUSALS = 200  # refusals an add lists one by one (see Refusals)
SYSTEM_FILES = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
#: what phones and photo services export beside the photos, known by the name's ending: listed as skipped, never
#: read (nor unpacked from a zip, nor counted in its size)
NOT_PHOTOS: dict[str, str] = {
    **dict.fromkeys((".mov", ".mp4", ".m4v", ".3gp", ".avi", ".mkv", ".webm"), "a video (a Live Photo's, say)"),
    ".aae": "an iPhone photo-edit file",
    ".json": "a photo's metadata file (Google Takeout writes one beside each photo)",
    ".xmp": "an XMP sidecar",
}
#: why an sd-scripts ``dataset.toml`` (a kohya export's) is listed: its captions and images are read, not it
CONFIG_SKIPPED = (f"sd-scripts config file ({KOHYA_CONFIG}), not a photo: skipped (MASUKA does not read it; the images "
                  "and their caption files are read)")
CAPTION_SUFFIXES = (".txt", ".caption")  # preferred first; ``.caption`` is sd-scripts' default
Key = tuple[str, str, str]  # (source group, folder inside it, file stem): pairs an image with its caption file


@dataclass
class Candidate:
    """An image file to ingest: ``name`` as the person knows it, ``path`` where it can be read now, and its caption
    with the file it came from (a caption or metadata file, by the name the person knows)."""

    name: str
    path: Path
    caption: str | None = None
    caption_file: str = ""


@dataclass
class Refusal:
    file: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


class Refusals:
    """Refusals as an add reports them: the first :data:`MAX_LISTED_REFUSALS` one by one, the others counted in a
    last ``…and N more`` row, so a zip of countless bad lines or files answers with a bounded list. ``len`` is the
    count of all."""

    def __init__(self) -> None:
        self.listed: list[Refusal] = []
        self.more = 0

    def append(self, refusal: Refusal) -> None:
        if len(self.listed) < MAX_LISTED_REFUSALS:
            self.listed.append(refusal)
        else:
            self.more += 1

    def __iadd__(self, refusals: Iterable[Refusal]) -> Refusals:
        if isinstance(refusals, Refusals):  # its counted ones stay counted
            self.more += refusals.more
            refusals = refusals.listed
        for refusal in refusals:
            self.append(refusal)
        return self

    def __len__(self) -> int:
        return len(self.listed) + self.more

    def __iter__(self) -> Iterator[Refusal]:
        yield from self.listed
        if self.more:
            yield Refusal(f"…and {self.more:,} more", "refused too (not listed)")

    def __getitem__(self, index: int) -> Refusal:
        return list(self)[index]


@dataclass
class Collected:
    candidates: list[Candidate] = field(default_factory=list)
    refused: Refusals = field(default_factory=Refusals)


@dataclass
class _Entry:
    """A file found: ``name`` as shown, ``path`` where it is now, ``relative`` its path inside source ``group``."""

    name: str
    path: Path
    group: str
    relative: str

    def __post_init__(self) -> None:
        self.relative = posixpath.normpath(self.relative)

    @property
    def key(self) -> Key:
        return self.group, posixpath.dirname(self.relative), PurePosixPath(self.relative).stem


@dataclass(frozen=True)
class ZipLimits:
    """What one "add images" request may hold in all: files (loose files and the entries its zips declare), and
    bytes its zips declare they unpack to. Checked zip by zip against a running total before anything of a zip is
    written, so a request of many zips never writes more than these into ``tmp/``. (A folder's files, added from
    the command line, are read where they are: they count towards neither.)"""

    files: int = 1000
    unpacked_bytes: int = 2 * 2**30


@dataclass
class _Budget:
    """What the zips and loose files of one request counted so far take of its :class:`ZipLimits`."""

    limits: ZipLimits
    files: int = 0
    unpacked_bytes: int = 0


def collect(sources: list[Path], staging: Path, allow_folders: bool = False,
            limits: ZipLimits = ZipLimits()) -> Collected:
    """Expand ``sources`` into candidates; zips are unpacked into ``staging`` (which the caller removes), each only
    while the request stays within ``limits`` (loose files counted first, then the zips in order; a zip that would
    go past them is refused whole, unwritten). A full disk while unpacking raises :class:`masuka.errors.DiskFull`."""
    sources = [Path(source) for source in sources]
    result = Collected()
    entries: list[_Entry] = []
    budget = _Budget(limits, files=sum(1 for s in sources if s.is_file() and s.suffix.lower() != ".zip"))
    for index, source in enumerate(sources):
        if source.is_dir():
            if allow_folders:
                entries += _folder_entries(source, str(index), result.refused)
            else:
                result.refused.append(Refusal(source.name, "folders can be added from the command line only; "
                                                           "upload the files or a zip"))
        elif not source.is_file():
            result.refused.append(Refusal(source.name, "file not found"))
        elif source.suffix.lower() == ".zip":
            entries += _zip_entries(source, str(index), staging, result.refused, budget)
        else:
            entries.append(_Entry(source.name, source, "loose", source.name))
    _pair(entries, result)
    return result


def _folder_entries(folder: Path, group: str, refused: Refusals) -> list[_Entry]:
    """The files under ``folder``; a symbolic link (to a file or a folder) is refused, never followed."""
    found = []
    for path in sorted(folder.rglob("*")):  # rglob does not go into linked folders
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            refused.append(Refusal(f"{folder.name}/{relative}", "symbolic link: refused, not followed"))
        elif path.is_file():
            found.append(_Entry(f"{folder.name}/{relative}", path, group, relative))
    return found


#: the compression methods Python's zipfile unpacks (zstd from Python 3.14)
UNPACKED_METHODS = frozenset(method for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                                   zipfile.ZIP_LZMA, getattr(zipfile, "ZIP_ZSTANDARD", None))
                             if method is not None)


def zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be unpacked, or None when it is safe."""
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path inside the zip: refused, nothing written"
    if ".." in re.split(r"[\\/]", name):
        return "path leads out of the zip folder ('..'): refused, nothing written"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link inside the zip: refused, nothing written"
    if info.flag_bits & 0x1:
        return "encrypted zip entry: unzip it yourself and add the files"
    if info.compress_type not in UNPACKED_METHODS:
        method = getattr(zipfile, "compressor_names", {}).get(info.compress_type, f"method {info.compress_type}")
        return (f"zip entry compressed in a way Python cannot unpack ({method}): zip the files again with the usual "
                "deflate compression")
    if info.file_size > MAX_ENTRY_BYTES:
        return f"too big inside the zip ({info.file_size / 2**20:.0f} MB, limit {MAX_ENTRY_BYTES // 2**20} MB)"
    if name.lower().endswith(".zip"):
        return "a zip inside a zip is not opened: add it separately"
    return None


def zip_problem(infos: list[zipfile.ZipInfo], limits: ZipLimits, files_before: int = 0, bytes_before: int = 0
                ) -> str | None:
    """Why a whole zip must not be unpacked (too many files, too big once unpacked), or None: alone, or with the
    ``files_before`` and ``bytes_before`` (unpacked) the same request counted before it.

    The sizes are those the zip declares; unpacking never writes more than an entry declares (zipfile stops
    there and checks the CRC, and so does :func:`_copy_at_most`), so the check holds for a crafted zip too.
    """
    files = [info for info in infos if not info.is_dir()]
    unpacked = sum(info.file_size for info in files)
    most_files = f"{limits.files:,}, the most one request may add (MASUKA_MAX_FILES)"
    most_mb = f"{limits.unpacked_bytes / 2**20:,.0f} MB, the most one request may unpack (MASUKA_MAX_UNZIPPED_MB)"
    if len(files) > limits.files:
        return f"the zip holds {len(files):,} files, more than {most_files}: split it; nothing was unpacked"
    if unpacked > limits.unpacked_bytes:
        return f"the zip unpacks to {unpacked / 2**20:,.0f} MB, more than {most_mb}: split it; nothing was unpacked"
    if files_before + len(files) > limits.files:
        return (f"the zip holds {len(files):,} files, with the {files_before:,} other files of this request "
                f"{files_before + len(files):,}, more than {most_files}: add it in another request; nothing of it "
                "was unpacked")
    if bytes_before + unpacked > limits.unpacked_bytes:
        return (f"the zip unpacks to {unpacked / 2**20:,.0f} MB, with the zips before it in this request to "
                f"{(bytes_before + unpacked) / 2**20:,.0f} MB, more than {most_mb}: add it in another request; "
                "nothing of it was unpacked")
    return None


def _zip_entries(source: Path, group: str, staging: Path, refused: Refusals, budget: _Budget) -> list[_Entry]:
    """The zip's entries, unpacked into ``staging`` when it fits in what is left of ``budget`` (then counted in it)."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        refused.append(Refusal(source.name, f"damaged zip file ({error})"))
        return []
    infos = []
    for info in archive.infolist():
        if not info.is_dir() and (skipped := _skipped(info.filename)):
            refused.append(Refusal(f"{source.name}/{info.filename}", skipped))
        else:
            infos.append(info)
    problem = zip_problem(infos, budget.limits, budget.files, budget.unpacked_bytes)
    if problem:
        archive.close()
        refused.append(Refusal(source.name, problem))
        return []
    budget.files += sum(1 for info in infos if not info.is_dir())
    budget.unpacked_bytes += sum(info.file_size for info in infos if not info.is_dir())
    staging.mkdir(parents=True, exist_ok=True)
    found = []
    with archive:
        for number, info in enumerate(infos):
            if info.is_dir():
                continue
            shown = f"{source.name}/{info.filename}"
            problem = zip_entry_problem(info) or _too_big_to_read(shown, info.file_size)
            if problem:
                refused.append(Refusal(shown, problem))
                continue
            suffix = re.sub(r"[^a-z0-9.]", "", PurePosixPath(info.filename).suffix.lower())[:10]
            target = staging / f"{group}-{number}{suffix}"
            try:
                with archive.open(info) as reader, open(target, "wb") as writer:
                    _copy_at_most(reader, writer, info.file_size)  # declared, so within the limits checked
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error,
                    lzma.LZMAError) as error:  # bz2's damaged data is an OSError
                target.unlink(missing_ok=True)
                if full := as_disk_full(error):  # the disk, not the zip: nothing more can be unpacked
                    raise full from error
                what = ("zip entry Python cannot unpack" if isinstance(error, NotImplementedError)  # strong encryption
                        else "damaged zip entry")
                refused.append(Refusal(shown, f"{what} ({str(error) or 'cut short'})"))
                continue
            found.append(_Entry(shown, target, group, info.filename))
    return found


def _copy_at_most(reader: IO[bytes], writer: IO[bytes], most: int) -> None:
    """Copy ``reader`` into ``writer``; :class:`zipfile.BadZipFile` once it holds more than ``most`` bytes (a zip
    lying about an entry's size), with no more than that written."""
    left = most
    while chunk := reader.read(min(left, 2**20) or 1):  # one byte past ``most`` tells a lie
        if len(chunk) > left:
            raise zipfile.BadZipFile("the entry holds more than the zip declares")
        writer.write(chunk)
        left -= len(chunk)


def _kind(name: str) -> str:
    """What a file handed over is, by its name: ``system``, ``metadata``, ``config``, ``caption``, ``other`` (one
    of :data:`NOT_PHOTOS`) or ``image``."""
    base = PurePosixPath(name).name.lower()
    if SYSTEM_FILES.search(name):
        return "system"
    if base in METADATA_FILES:
        return "metadata"
    if base == KOHYA_CONFIG:
        return "config"
    if _suffix(base) in NOT_PHOTOS:
        return "other"
    return "caption" if _suffix(base) in CAPTION_SUFFIXES else "image"


def _skipped(name: str) -> str | None:
    """Why a file is listed as skipped without being read (a system file, a video...), by its name; None to read it."""
    kind = _kind(name)
    if kind == "system":
        return "system file (not a photo): skipped"
    return f"{NOT_PHOTOS[_suffix(name)]}, not a photo: skipped" if kind == "other" else None


#: the files read whole, by kind: bigger ones are refused unread (and, inside a zip, unwritten)
READ_LIMITS: dict[str, ReadLimit] = {"metadata": METADATA_LIMIT, "caption": CAPTION_FILE_LIMIT}


def _too_big_to_read(name: str, size: int) -> str | None:
    """Why a caption or metadata file of ``size`` bytes is refused unread (as reading it would say), or None."""
    limit = READ_LIMITS.get(_kind(name))
    return limit.problem(size) if limit else None


def _pair(entries: list[_Entry], result: Collected) -> None:
    """Split caption and metadata files from images and attach each caption to its images."""
    caption_files: dict[Key, list[_Entry]] = {}
    listed: dict[tuple[str, str], tuple[str, str]] = {}  # (source group, normalised path in it) -> (text, file)
    images: list[_Entry] = []
    for entry in entries:
        kind = _kind(entry.name)
        if skipped := _skipped(entry.name):
            result.refused.append(Refusal(entry.name, skipped))
        elif kind == "metadata":
            try:
                texts, problems = read_metadata(entry.path)
            except InvalidInput as error:
                texts, problems = {}, [str(error)]
            result.refused += [Refusal(entry.name, problem) for problem in problems]
            folder = posixpath.dirname(entry.relative)
            listed.update({(entry.group, posixpath.normpath(posixpath.join(folder, file_name))): (text, entry.name)
                           for file_name, text in texts.items()})
        elif kind == "config":  # the sd-scripts config of a kohya export: listed, as every file handed over is
            result.refused.append(Refusal(entry.name, CONFIG_SKIPPED))
        elif kind == "caption":
            caption_files.setdefault(entry.key, []).append(entry)
        else:
            images.append(entry)
    captions = _read_captions(caption_files, result.refused)
    for entry in images:
        found = captions.get(entry.key)
        text, origin = (found[1], found[0].name) if found else listed.get((entry.group, entry.relative), (None, ""))
        result.candidates.append(Candidate(entry.name, entry.path, text, origin))
    used = {entry.key for entry in images}
    result.refused += [Refusal(entry.name, "caption file with no image of the same name")
                       for key, (entry, _) in captions.items() if key not in used]


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _read_captions(caption_files: dict[Key, list[_Entry]], refused: Refusals) -> dict[Key, tuple[_Entry, str]]:
    """Each image's caption file (``.txt`` before ``.caption``) and its text; the others are refused, saying why."""
    captions: dict[Key, tuple[_Entry, str]] = {}
    for key, files in caption_files.items():
        for entry in sorted(files, key=lambda e: CAPTION_SUFFIXES.index(_suffix(e.name))):
            if key in captions:
                refused.append(Refusal(entry.name, f"{PurePosixPath(captions[key][0].name).name} is the caption "
                                                   "used: this file was not read"))
                continue
            try:
                captions[key] = (entry, read_caption_file(entry.path))
            except UnicodeDecodeError:
                refused.append(Refusal(entry.name, "caption file not in UTF-8: not read (save it as UTF-8, or "
                                                   "type the caption in the Datasets tab)"))
            except InvalidInput as error:  # too big
                refused.append(Refusal(entry.name, str(error)))
    return captions
