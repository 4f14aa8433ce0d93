"""Messages people are shown and logs keep stay short, whatever the user typed."""

from __future__ import annotations

from masuka.errors import MAX_MESSAGE_CHARS, bounded


def test_a_short_message_is_left_as_it_is():
    assert bounded("No dataset 'cat': create it first.") == "No dataset 'cat': create it first."


def test_a_long_name_loses_its_middle_and_the_message_keeps_the_rest():
    shortened = bounded(f"Dataset {'a' * 60_000 + 'b' * 60_000!r} and 'cat' are not there: create them first.")
    assert len(shortened) <= MAX_MESSAGE_CHARS
    assert shortened.startswith("Dataset 'aaa") and shortened.endswith("bbb' and 'cat' are not there: create them "
                                                                       "first.")
    assert "… (119,0" in shortened and "characters left out) …" in shortened


def test_a_long_message_without_a_long_quoted_part_loses_its_middle():
    for message in ("word " * 30_000, f"{'x' * 5000!r} {'y' * 5000!r} {'z' * 5000!r}"):
        shortened = bounded(message)
        assert len(shortened) <= MAX_MESSAGE_CHARS and "characters left out" in shortened
        assert shortened[:400] == message[:400] and shortened[-400:] == message[-400:]
