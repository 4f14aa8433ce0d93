"""What a Markdown renderer makes of the Markdown a panel shows (CommonMark, with the tables and strikethrough
Gradio's Markdown has)."""

from __future__ import annotations

import html
import re

import markdown_it


def rendered(markdown: str) -> str:
    """``markdown`` as HTML."""
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def shown_text(markdown: str) -> str:
    """What a Markdown renderer shows of ``markdown``: its text, line breaks as new lines."""
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br ?/?>\n?", "\n", rendered(markdown))))
