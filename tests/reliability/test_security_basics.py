"""Security basics that hold for the whole code base: no remote code, no pickle, safetensors only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "masuka"
SOURCES = {path: path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")}


def offending(pattern: str, allowed=lambda line: False) -> list[str]:
    found = []
    for path, text in SOURCES.items():
        for number, line in enumerate(text.splitlines(), 1):
            if re.search(pattern, line) and not allowed(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    return found


def test_no_remote_code_is_ever_trusted():
    assert offending(r"trust_remote_code\s*=\s*True") == []


def test_no_pickle_loading():
    assert offending(r"\bimport pickle\b|\bpickle\.loads?\(|\bdill\b|joblib\.load") == []
    assert offending(r"torch\.load\(", allowed=lambda line: "weights_only=True" in line) == []


def test_every_from_pretrained_of_weights_insists_on_safetensors():
    weightless = ("Tokenizer", "Processor", "Config", "Scheduler", "tokenizer", "processor", "config", "scheduler")
    missing = []
    for path, text in SOURCES.items():
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_pretrained"):
                continue
            receiver = ast.unparse(node.func.value)
            safe = any(k.arg == "use_safetensors" and ast.unparse(k.value) == "True" for k in node.keywords)
            if not safe and not any(word in receiver for word in weightless):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {receiver}.from_pretrained")
    assert missing == [], "weights must load with use_safetensors=True"
