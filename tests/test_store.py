"""The SQLite store: self-migration from older databases, interrupted work, WAL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from masuka.errors import InvalidInput, NotFound
from masuka.store import MAX_ROW_ID, Store, find_named, row_id
from tests.conftest import ROOT


def test_older_database_gains_new_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a database made by an older MASUKA: fewer columns, no FTS, no jobs
        conn.execute("create table generations (id integer primary key, owner text, kind text, status text, "
                     "prompt text, model text, seed integer, output_path text, created_at text)")
        conn.execute("insert into generations (owner, kind, status, prompt, model, seed, output_path, created_at) "
                     "values ('local', 'image', 'completed', 'an old fox', 'sdxl', 7, 'outputs/a.png', '2025-01-01')")
    store = Store(path)
    row = store.get("generations", 1)
    assert row["prompt"] == "an old fox" and row["seed"] == 7 and row["loras"] is None
    assert "duration_s" in row and "negative_prompt" in row
    assert [r["id"] for r in store.db["generations"].search("fox")] == [1], "full-text index built for old rows"
    store.insert("jobs", {"kind": "train", "status": "queued"})
    store.close()
    again = Store(path)  # migrating twice changes nothing
    assert again.count("generations") == 1 and again.count("jobs") == 1
    assert again.db.execute("pragma journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("left", ["empty index, no triggers", "one trigger missing"])
def test_search_set_up_cut_short_is_finished_at_the_next_start(tmp_path, left):
    """The full-text index is built in steps, each committed on its own: a first start killed between them left an
    index the next start took for done, so search found nothing, for good."""
    path = tmp_path / "m.db"
    store = Store(path)
    store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a red fox"})
    drop = ["generations_au"] if left == "one trigger missing" else ["generations_ai", "generations_ad",
                                                                     "generations_au"]
    for trigger in drop:
        store.db.execute(f"drop trigger {trigger}")
    if left == "empty index, no triggers":
        store.db.execute("delete from generations_fts")
    store.db.conn.commit()
    store.close()
    again = Store(path)
    new = again.insert("generations", {"kind": "image", "status": "completed", "prompt": "another fox"})
    again.update("generations", new, prompt="another fox, renamed")
    assert sorted(r["id"] for r in again.db["generations"].search("fox")) == [1, new]
    assert [r["id"] for r in again.db["generations"].search("renamed")] == [new]


def test_work_left_running_by_a_dead_process_is_marked_interrupted(tmp_path):
    store = Store(tmp_path / "m.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    gone = store.insert("generations", {"kind": "image", "status": "running", "pid": dead_pid})
    alive = store.insert("generations", {"kind": "image", "status": "running", "pid": os.getppid()})
    done = store.insert("generations", {"kind": "image", "status": "completed", "pid": dead_pid})
    train = store.insert("jobs", {"kind": "train", "status": "running", "pid": dead_pid})
    video = store.insert("jobs", {"kind": "video", "status": "running", "pid": dead_pid})
    changed = store.mark_interrupted()
    assert changed == {"jobs": [train], "generations": [gone]}
    assert store.get("generations", alive)["status"] == "running", "a live process keeps its work"
    assert store.get("generations", done)["status"] == "completed"
    assert store.get("jobs", video)["status"] == "running", "remote video jobs resume polling instead"
    assert "stopped" in store.get("jobs", train)["error"]


def test_a_file_that_is_not_a_database_is_refused_in_words_and_kept(tmp_path, capsys):
    from masuka.cli import main

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # whatever the umask
    (data / "masuka.db").write_text("x\n")
    for argv in (["history", "list"], ["dataset", "list"], ["jobs"]):
        assert main([*argv, "--data-dir", str(data)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: The database {data / 'masuka.db'} cannot be opened (file is not a database)")
        assert "move it aside" in err and err.count("\n") == 1
    assert (data / "masuka.db").read_text() == "x\n"
    assert [path.name for path in data.iterdir()] == ["masuka.db"], "the folder is left as it was: no folders made"
    assert data.stat().st_mode & 0o777 == 0o755, "nor closed to other users"


def test_a_database_that_cannot_be_opened_is_refused_in_words(tmp_path):
    (tmp_path / "masuka.db").mkdir()  # sqlite3: "unable to open database file", as in a folder MASUKA may not write
    with pytest.raises(InvalidInput, match="cannot be opened \\(unable to open database file\\): check that you may"):
        Store(tmp_path / "masuka.db")


def test_other_database_errors_are_left_to_their_callers(tmp_path, monkeypatch):
    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "migrate", full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        Store(tmp_path / "m.db")


@pytest.mark.parametrize("value, expected", [
    (7, 7), ("7", 7), (7.0, 7), (MAX_ROW_ID, MAX_ROW_ID), (MAX_ROW_ID + 1, None), ("99999999999999999999", None),
    (1e30, None), (float("nan"), None), (float("inf"), None), (1.5, None), (0, None), (-3, None), ("-3", None),
    ("1_000", None), ("\u00b2", None), ("abc", None), (None, None),
])
def test_row_ids_are_whole_numbers_sqlite_can_hold(value, expected):
    assert row_id(value) == expected


def test_a_name_or_id_beyond_sqlite_s_integers_is_not_found(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.insert("datasets", {"owner": "local", "name": "cats"})
    assert find_named(store, "datasets", "1", "local", False, "dataset", "")["name"] == "cats"
    for ref in ("99999999999999999999", 99999999999999999999):
        with pytest.raises(NotFound, match="No dataset '99999999999999999999'"):
            find_named(store, "datasets", ref, "local", True, "dataset", "create it first")
    store.close()


def test_a_deleted_row_s_id_is_never_given_again(tmp_path):
    """SQLite reuses the highest id once its row is deleted; ids kept elsewhere (a character's dataset, a run's
    character) would then name another user's new row."""
    store = Store(tmp_path / "m.db")
    first = store.insert("datasets", {"owner": "alice", "name": "anna"})
    store.delete("datasets", first)
    second = store.insert("datasets", {"owner": "bob", "name": "private"})
    assert second > first
    with store.transaction():  # inside a transaction of the caller's too
        store.delete("datasets", second)
        third = store.insert("datasets", {"owner": "bob", "name": "again"})
    store.delete("datasets", third)
    store.insert_many("datasets", [{"owner": "bob", "name": "x"}, {"owner": "bob", "name": "y"}])
    store.close()
    reopened = Store(tmp_path / "m.db")
    assert [r["id"] for r in reopened.find("datasets", order_by="id")] == [third + 1, third + 2]
    reopened.delete_where("datasets", "1 = 1")
    assert reopened.insert("datasets", {"owner": "bob", "name": "z"}) == third + 3


def _fts_pages(store: Store, table: str) -> list[tuple]:
    """The FTS5 index's stored pages: any write to the index changes them."""
    return store.db.execute(f"select id, block from {table}_fts_data order by id").fetchall()


def test_a_job_s_progress_leaves_its_search_entry_alone_and_a_new_title_updates_it(tmp_path):
    path = tmp_path / "m.db"
    old = Store(path)  # a database made before: sqlite-utils' trigger re-indexes a row on any update
    old.db.execute("drop trigger jobs_au")
    old.db.execute("""create trigger jobs_au after update on jobs begin
      insert into jobs_fts (jobs_fts, rowid, title, model) values('delete', old.rowid, old.title, old.model);
      insert into jobs_fts (rowid, title, model) values (new.rowid, new.title, new.model);
    end""")
    old.close()
    store = Store(path)
    for table, searched in (("jobs", "[title], [model]"), ("generations", "[prompt], [negative_prompt], [model]")):
        sql = store.db.execute("select sql from sqlite_master where name = ?", [f"{table}_au"]).fetchone()[0]
        assert f"AFTER UPDATE OF {searched} ON [{table}]" in sql
    job = store.insert("jobs", {"kind": "train", "status": "running", "title": "red fox", "model": "fake/tiny"})
    before = _fts_pages(store, "jobs")
    store.update("jobs", job, progress=0.5, step=5, updated_at="2026-01-01T00:00:00")
    assert _fts_pages(store, "jobs") == before
    store.update("jobs", job, title="blue whale")
    assert [r["id"] for r in store.db["jobs"].search("whale")] == [job]
    assert not list(store.db["jobs"].search("fox"))
    assert Store(path).db.execute("select sql from sqlite_master where name = 'jobs_au'").fetchone()[0] == \
        store.db.execute("select sql from sqlite_master where name = 'jobs_au'").fetchone()[0]  # opened again: same


@pytest.mark.parametrize("text, query", [
    ("-", ""), ("*", ""), ("✨", ""), ("- * ✨ ()", ""), ('"', ""),
    ("red -fox ✨", '"red"* "fox"*'), ("über 2", '"über"* "2"*'), ("snow,fox", '"snow"* "fox"*'),
    ("red/snow a:fox", '"red"* "snow"* "a"* "fox"*'), ("snake_case", '"snake"* "case"*'),
])
def test_a_search_keeps_only_words_with_a_letter_or_a_digit(tmp_path, text, query):
    assert Store(tmp_path / "m.db").quote_fts(text) == query


def test_words_joined_by_punctuation_find_a_row_holding_them_apart(tmp_path):
    """As the index reads text, letters and digits make words and anything else separates them: "snow,fox" finds
    "a red fox, snow" as "snow fox" does (FTS would read the joined words as a phrase, in that order)."""
    store = Store(tmp_path / "m.db")
    job = store.insert("jobs", {"kind": "train", "status": "running", "title": "a red fox, snow", "model": "m"})
    for text in ("snow fox", "snow,fox", "red/snow", "a:fox", "fox.sno"):
        assert [row["id"] for row in store.db["jobs"].search(store.quote_fts(text))] == [job], text


def test_a_store_opened_first_in_a_process_loads_no_pandas_and_pandas_still_imports_after(tmp_path):
    """sqlite-utils imports pandas when it can (for one column type MASUKA never stores): half the CPU of a short
    command. The first store of a process opens without it, and pandas stays importable for code that wants it."""
    script = ("import sys\nfrom masuka.store import Store\nstore = Store(sys.argv[1])\n"
              "store.insert('jobs', {'kind': 'train', 'status': 'queued'})\nprint('pandas' in sys.modules)\n"
              "import pandas\nprint(pandas.Timestamp(0).year, store.count('jobs'))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.db")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1970", "1"]
