"""Lowest layer: processes, devices, the engine build, page cache, workflow I/O."""
