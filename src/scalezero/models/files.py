"""Model files on disk: hashing, verified copies with progress, atomic output.

Files are written next to their destination and renamed into place, so an interrupted
write never leaves a half file under the final name.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from scalezero.errors import UserError

COPY_BLOCK_BYTES = 8 * 1024 * 1024
# Downloads larger than this report progress on stderr.
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
PROGRESS_INTERVAL_S = 2.0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(COPY_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(where: str, expected: str | None, actual: str) -> None:
    """UserError when `expected` (if given) is not `actual`."""
    if expected is not None and expected.lower() != actual:
        raise UserError(f"{where}: sha256 mismatch: expected {expected.lower()}, got {actual}")


def copy_hashing(
    src: IO[bytes], dst: IO[bytes], on_block: Callable[[int], None] | None = None
) -> str:
    """Copy a stream block by block and return the sha256 of what went through."""
    digest = hashlib.sha256()
    while block := src.read(COPY_BLOCK_BYTES):
        digest.update(block)
        dst.write(block)
        if on_block is not None:
            on_block(len(block))
    dst.flush()
    os.fsync(dst.fileno())
    return digest.hexdigest()


class Progress:
    """Progress lines on stderr for long downloads, at most one per interval."""

    def __init__(self, label: str, total_bytes: int | None) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.done_bytes = 0
        self.start_s = time.monotonic()
        self.last_s = self.start_s
        self.enabled = total_bytes is None or total_bytes >= PROGRESS_MIN_BYTES

    def __call__(self, n_bytes: int) -> None:
        self.done_bytes += n_bytes
        now = time.monotonic()
        if self.enabled and now - self.last_s >= PROGRESS_INTERVAL_S:
            self.last_s = now
            self._print(now)

    def finish(self) -> None:
        if self.enabled:
            self._print(time.monotonic())

    def _print(self, now_s: float) -> None:
        done_mib = self.done_bytes / 2**20
        rate = done_mib / max(now_s - self.start_s, 1e-9)
        if self.total_bytes:
            pct = 100.0 * self.done_bytes / self.total_bytes
            total_mib = self.total_bytes / 2**20
            text = f"{done_mib:.0f}/{total_mib:.0f} MiB ({pct:.0f} %)"
        else:
            text = f"{done_mib:.0f} MiB"
        print(f"{self.label}: {text}, {rate:.1f} MiB/s", file=sys.stderr, flush=True)


def _umask() -> int:
    # Read without os.umask(), which would briefly change it for every thread.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside `out`; rename it onto `out` only on success.

    An interrupted write never leaves a partial file under the final name.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes the file private (0600); a model file is as readable as any other.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
