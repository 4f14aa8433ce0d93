"""The SQL of the History browser and dashboard: generations and jobs as one list, filters, aggregates.

Built on :class:`masuka.store.Store`'s public methods (``query``, ``reading``, ``quote_fts``): the store stays
the one door to SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

from masuka.jobs import FINISHED
from masuka.store import UNFINISHED, Store, owner_clause

#: the kinds History lists: generations' (image, upscale, video) and jobs' (video: one that made no video; train,
#: caption, download)
KINDS = ("image", "upscale", "video", "train", "caption", "download")
#: the statuses of both: waiting or working, then done one way or another
STATUSES = (*UNFINISHED, *FINISHED)


@dataclass
class HistoryFilter:
    """What the History browser asks for; ``None``/empty fields do not filter."""

    owner: str | None = None
    kinds: tuple[str, ...] = ()
    model: str | None = None
    lora: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    text: str | None = None


#: a video job that made its video is listed as that video (a generation row): the job stands for it until then,
#: and again once the video is deleted (it still names the chain's clips and the inputs)
_VIDEO_JOB_SHOWN = "not (kind = 'video' and exists (select 1 from generations g where g.job_id = jobs.id))"

#: generations and jobs as one list: the columns both sides show
_HISTORY_SELECT = {
    "generations": ("select 'g' as source, id, owner, kind, status, model, provider, prompt, seed, created_at, "
                    "duration_s, cost_usd, output_path, error from generations"),
    "jobs": ("select 'j' as source, id, owner, kind, status, model, provider, title as prompt, null as seed, "
             "created_at, "
             "round((julianday(finished_at) - julianday(started_at)) * 86400, 3) as duration_s, cost_usd, "
             "null as output_path, error from jobs"),
}


def history_query(store: Store, where: HistoryFilter, limit: int, offset: int = 0) -> tuple[list[dict], int]:
    """One page of generations and jobs, newest first, and how many match in all."""
    parts, counts, args = [], [], []
    for table, select in _HISTORY_SELECT.items():
        condition, values = _history_where(store, table, where)
        parts.append(f"{select} where {condition}")
        counts.append(f"(select count(*) from {table} where {condition})")
        args.extend(values)
    with store.reading():
        total = store.query(f"select {' + '.join(counts)} as total", args)[0]["total"]
        rows = store.query(f"{' union all '.join(parts)} order by created_at desc, id desc limit ? offset ?",
                           [*args, limit, offset])
    return rows, total


def history_stats(store: Store, owner: str | None, since: str | None = None) -> dict[str, list[dict]]:
    """Dashboard aggregates over generations: per day, success rate, mean time per model, video spend."""
    condition, args = _history_where(store, "generations", HistoryFilter(owner=owner, since=since))
    queries = {
        "per_day": "select substr(created_at, 1, 10) as day, kind, count(*) as count from generations "
                   "where {c} group by day, kind order by day",
        "success": "select substr(created_at, 1, 10) as day, round(100.0 * sum(status = 'completed') / count(*), 1) "
                   "as success_pct, count(*) as count from generations where {c} and status not in "
                   "('queued', 'running') group by day order by day",
        "per_model": "select model, round(avg(duration_s), 3) as mean_s, count(*) as count from generations "
                     "where {c} and status = 'completed' group by model order by mean_s desc",
        "spend": "select substr(created_at, 1, 10) as day, coalesce(provider, '?') as provider, "
                 "round(sum(cost_usd), 4) as usd from generations where {c} and kind = 'video' "
                 "and cost_usd is not null group by day, provider order by day",
    }
    with store.reading():
        return {name: store.query(sql.format(c=condition), args) for name, sql in queries.items()}


def history_choices(store: Store, owner: str | None) -> dict[str, list[str]]:
    """Values the filters offer: kinds, models, statuses and LoRA names found in this user's rows."""
    condition, args = owner_clause(owner or "", owner is None)
    found: dict[str, set[str]] = {"kind": set(), "model": set(), "status": set()}
    with store.reading():
        for table in ("generations", "jobs"):
            for column, values in found.items():
                values.update(row["value"] for row in store.query(
                    f"select distinct {column} as value from {table} where {condition}", args) if row["value"])
        loras = {row["name"] for row in store.query(
            f"select distinct json_extract(l.value, '$.name') as name from generations, json_each(generations.loras) l "
            f"where {condition} and generations.loras like '[{{%'", args) if row["name"]}
    return {**{k: sorted(v) for k, v in found.items()}, "lora": sorted(loras)}


def _history_where(store: Store, table: str, where: HistoryFilter) -> tuple[str, list]:
    conditions, args = [_VIDEO_JOB_SHOWN] if table == "jobs" else [], []
    if where.owner is not None:
        conditions.append("owner = ?")
        args.append(where.owner)
    if where.kinds:
        conditions.append(f"kind in ({','.join('?' * len(where.kinds))})")
        args.extend(where.kinds)
    for column in ("model", "status"):
        if getattr(where, column):
            conditions.append(f"{column} = ?")
            args.append(getattr(where, column))
    if where.since:
        conditions.append("created_at >= ?")
        args.append(where.since)
    if where.until:
        conditions.append("created_at < ?")
        args.append(where.until)
    if where.lora:
        conditions.append("exists (select 1 from json_each(generations.loras) where json_extract(value, '$.name') = ?)"
                          if table == "generations" else "id in (select job_id from loras where name = ?)")
        args.append(where.lora)
    text = (where.text or "").replace("\0", "").strip()  # SQLite ends a text at a NUL
    query = store.quote_fts(text)
    if query:  # no letter or digit ("-", '"', "✨") leaves nothing to search for: no text filter
        # one rule for both tables: a word of the prompt (a job's title) or model starts with each searched word
        conditions.append(f"id in (select rowid from {table}_fts where {table}_fts match ?)")
        args.append(query)
    return " and ".join(conditions) or "1 = 1", args
