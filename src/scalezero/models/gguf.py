"""GGUF header reader: key/values and tensor infos, never the tensor data.

It does not use `gguf.GGUFReader`, which builds one numpy view per array element and so
takes ~3 s on the default model's 49k-token vocabulary (longer on Llama-3's 128k); the
header scan below takes tens of milliseconds whatever the size of the tensor data.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from scalezero.errors import UserError

GGUF_MAGIC_BYTES = b"GGUF"


def _check_magic_of(fh: IO[bytes], path: Path, where: str | None = None) -> None:
    magic = fh.read(4)
    if magic != GGUF_MAGIC_BYTES:
        prefix = f"{where}: " if where else ""
        raise UserError(f"{prefix}{path} is not a GGUF file (magic {magic!r})")


def check_gguf_magic(where: str, path: Path) -> None:
    """UserError (prefixed with `where`) unless `path` starts with the GGUF magic."""
    with open(path, "rb") as fh:
        _check_magic_of(fh, Path(path), where)


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
            _check_magic_of(fh, path)
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
        "tensor_bytes": None if None in known_bytes else sum(known_bytes),
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


def vocab_size(model_path: Path) -> int | None:
    """Number of tokens in a GGUF's vocabulary (None if it cannot be read).

    Read from the header alone: gguf.GGUFReader takes seconds on a 49k-token vocabulary,
    which would delay the gateway's start.
    """
    try:
        tokens = read_gguf_metadata(model_path).kv.get("tokenizer.ggml.tokens")
    except Exception:
        return None  # not a readable GGUF: the instance will say why when it starts
    if isinstance(tokens, GGUFArray):
        return tokens.length
    return len(tokens) if isinstance(tokens, list) else None
