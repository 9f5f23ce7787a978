"""Fixtures shared across test files."""

from gateway_fixtures import (  # noqa: F401 - fixtures, found by pytest through this module
    fake_model,
    gateway_process,
    make_gateway,
    real_model,
)
