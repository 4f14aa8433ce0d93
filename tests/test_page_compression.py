"""The page, ``/config`` and ``/gradio_api/info`` are gzipped for a client that accepts it (Gradio sends them as
they are); what Gradio compresses itself is left to it."""

from __future__ import annotations

import gzip

import httpx
import pytest

from masuka.page_compression import PAGES


@pytest.mark.parametrize("path", sorted(PAGES))
def test_the_page_and_its_descriptions_are_gzipped_when_the_client_takes_gzip(shared_app, path):
    url = shared_app().url.rstrip("/") + path
    with httpx.Client(timeout=60) as client:
        plain = client.get(url, headers={"accept-encoding": "identity"})
        packed = client.get(url, headers={"accept-encoding": "gzip, deflate"})
        raw = client.build_request("GET", url, headers={"accept-encoding": "gzip"})
        streamed = client.send(raw, stream=True)
        body = b"".join(streamed.iter_raw())
        streamed.close()
    assert plain.status_code == packed.status_code == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip" and "accept-encoding" in packed.headers["vary"].lower()
    assert packed.content == plain.content  # the same answer, decompressed
    assert gzip.decompress(body) == plain.content and len(body) * 4 < len(plain.content)


def test_files_gradio_compresses_itself_are_left_to_it(shared_app):
    with httpx.Client(timeout=60) as client:
        theme = client.get(shared_app().url.rstrip("/") + "/theme.css", headers={"accept-encoding": "br, gzip"})
    assert theme.status_code == 200 and theme.headers.get("content-encoding") == "br"
