"""The system Chromium the browser tests drive (Playwright, no browser download), found the same way by each.

Without it a developer's run skips those tests; a CI run fails instead, so a CI image that lost its browser
cannot pass while testing nothing a person sees. A CI run is one with ``CI`` set (GitHub Actions and most CI
services set it; ``.ci/run`` exports it)."""

from __future__ import annotations

import os
import shutil

import pytest

MISSING = "needs the system chromium package (apt-get install chromium); CI installs it"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium() -> str:
    """The browser's path; call at module level: skips the module outside CI when there is none, fails it in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if in_ci():
        pytest.fail("CI is set but no chromium was found: the browser tests need the system chromium package "
                    "(apt-get install chromium)", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)


FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
