"""Fixtures shared by the serving tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: A stand-in for llama.cpp's llama-server (tests/support/fake_llama_server.py).
FAKE_SERVER = Path(__file__).resolve().parents[1] / "support" / "fake_llama_server.py"


@pytest.fixture
def server_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable standing in for llama-server, named by SCALEZERO_LLAMA_SERVER."""
    path = tmp_path / "llama-server"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    path.chmod(0o755)
    monkeypatch.setenv("SCALEZERO_LLAMA_SERVER", str(path))
    return path
