"""The TLS context MASUKA's HTTP clients share: one per process."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default context (the CA bundle ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` names, else certifi's), made
    once: reading the bundle takes about 40 ms of CPU, which each new client paid (a provider client opens two
    for every job it runs or polls, a key check one, a Hub probe one)."""
    import httpx  # here, not at import: the benchmark suite runs where only the model libraries are installed

    return httpx.create_ssl_context()
