"""A file's pages in the kernel's page cache: how many are resident, and dropping them.

A cold start from disk and one from the page cache differ by the storage read, so the
experiment must know which one it measured. `resident_fraction` asks the kernel
(mmap + mincore) rather than inferring it from a read time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import mmap
import os
from pathlib import Path
from typing import Any

_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "mincore"):
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def page_cache_residency(path: Path | str) -> dict[str, Any]:
    """How much of `path` is in the page cache now, without reading it.

    Maps the file read-only and asks mincore(2) which of its pages are resident (the
    mapping itself reads nothing). Returns path, file_bytes, pages, resident_pages,
    resident_share (0-1; NaN when it cannot be asked) and method ("mincore", or "none"
    where the C library has no mincore, the file is empty or the call fails).
    """
    path = Path(path)
    size = path.stat().st_size
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    out: dict[str, Any] = {"path": str(path), "file_bytes": size, "pages": pages,
                           "resident_pages": None, "resident_share": math.nan,
                           "method": "none"}
    libc = _libc()
    if libc is None or size == 0:
        return out
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            return out
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return out
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    resident = sum(v & 1 for v in vec)  # bit 0: page resident; the rest is reserved
    out.update(resident_pages=resident, resident_share=resident / pages, method="mincore")
    return out


def resident_fraction(path: Path | str) -> float | None:
    """Share of `path`'s pages in the page cache (0..1); None where it cannot be asked."""
    share = page_cache_residency(path)["resident_share"]
    return None if math.isnan(share) else float(share)


def drop_cached_pages(path: Path | str) -> bool:
    """Ask the kernel to drop `path`'s clean cached pages (flushing dirty ones first);
    False where it cannot be asked. Whether it did is for `resident_fraction` to say:
    some filesystems (and pages mapped by a running process) keep them."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        # Dirty pages cannot be dropped: a file just written must reach the disk first.
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
