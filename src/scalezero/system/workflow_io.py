"""Glue for the workflow's scripts: send everything a step prints to its rule's log.

Snakemake scripts run inside the Snakemake process (or a conda one) and often spawn
children; redirecting the file descriptors, not only `sys.stdout`, puts the children's
output in the same log. A user error is written as one clear line before it is raised,
so `snakemake` shows it in the log tail instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from scalezero.errors import UserError


@contextlib.contextmanager
def logged(log_path: str | os.PathLike[str]) -> Iterator[None]:
    """Redirect stdout and stderr (descriptors 1 and 2) to `log_path` for the block."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
