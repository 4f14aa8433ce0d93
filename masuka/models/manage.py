"""Models on disk: catalog status from the Hugging Face cache, downloads as jobs, deletion from the cache.

Downloads go through ``huggingface_hub.snapshot_download`` into the standard Hugging Face cache (the one
``from_pretrained`` reads), with the token saved in Settings. They run as ``jobs`` rows (kind ``download``)
in their own lane: a repo's files, or one file of it (a ``.gguf`` transformer named by URL). Started again
after a Stop, a killed app or a full disk, a download keeps the files it finished and fetches the rest; the file
it was cut off in starts again from its first byte (the Hub client deletes a half-written file: only a break in
the connection is resumed, within the same download).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from masuka import jobs
from masuka.errors import Cancelled, DiskFull, InvalidInput, ModelUnavailable, as_disk_full
from masuka.holds import Holds
from masuka.jobs import JobContext, JobRow, Progress, Watch
from masuka.models.catalog import CATALOG_PATH, REPO_ID, catalog, json_object
from masuka.models.hub import (
    OFFLINE,
    cached_file,
    hub_cache_dir,
    hub_offline,
    hub_reachable,
    not_downloaded,
    repo_cache_folder,
)
from masuka.services import HUGGINGFACE, hub_endpoint
from masuka.store import UNFINISHED, owner_clause
from masuka.studio import Studio

if TYPE_CHECKING:
    from huggingface_hub import CachedRepoInfo

log = logging.getLogger(__name__)
LANE = "download"
PROGRESS_EVERY_S = 0.5
#: weight formats MASUKA never loads (pickles, other frameworks): not downloaded
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf")
#: the Video tab's provider catalog; its entries with a ``repo`` are local models that can be downloaded
VIDEO_CATALOG_PATH = CATALOG_PATH.with_name("video_models.json")
_IN_USE: Holds[str] = Holds("model", str)  # repos that running work fetched for use and has not finished with


def catalog_sections() -> dict[str, dict[str, dict]]:
    """Every downloadable model: all sections of ``models.json`` plus the local models of the video catalog."""
    sections = {name: dict(entries) for name, entries in catalog().items()}
    if VIDEO_CATALOG_PATH.is_file():
        providers = json.loads(VIDEO_CATALOG_PATH.read_text(encoding="utf-8"))
        local = {model_id: entry for provider in providers.values() if isinstance(provider, dict)
                 for model_id, entry in (provider.get("models") or {}).items() if entry.get("repo")}
        sections.setdefault("video", {}).update(local)
    return sections


def _model_repos() -> list[CachedRepoInfo]:
    """Every model repo of the Hugging Face cache, as ``scan_cache_dir`` finds them (it scans them all)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return [repo for repo in scan_cache_dir(hub_cache_dir()).repos if repo.repo_type == "model"]
    except CacheNotFound:
        return []


def cache_entries() -> dict[str, tuple[int, bool]]:
    """Every model repo in the cache: its size on disk in bytes and whether it is complete
    (:func:`holds_everything`); a stopped or broken download leaves an incomplete one."""
    return {repo.repo_id: (repo.size_on_disk, holds_everything(repo.repo_id, repo.repo_path))
            for repo in _model_repos()}


def repo_complete(source: str, without: Sequence[str] = ()) -> bool:
    """Whether the cache holds every file loading ``source`` needs, the weights of the components in ``without``
    aside. Only that repo's folder is read (``scan_cache_dir`` reads every repo; its one-repo scan is private)."""
    return holds_everything(source, repo_cache_folder(source), without)


def cached_repos() -> dict[str, int]:
    """The complete model repos in the cache (those loading needs nothing more for) and their size in bytes."""
    return {repo: size for repo, (size, complete) in cache_entries().items() if complete}


def holds_everything(repo: str, folder: Path, without: Sequence[str] = ()) -> bool:
    """Whether ``repo``, cached in ``folder``, can be loaded without downloading: a snapshot (``main``'s when the
    cache knows it) with every file a catalog entry names, else every component its ``model_index.json`` lists
    and, in each model folder (one with a ``config.json``) not in ``without``, safetensors weights with all the
    shards their index lists. Only whole files count: a snapshot names a blob once it is complete (a half-written
    ``*.incomplete`` blob, even one a killed app left behind, is named by none; a link to a missing blob names
    nothing)."""
    main = folder / "refs" / "main"
    snapshots = [folder / "snapshots" / main.read_text().strip()] if main.is_file() else \
        sorted((folder / "snapshots").glob("*"))
    for snapshot in snapshots:
        names = {path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file()}
        if names and _loadable(repo, snapshot, names, without):
            return True
    return False


def _loadable(repo: str, snapshot: Path, names: set[str], without: Sequence[str] = ()) -> bool:
    """Whether the files ``names`` of a snapshot are all that loading ``repo`` reads (:func:`holds_everything`)."""
    if named := catalog_files(repo):
        return set(named) <= names
    folders = {name.rpartition("/")[0] for name in names}
    if "model_index.json" in names:
        index = json_object(snapshot / "model_index.json")
        components = [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)
                      and len(value) == 2 and all(value)]  # [library, class]; [null, null] is a component left out
        if not set(components) <= folders:
            return False
    for name in names:
        folder, _, file = name.rpartition("/")
        inside = f"{folder}/" if folder else ""
        if file == "config.json" and folder not in without and not any(
                other.startswith(inside) and other.endswith(".safetensors") and "/" not in other[len(inside):]
                for other in names):
            return False
        if file.endswith(".safetensors.index.json"):
            shards = json_object(snapshot / name).get("weight_map") or {}
            if not isinstance(shards, dict) or not {inside + shard for shard in shards.values()} <= names:
                return False
    return True


def model_status() -> list[dict]:
    """Every catalog model (all sections) and every other cached model repo, with download status and size:
    ``downloaded`` when the cache holds all loading needs, ``partial`` when a download stopped halfway."""
    cached = cache_entries()
    rows = []
    for section, entries in catalog_sections().items():
        for model_id, entry in entries.items():
            repo = entry.get("repo")
            if not repo:
                continue
            size, complete = cached.get(repo, (0, False))
            rows.append({"section": section, "id": model_id, "name": entry.get("name", model_id), "repo": repo,
                         "gated": bool(entry.get("gated")), "downloaded": complete,
                         "partial": repo in cached and not complete, "size_bytes": size,
                         "license": entry.get("license", "")})
    listed = {row["repo"] for row in rows}
    rows += [{"section": "cache", "id": repo, "name": repo, "repo": repo, "gated": False, "downloaded": complete,
              "partial": not complete, "size_bytes": size, "license": ""}
             for repo, (size, complete) in sorted(cached.items()) if repo not in listed]
    return rows


def resolve_repo(model: str) -> str:
    """A catalog id (any section) or a repo id → the repo id to download."""
    model = (model or "").strip()
    for entries in catalog_sections().values():
        if model in entries and entries[model].get("repo"):
            return entries[model]["repo"]
    if REPO_ID.match(model):
        return model
    raise InvalidInput(f"{model!r} is neither a catalog model nor a Hugging Face repo id (owner/name).")


def start_download(studio: Studio, owner: str, model: str, without: Sequence[str] = (), file: str = "",
                   revision: str = "main") -> int | None:
    """Queue the download of ``model`` (the weights of the components in ``without`` left out), or of its one
    ``file`` at ``revision`` when given, as a job; returns the job id, or None when the cache already holds the
    whole model (nothing to fetch, no job: offline too)."""
    repo = resolve_repo(model)
    if not file and repo_complete(repo, without):
        return None
    return _queue_download(studio, owner, repo, without, file, revision)


def _queue_download(studio: Studio, owner: str, repo: str, without: Sequence[str], file: str, revision: str) -> int:
    """Create the download job of ``repo`` (or its ``file``) and hand it to the queue; returns its id."""
    params = _job_params(repo, without, file, revision)
    job_id = studio.runner().create("download", owner, title=f"Download {_label(repo, params)}", model=repo,
                                    params=params)
    studio.runner().submit(job_id, lane=LANE)  # the work is download_job: the queue survives a restart
    return job_id


def _job_params(repo: str, without: Sequence[str], file: str, revision: str) -> dict:
    """A download job's params: the repo and the components left out, or the one file and its revision."""
    return {"repo": repo, "without": list(without)} | ({"file": file, "revision": revision} if file else {})


def _label(repo: str | None, params: dict) -> str:
    """What a download job fetches: its repo, or the one file of it (``owner/name/file``)."""
    return f"{repo}/{params['file']}" if params.get("file") else str(repo)


def download_job(studio: Studio, ctx: JobContext) -> Path:
    """The work of a ``download`` job: its repo (or file) from the row."""
    params = ctx.row().params
    return download(studio, ctx, params["repo"], params.get("without", ()), params.get("file", ""),
                    params.get("revision", "main"))


def fetch_for_use(studio: Studio, owner: str, source: str, watch: Watch | None = None,
                  without: Sequence[str] = ()) -> None:
    """Before a repo is loaded for use: download it as a download job, so the transfer happens outside any GPU slot
    and shows in the Models tab; ``watch`` follows its :class:`~masuka.jobs.Progress` for the tab that asked.
    ``without`` names components loaded from elsewhere (a ``.gguf`` transformer): their weights are not fetched.
    Callers hold the repo meanwhile: see :func:`using_models`.

    Nothing is fetched for a folder or file or when the cache already holds every file loading needs
    (:func:`holds_everything`), whatever earlier downloads of the repo ended as. A repo the cache does not hold
    while the Hub cannot be reached is refused (:class:`ModelUnavailable`) before any work starts, rather than
    failing inside the loader. Another user's unfinished download of the repo is joined; when that user stops it,
    the caller's own download takes over. A failed download raises :class:`ModelUnavailable` with its reason.
    """
    if Path(source).expanduser().exists() or not REPO_ID.match(source) or repo_complete(source, without):
        return
    if not hub_reachable():
        raise not_downloaded(source, "download it in the Models tab "
                             "once the Hub can be reached, or use a folder that holds the model")
    _join_or_start(studio, owner, source, watch, without)


def fetch_file_for_use(studio: Studio, owner: str, repo: str, file: str, revision: str = "main",
                       watch: Watch | None = None, *, what: str = "",
                       remedy: str = "download it once the Hub can be reached") -> str:
    """The local path of one ``file`` of ``repo`` at ``revision`` (a ``.gguf`` transformer), from the cache, else
    downloaded as a download job of that file alone, joined and followed as :func:`fetch_for_use` does (it shows
    in the Models tab, where Stop ends it). Not cached while the Hub cannot be reached: :class:`ModelUnavailable`
    naming ``what`` (by default the file), with ``remedy``."""
    if path := cached_file(repo, file, revision):
        return path
    if not hub_reachable():
        raise not_downloaded(what or f"{repo}/{file}", remedy)
    return _join_or_start(studio, owner, repo, watch, file=file, revision=revision).result["path"]


def _join_or_start(studio: Studio, owner: str, repo: str, watch: Watch | None, without: Sequence[str] = (),
                   file: str = "", revision: str = "main") -> JobRow:
    """Wait for an unfinished download that fetches what is wanted (the same file, or the repo with no more
    components left out), else for one started for ``owner``, with progress to ``watch``; returns its completed
    row. When another user stops the one joined, the caller's own takes over; any other end is
    :class:`ModelUnavailable`. What ``watch`` raises (:func:`stoppable`'s :class:`Cancelled`) ends the wait alone:
    the download goes on, for whoever else waits for it or a later start."""
    wanted = _job_params(repo, without, file, revision)
    label = _label(repo, wanted)
    if watch:
        watch(Progress(fraction=0.0, message=f"Downloading {label}…"))
    while True:
        running = [row for row in unfinished_downloads(studio, repo) if _serves(row.params, wanted)]
        job_id = running[0].id if running else _queue_download(studio, owner, repo, without, file, revision)
        while not (row := studio.runner().wait(job_id, timeout=PROGRESS_EVERY_S)).finished:
            if watch:
                watch(Progress(fraction=row.progress or 0.0, message=download_line(row)))
        if row.status == "completed":
            return row
        if row.status == "cancelled" and row.owner == owner:  # the caller's own download was stopped
            raise ModelUnavailable(f"The download of {label} was stopped before it finished, so it cannot be used: "
                                   f"{row.error or 'stopped'}")
        if row.status != "cancelled":
            raise ModelUnavailable(row.error or f"The download of {label} ended as {row.status}.")


def _serves(params: dict, wanted: dict) -> bool:
    """Whether a download job with ``params`` fetches what ``wanted`` (:func:`_job_params`) asks for."""
    return (params.get("file", ""), params.get("revision")) == (wanted.get("file", ""), wanted.get("revision")) \
        and set(params.get("without", ())) <= set(wanted["without"])


def stoppable(watch: Watch | None, cancelled: Callable[[], bool] | None) -> Watch | None:
    """``watch`` for :func:`using_models` and :func:`fetch_file_for_use` that also ends the caller's wait for a
    download with :class:`Cancelled` once ``cancelled()`` says so (asked at every progress report, a few times a
    second); the download itself goes on (see :func:`_join_or_start`)."""
    if cancelled is None:
        return watch

    def checked(report: Progress) -> None:
        if cancelled():
            raise Cancelled("the download goes on in the Models tab", at="while it waited for a model download")
        if watch:
            watch(report)

    return checked


@contextmanager
def using_models(studio: Studio, owner: str, *sources: str | None, watch: Watch | None = None,
                 without: Sequence[str] = ()) -> Iterator[None]:
    """Hold ``sources`` (None ones ignored) for the block, fetching each first (:func:`fetch_for_use`, with
    ``watch`` and ``without``): wrapped around the loading and the work that uses them, it makes
    :func:`delete_model` refuse them from before their download to the end of that work, so loading never
    downloads them again inside a GPU slot."""
    wanted = [source for source in sources if source]
    with holding_repos(studio, *wanted):
        for source in wanted:
            fetch_for_use(studio, owner, source, watch, without)
        yield


def holding_repos(studio: Studio, *repos: str | None) -> AbstractContextManager[None]:
    """Hold ``repos`` (None ones ignored) for the block, as used, without fetching them: :func:`delete_model`, in
    this process or another on the data dir, refuses them meanwhile."""
    return _IN_USE.holding(studio.store, [repo for repo in repos if repo])


def download_line(row: JobRow | dict) -> str:
    """A download job in words: bytes done of all, speed and time left."""
    row = row if isinstance(row, JobRow) else JobRow.from_row(row)
    done, total = row.step or 0, row.total or 0
    label = _label(row.model, row.params)
    if not total:
        return f"Downloading {label}…"
    rate = row.state.get("rate")
    line = f"Downloading {label}: {done / 2**30:.2f} of {total / 2**30:.2f} GB"
    if rate:
        left = max(0.0, (total - done) / rate)
        line += f" at {rate / 2**20:.1f} MB/s, about {_duration(left)} left"
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stop_download(studio: Studio, user: str, admin: bool, model: str) -> int:
    """Ask the unfinished downloads of ``model`` (the user's own, or any for an admin) to stop; finished files are
    kept, so starting again fetches only the rest. Returns how many were asked.

    A non-admin is answered as if only their own downloads existed: whether another user downloads ``model`` is
    theirs to know, not a probe for anyone who names a repo."""
    repo = resolve_repo(model)
    rows = unfinished_downloads(studio, repo, user, admin)
    if not rows:
        raise InvalidInput(f"No download of {repo} is running." if admin else
                           f"No download of {repo} of yours is running.")
    for row in rows:
        jobs.request_stop(studio.store, row.id)
    return len(rows)


def unfinished_downloads(studio: Studio, repo: str, user: str = "", admin: bool = True) -> list[JobRow]:
    """The queued or running download jobs of ``repo`` (the user's own, or any for an admin), newest first."""
    where, args = owner_clause(user, admin)
    return jobs.find(studio.store, f"kind = 'download' and model = ? and status in (?, ?) and {where}",
                     [repo, *UNFINISHED, *args])


def download_jobs(studio: Studio, user: str, admin: bool, limit: int = 20) -> list[dict]:
    """The latest download jobs (the user's own, or everyone's for an admin)."""
    where, args = owner_clause(user, admin)
    return studio.store.find("jobs", f"kind = 'download' and {where}", args, limit=limit)


def bench_results(studio: Studio, limit: int = 50) -> list[dict]:
    """The latest ``python -m masuka bench`` results, newest first."""
    return studio.store.find("bench_results", limit=limit)


def download(studio: Studio, ctx: JobContext, repo: str, without: Sequence[str] = (), file: str = "",
             revision: str = "main") -> Path:
    """The download job: check access and free space, then fetch every file (the weights of the components in
    ``without`` aside), or only ``file`` at ``revision`` when given, with progress in the job row. Returns the
    snapshot folder, or the file."""
    from huggingface_hub import snapshot_download

    label = _label(repo, {"file": file})
    again = _FILE_AGAIN.format(label) if file else _DOWNLOAD_AGAIN.format(repo)
    if not hub_reachable():  # HF_HUB_OFFLINE set included
        raise hub_unreachable(again)
    token = studio.keys.optional(HUGGINGFACE)
    cache = hub_cache_dir()
    remove_stale_parts(studio, ctx.job_id, repo, cache)
    try:
        files, cached = files_to_fetch(repo, token, cache, without, file, revision)
        total = sum(files.values())
        path = snapshot_download(repo, revision=revision, cache_dir=cache, endpoint=hub_endpoint(), token=token,
                                 allow_patterns=list(files), tqdm_class=job_progress(ctx, total, cached))
    except (Cancelled, InvalidInput):
        raise
    except Exception as error:  # every Hub failure becomes a message naming the repo and what to do
        raise download_error(repo, error, bool(token), again, admin=studio.config.is_admin(ctx.row().owner),
                             what=label, unreadable=None if token else studio.keys.unreadable()) from error
    fetched = Path(path) / file if file else Path(path)
    size = fetched.stat().st_size if file else cache_entries().get(repo, (0, False))[0]
    ctx.progress(total, total, fraction=1.0, result={"path": str(fetched), "size_bytes": size})
    log.info("downloaded %s (%d bytes)", label, size)
    return fetched


def files_to_fetch(repo: str, token: str | None, cache: Path, without: Sequence[str] = (), file: str = "",
                   revision: str = "main") -> tuple[dict[str, int], int]:
    """The files of ``repo`` at ``revision`` that loading needs (``file`` alone when given, else
    :func:`catalog_files`, else :func:`wanted_files`; only the ``config.json`` of a component in ``without``) with
    their sizes (from the Hub's file list), once they are known to fit on the disk of the cache; and how many of
    those bytes the cache holds already (the files of that commit that its snapshot has)."""
    from huggingface_hub import HfApi
    info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo, revision=revision, files_metadata=True)
    sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
    if file and file not in sizes:
        raise InvalidInput(f"{repo} has no file {file} at revision {revision}: check its name on {hub_endpoint()}/"
                           f"{repo}.")
    named = [file] if file else catalog_files(repo)
    names = [name for name in sizes if name in named] if named else wanted_files(list(sizes))
    files = {name: sizes[name] for name in names if name.partition("/")[0] not in without
             or name.endswith("/config.json")}
    snapshot = repo_cache_folder(repo, cache) / "snapshots" / (info.sha or "-")
    cached = sum(size for name, size in files.items() if (snapshot / name).is_file())
    check_free_space(repo, sum(files.values()) - cached, cache)
    return files, cached


def remove_stale_parts(studio: Studio, job_id: int, repo: str, cache: Path) -> None:
    """Delete the half-written blobs of ``repo`` that no running download (other than job ``job_id``) is writing:
    those a killed app left. The Hub client cannot continue them, and they would only take space."""
    if any(row.id != job_id and row.status == "running" for row in unfinished_downloads(studio, repo)):
        return
    for part in (repo_cache_folder(repo, cache) / "blobs").glob("*.incomplete"):
        part.unlink(missing_ok=True)


def catalog_files(repo: str) -> list[str]:
    """The files a catalog entry of ``repo`` names (``files``: a model that is one file in a bigger repo, such as
    an ONNX model), else none."""
    for entries in catalog_sections().values():
        for entry in entries.values():
            if entry.get("repo") == repo and entry.get("files"):
                return list(entry["files"])
    return []


def wanted_files(names: list[str]) -> list[str]:
    """What ``from_pretrained`` reads: safetensors weights, never pickled ones, and in a diffusers pipeline repo
    only its component folders (not the single-file checkpoints some repos also keep at the top)."""
    pipeline = "model_index.json" in names
    return [name for name in names if not name.endswith(PICKLED_WEIGHTS)
            and not (pipeline and "/" not in name and name.endswith(".safetensors"))]


def check_free_space(repo: str, needed: int, cache: Path) -> None:
    """Refuse a download of ``repo`` that needs ``needed`` bytes more than the cache holds when they cannot fit on
    the disk of the cache."""
    existing = cache
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise InvalidInput(f"{repo} needs {needed / 2**30:.1f} GB but only {free / 2**30:.1f} GB is free on the disk "
                           f"of {cache}: free some space (Settings → Storage) or delete other models.")


def job_progress(ctx: JobContext, total: int, done: int = 0) -> type[tqdm]:
    """A tqdm class for ``snapshot_download`` that honours Stop at every update and writes byte progress into the
    job row: the ``done`` bytes cached before plus those its bytes bar counts, of ``total`` (all the files, known
    before the first one starts). The figure never goes down and stays short of 1.0 until the job completes."""
    lock = threading.Lock()
    best, written = done, 0.0

    def report(step: int, rate: float | None) -> None:
        nonlocal best, written
        with lock:
            best = max(best, min(step, total))
            if time.monotonic() - written > PROGRESS_EVERY_S:
                written = time.monotonic()
                ctx.progress(best, total, fraction=min(best / total, ALMOST_DONE) if total else 0.0,
                             state={"rate": rate})

    class JobProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)
            # the library's transfer bar counts the same bytes again, as they come off the network
            self._counts = self.unit == "B" and kwargs.get("desc") != TRANSFER_BAR

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            ctx.check_stop(kept=KEPT)
            if self._counts:
                report(done + int(self.n), self.format_dict.get("rate"))
            return shown

    return JobProgress


#: the description ``snapshot_download`` gives its bar of network bytes (beside the one of bytes written)
TRANSFER_BAR = "Downloading bytes"
ALMOST_DONE = 0.999
KEPT = "the finished files are kept; starting it again fetches the rest"
_DOWNLOAD_AGAIN = "start the download of {} again (the finished files are kept)"
#: a file job is started by the work that needs it (a ``.gguf`` transformer, :func:`fetch_file_for_use`)
_FILE_AGAIN = "run the gguf_offload request again to download {}"


def hub_unreachable(again: str) -> ModelUnavailable:
    """The Hub cannot be reached: unset ``HF_HUB_OFFLINE`` when that is why, else check the network, then ``again``
    (what to do once it answers)."""
    if hub_offline():
        return ModelUnavailable(f"The Hugging Face Hub ({hub_endpoint()}) cannot be reached ({OFFLINE}): unset it "
                                f"and {again}.")
    return ModelUnavailable(f"The Hugging Face Hub ({hub_endpoint()}) cannot be reached: check the network and "
                            f"{again}.")


def download_error(repo: str, error: BaseException, has_token: bool, again: str = "", *,
                   admin: bool = True, what: str = "", unreadable: str | None = None) -> ModelUnavailable | DiskFull:
    """A download failure of ``what`` (by default the whole ``repo``) as a message a person can act on (``again``:
    what to do once the Hub answers, when it cannot be reached; by default, start the download again). A user who
    is not an ``admin`` cannot save the token, and is told to ask one. ``unreadable``: why the key file could not
    be read (:meth:`~masuka.key_store.KeyStore.unreadable`), when no token came from it: a token may be saved."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    from masuka.remote.http import key_fix

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    page = f"{hub_endpoint()}/{repo}"
    if any(isinstance(e, GatedRepoError) for e in chain):
        if unreadable and not has_token:
            return ModelUnavailable(f"{repo} is gated and the Hugging Face token cannot be read. {unreadable} "
                                    f"Accept the repo's licence on {page} too, if not yet done.")
        fix = ("your Hugging Face token has no access yet" if has_token else "no Hugging Face token is set")
        return ModelUnavailable(f"{repo} is gated and {fix}: accept its licence on {page} and "
                                f"{key_fix(HUGGINGFACE.key_env[0], admin)} → API keys (a token with read access).")
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return ModelUnavailable(f"{repo} was not found on the Hub (or it is private and your token cannot see it).")
    if full := as_disk_full(error):
        return full
    if any(isinstance(e, (LocalEntryNotFoundError, ConnectionError, TimeoutError)) or "Connect" in type(e).__name__
           or "Timeout" in type(e).__name__ for e in chain):
        return hub_unreachable(again or _DOWNLOAD_AGAIN.format(repo))
    return ModelUnavailable(f"Downloading {what or repo} failed: "
                            f"{str(error).splitlines()[0] if str(error) else error!r}")


def delete_model(studio: Studio, model: str) -> int:
    """Remove ``model`` (a catalog id or repo id) from the cache, every revision and any half-downloaded file;
    returns the bytes freed. Refused while a download of it is queued or running, or while work of any process on
    the data dir uses it (:func:`holding_repos`); no work takes it until the last file is removed."""
    repo = resolve_repo(model)
    if unfinished_downloads(studio, repo):
        raise InvalidInput(f"{repo} is being downloaded: stop the download first, then delete it.")
    folder = repo_cache_folder(repo)
    with _IN_USE.deleting(studio.store) as held:
        if repo in held:
            raise InvalidInput(f"{repo} cannot be deleted yet: running work (a generation, a video, captioning, "
                               "training…) is using it. Let it finish or stop it first.")
        if not folder.is_dir():
            raise InvalidInput(f"{repo} is not in the model cache.")
        freed = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
        shutil.rmtree(folder)
    return freed
