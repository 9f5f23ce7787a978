"""A file's pages in the kernel's page cache: how many are resident, and dropping them.

A cold start from disk and one from the page cache differ by the storage read, so the
experiment must know which one it measured. `resident_fraction` asks the kernel
(mmap + mincore) rather than inferring it from a read time.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def resident_fraction(path: Path | str) -> float | None:
    """Share of `path`'s pages in the page cache (0..1); None where it cannot be asked
    (not Linux, an empty file, a filesystem without mmap)."""
    size = os.path.getsize(path)
    if size == 0 or not hasattr(os, "posix_fadvise"):
        return None
    try:
        libc = _libc()
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return sum(v & 1 for v in vec) / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


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
