"""Paged, filtered, searchable list of generations and jobs; one entry in full; dashboard aggregates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from masuka.errors import InvalidInput, NotFound
from masuka.history.queries import HistoryFilter, history_choices, history_query, history_stats
from masuka.store import is_id_text, row_id
from masuka.studio import Studio
from masuka.validation import MAX_PAGE

TABLES = {"g": "generations", "j": "jobs"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
MAX_PER_PAGE = 500
GONE = "History entry {!r} does not exist (or is not yours)."


@dataclass
class Filters:
    """The History tab's filter bar; empty values do not filter. Dates are ``YYYY-MM-DD`` (inclusive)."""

    kinds: list[str] = field(default_factory=list)
    model: str = ""
    lora: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    text: str = ""


@dataclass
class Page:
    entries: list[dict]
    total: int
    page: int
    pages: int


def browse(studio: Studio, user: str, admin: bool, filters: Filters | None = None, page: int = 1,
           per_page: int = 48) -> Page:
    """Newest first; a page past the end is the last page (``Page.page`` says which was shown). Each entry gains
    ``key`` and ``file``/``file_status`` (ok, missing, corrupted or none)."""
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(f"Entries per page must be between 1 and {MAX_PER_PAGE}.")
    page = max(1, int(page or 1))
    if page > MAX_PAGE:
        raise InvalidInput(f"Page {page} is far past the end: pages go up to {MAX_PAGE:,} at most.")
    where = _to_store_filter(filters or Filters(), user, admin)
    rows, total = history_query(studio.store, where, per_page, (page - 1) * per_page)
    pages = max(1, math.ceil(total / per_page))
    if page > pages:  # a new search, a deletion or a typed number left it past the end
        page = pages
        rows, total = history_query(studio.store, where, per_page, (page - 1) * per_page)
    for row in rows:
        row["key"] = f"{row['source']}{row['id']}"
        row["file"], row["file_status"] = file_status(studio, row.get("output_path"))
    return Page(rows, total, page, max(1, math.ceil(total / per_page)))


def filter_choices(studio: Studio, user: str, admin: bool) -> dict[str, list[str]]:
    """Kinds, models, statuses and LoRAs that occur in this user's history (for the filter dropdowns)."""
    return history_choices(studio.store, None if admin else user)


#: a row's columns no view or export shows: the runner's process id and its private holder token
PRIVATE_COLUMNS = frozenset({"pid", "holder"})


def entry(studio: Studio, user: str, admin: bool, key: str) -> dict:
    """The full row behind ``key`` (every parameter, timings, cost, error), if it is this user's."""
    table, row_id = parse_key(key)
    row = studio.store.get(table, row_id)
    if row is None or not (admin or row["owner"] == user):
        raise NotFound(GONE.format(key))
    row["key"], row["table"] = key, table
    row["file"], row["file_status"] = file_status(studio, row.get("output_path"))
    if table == "jobs":
        row["metrics"] = studio.store.find("job_metrics", "job_id = ?", [row_id], order_by="step")
    return row


def generation_params(studio: Studio, generation_id: int) -> dict:
    """The parameters stored with one generation (what the generation aids did, say); empty when it is gone."""
    row = studio.store.get("generations", generation_id) or {}
    return row.get("params") or {}


def parse_key(key: str) -> tuple[str, int]:
    """``g<id>`` or ``j<id>`` as (table, id): ASCII digits after the letter, else :class:`InvalidInput`; a number
    no row can have (0, past SQLite's integers) is an entry that does not exist (:class:`NotFound`)."""
    key = (key or "").strip()
    if not key:
        raise InvalidInput("Pick an entry first: a history key, g<number> or j<number>.")
    if len(key) < 2 or key[0] not in TABLES or not is_id_text(key[1:]):
        raise InvalidInput(f"{key!r} is not a history entry (expected g<number> or j<number>).")
    number = row_id(key[1:])
    if number is None:
        raise NotFound(GONE.format(key))
    return TABLES[key[0]], number


def file_status(studio: Studio, stored: str | None) -> tuple[Path | None, str]:
    """``(path, "ok")`` for a readable output, else ``(None, "missing" | "corrupted" | "none")``."""
    if not stored:
        return None, "none"
    path = studio.config.absolute(stored)
    if not path.is_file():
        return None, "missing"
    if path.stat().st_size == 0:
        return None, "corrupted"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.verify()
        except Exception:  # any decoder failure means the file cannot be shown
            return None, "corrupted"
    return path, "ok"


def dashboard(studio: Studio, user: str, admin: bool, days: int | None = 30) -> dict[str, list[dict]]:
    """Generations per day, success rate per day, mean seconds per model, video spend per provider per day."""
    since = (date.today() - timedelta(days=days)).isoformat() if days else None
    return history_stats(studio.store, None if admin else user, since)


def _to_store_filter(filters: Filters, user: str, admin: bool) -> HistoryFilter:
    since, until = _day(filters.since, "From"), _day(filters.until, "To")
    if since and until and since > until:
        raise InvalidInput(f"The date range is empty: {filters.since} is after {filters.until}.")
    return HistoryFilter(
        owner=None if admin else user, kinds=tuple(k for k in filters.kinds if k), model=filters.model or None,
        lora=filters.lora or None, status=filters.status or None, since=since.isoformat() if since else None,
        until=(until + timedelta(days=1)).isoformat() if until and until < date.max else None,  # the last day: no end
        text=filters.text or None)


def _day(text: str, label: str) -> date | None:
    text = (text or "").strip()[:10]
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{label} date {text!r} is not a date like 2026-01-31.") from None
