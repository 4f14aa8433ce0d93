"""Reading back what was made: recent generations of a user, and a generation's files."""

from __future__ import annotations

from masuka.store import owner_clause
from masuka.studio import Studio


def recent_generations(studio: Studio, user: str, admin: bool = False, limit: int = 50, offset: int = 0,
                       kind: str | None = None) -> list[dict]:
    """Newest first; each row gains ``file`` (absolute path, or None when the file is missing)."""
    where, args = owner_clause(user, admin)
    if kind:
        where, args = f"{where} and kind = ?", [*args, kind]
    rows = studio.store.find("generations", where, args, order_by="id desc", limit=limit, offset=offset)
    for row in rows:
        path = studio.config.absolute(row["output_path"]) if row.get("output_path") else None
        row["file"] = path if path is not None and path.is_file() else None
    return rows
