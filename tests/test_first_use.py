"""What a newcomer meets at the terminal: start-up lines that name MASUKA's flags, one-line errors, help texts."""

from __future__ import annotations


def test_start_up_names_masukas_share_flag_not_gradios(live_app, capsys):
    app = live_app()
    out = capsys.readouterr().out
    assert f"MASUKA is running on {app.url}" in out
    assert "--share" in out and "share=True" not in out
