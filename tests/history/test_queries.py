"""History queries on a generated 20,000-row store (``bench history`` times them on 100,000): owner scope, filters,
paging, full-text search, dashboard."""

from __future__ import annotations

import pytest

from masuka.errors import InvalidInput, NotFound
from masuka.history.browse import Filters, browse, dashboard, entry, filter_choices
from masuka.video.catalog import REMOTE_PROVIDERS

ROWS = 20_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from masuka.bench.history import fill
    from masuka.config import Config
    from masuka.studio import Studio

    config = Config.from_env(data_dir=tmp_path_factory.mktemp("big") / "data", auth="alice:a,bob:b")
    studio = Studio.open(config)
    fill(studio.store, ROWS)
    yield studio
    studio.close()


def test_store_holds_all_rows_and_each_user_sees_only_their_own(big):
    alice, bob = browse(big, "alice", False), browse(big, "bob", False)
    everyone = browse(big, "admin", True)
    assert everyone.total == ROWS
    assert alice.total + bob.total == ROWS and 0 < alice.total < ROWS
    assert {e["owner"] for e in alice.entries} == {"alice"}
    assert {e["owner"] for e in everyone.entries} == {"alice", "bob"}


def test_pages_are_newest_first_and_do_not_overlap(big):
    first, second = browse(big, "alice", False, page=1), browse(big, "alice", False, page=2)
    stamps = [e["created_at"] for e in first.entries + second.entries]
    assert stamps == sorted(stamps, reverse=True)
    assert not {e["key"] for e in first.entries} & {e["key"] for e in second.entries}
    assert first.pages == -(-first.total // 48)


def test_generations_and_jobs_share_one_list(big):
    kinds = {e["kind"] for e in browse(big, "alice", False, per_page=200).entries}
    assert {"image", "video"} <= kinds and kinds & {"train", "caption", "download"}
    jobs = browse(big, "alice", False, Filters(kinds=["train"]))
    assert jobs.total > 0 and {e["key"][0] for e in jobs.entries} == {"j"}


def test_combined_filters_match_every_condition(big):
    page = browse(big, "alice", False, Filters(kinds=["image"], model="sdxl", status="completed", lora="style3"),
                  per_page=100)
    assert page.total > 0
    for found in page.entries:
        row = entry(big, "alice", False, found["key"])
        assert (row["kind"], row["model"], row["status"]) == ("image", "sdxl", "completed")
        assert "style3" in [x["name"] for x in row["loras"]]


def test_full_text_search_finds_prompts_with_every_word(big):
    page = browse(big, "alice", False, Filters(text="neon dragon"), per_page=500)
    assert page.total > 0
    assert all({"neon", "dragon"} <= set(e["prompt"].split()) for e in page.entries)
    assert browse(big, "alice", False, Filters(text='"unbalanced OR NOT')).total == 0  # no FTS syntax error


def test_date_range_is_inclusive_and_bad_dates_are_refused(big):
    newest = browse(big, "alice", False).entries[0]["created_at"][:10]
    page = browse(big, "alice", False, Filters(since=newest, until=newest), per_page=500)
    assert page.total > 0 and all(e["created_at"].startswith(newest) for e in page.entries)
    with pytest.raises(InvalidInput, match="not a date"):
        browse(big, "alice", False, Filters(since="last tuesday"))
    with pytest.raises(InvalidInput, match="empty"):
        browse(big, "alice", False, Filters(since="2026-02-01", until="2026-01-01"))
    assert browse(big, "alice", False, Filters(since=newest, until="9999-12-31")).total == \
        browse(big, "alice", False, Filters(since=newest)).total  # the last day there is: no end


def test_dashboard_figures_add_up(big):
    figures = dashboard(big, "alice", False, days=None)
    counted = sum(day["count"] for day in figures["per_day"])
    generations = browse(big, "alice", False, Filters(kinds=["image", "video"])).total
    assert counted == generations
    assert all(0 <= day["success_pct"] <= 100 for day in figures["success"])
    assert {m["model"] for m in figures["per_model"]} == {"flux-dev", "flux-schnell", "sdxl", "sd35-large"}
    # every video provider that has rows is counted, whichever the catalog lists (the fill draws from it)
    spent = {r["provider"] for r in big.store.query(
        "select distinct provider from generations where owner = 'alice' and kind = 'video' and cost_usd is not null")}
    assert {s["provider"] for s in figures["spend"]} == spent and spent <= set(REMOTE_PROVIDERS)
    assert sum(s["usd"] for s in figures["spend"]) > 0


def test_another_users_entry_is_not_found(big):
    bobs = browse(big, "bob", False).entries[0]["key"]
    with pytest.raises(NotFound):
        entry(big, "alice", False, bobs)
    assert entry(big, "admin", True, bobs)["owner"] == "bob"


def test_filter_choices_list_what_occurs(big):
    choices = filter_choices(big, "alice", False)
    assert {"image", "video", "train"} <= set(choices["kind"])
    assert "style3" in choices["lora"] and "sdxl" in choices["model"]


def test_job_search_is_plain_text_word_by_word(studio):
    for title in ("fox run 500 steps", "caption axb", "fox in the snow"):
        studio.store.insert("jobs", {"kind": "train", "status": "completed", "title": title})

    def found(text: str) -> list[str]:
        return [e["prompt"] for e in browse(studio, "local", False, Filters(text=text)).entries]

    assert found("a_b") == []  # no LIKE wildcards
    everything = found("")
    assert len(everything) == 3
    # no letter or digit is nothing to search for: no text filter, not an empty page
    assert found("%") == found("_") == found("-") == found("*") == found("✨ -") == everything
    assert found("50%") == ["fox run 500 steps"], "'%' separates words, as in a prompt: 50 starts 500"
    assert found("fox snow") == ["fox in the snow"]
    assert found("snow\x00") == ["fox in the snow"]
    with pytest.raises(InvalidInput, match="past the end"):
        browse(studio, "local", False, page=10**20)


@pytest.mark.parametrize(("text", "found"), [
    ("tiny", True), ("tin", True), ("TIN", True), ("fake/ti", True), ("fa ti", True), ("iny", False),
    ("ake", False), ("tiny zebra", False), ('"tin', True), ("tin OR zebra", False), ("%", True)])
def test_generations_and_jobs_match_a_search_the_same_way(studio, text, found):
    """Jobs matched any substring (LIKE) and generations whole words (FTS5), so "tin" found a download job of
    fake/tiny but not an image of it: both now match words starting with each searched word."""
    from masuka import jobs

    studio.store.insert("generations", {"kind": "image", "status": "completed", "model": "fake/tiny", "prompt": "x"})
    jobs.create(studio.store, "download", "local", title="Get", model="fake/tiny", params={"repo": "fake/tiny"})
    keys = {e["key"][0] for e in browse(studio, "local", False, Filters(text=text)).entries}
    assert keys == ({"g", "j"} if found else set())


def test_jobs_of_a_database_made_before_their_search_index_are_found(tmp_path):
    """Jobs gained a full-text index: a database from before it gets one, filled, when the app opens it."""
    from masuka.config import Config
    from masuka.studio import Studio

    config = Config.from_env(data_dir=tmp_path / "data", auth="")
    studio = Studio.open(config)
    studio.store.insert("jobs", {"kind": "download", "status": "completed", "title": "Download fake/tiny"})
    studio.store.db["jobs"].disable_fts()  # as a database of an older MASUKA
    studio.close()
    studio = Studio.open(config)
    try:
        assert [e["key"] for e in browse(studio, "local", False, Filters(text="tin")).entries] == ["j1"]
    finally:
        studio.close()
