"""Launch outcomes beyond the local server: a share link that could not open."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from masuka.errors import InvalidInput
from masuka.server import check_share_link
from tests.conftest import ROOT, free_port


# the cheap check first: the first test in a process also waits for the session's heavy imports (conftest.py)
def test_only_a_share_link_asked_for_and_missing_is_refused():
    check_share_link(False, None)
    check_share_link(True, "https://abc.gradio.live")
    with pytest.raises(InvalidInput, match=r"^the share link could not open \(no internet\?\)"):
        check_share_link(True, None)


@pytest.mark.slow
def test_a_share_link_that_did_not_open_stops_the_app_in_one_line(tmp_path):
    """Gradio says "Could not create share link" and serves on; MASUKA stops instead (exit 2), as for a failed ngrok
    tunnel: a local app that distrusts this computer's own API calls, as if through a tunnel, is no use. The tunnel
    client is a stand-in that fails as frpc does when no share server answers (no network needed or used)."""
    from gradio.tunneling import BINARY_FILENAME

    frpc = tmp_path / "hf" / "gradio" / "frpc" / BINARY_FILENAME
    frpc.parent.mkdir(parents=True)
    frpc.write_text("#!/bin/sh\necho 'login to server failed: dial tcp: no route to host'\n", encoding="utf-8")
    frpc.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MASUKA_AUTH", "NGROK_AUTHTOKEN")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               GRADIO_SHARE_SERVER_ADDRESS="127.0.0.1:9")  # no call to Gradio's API server for an address
    done = subprocess.run([sys.executable, "app.py", "--share", "--port", str(free_port()), "--data-dir",
                           str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: the share link could not open (no internet?): ")
    assert "Traceback" not in done.stderr and "MASUKA is running" not in done.stdout
