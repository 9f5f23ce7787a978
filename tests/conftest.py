"""Fixtures shared across test files."""

from pathlib import Path

import pytest
from gateway_fixtures import (  # noqa: F401 - fixtures, found by pytest through this module
    fake_model,
    fetch_real_model,
    gateway_process,
    make_gateway,
    real_model,
)


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The embedded default model GGUF (SmolLM2-135M), fetched once and cached."""
    return fetch_real_model()
