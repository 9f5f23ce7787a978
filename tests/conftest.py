"""Fixtures shared across test files; helpers and fakes live in tests/support/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

from gateway_fixtures import (  # noqa: F401 - fixtures, found by pytest through this module
    fake_model,
    gateway_process,
    make_gateway,
    real_model,
)
