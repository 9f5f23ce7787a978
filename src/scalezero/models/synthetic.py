"""Synthetic GGUF models: random weights in the shapes of real llama-architecture models.

Cold start, memory and load time depend on a model's size and layout, not on what its
weights say. A synthetic model lets the experiment sweep model size (135M to 8B) with no
multi-GB download and no licence gate: the tensors have exactly the names, shapes and
types that llama.cpp expects for the `llama` architecture, the weights are seeded
normal noise (std 0.02, norms 1) so inference runs and its logits are finite, and the
tokenizer is copied from a donor GGUF (all `tokenizer.*` keys, chat template included)
so prompts tokenize and the chat endpoint works. The output is nonsense text.

The vocabulary comes from the donor. The default donor is the bundled
`data/smollm2-vocab.gguf` (SmolLM2's 49,152-token tokenizer, no tensors), so a model can
be built with no network. Real Llama-3 models have a 128,256-token vocabulary: with the
default donor their embedding (and, for 8B, output) matrices are smaller than the real
ones, so the file has fewer parameters and bytes than the real model (see
`ModelShape.parameter_count`; `write_synthetic_model` reports both). Use a Llama-3 GGUF
as donor to get the real sizes.

Tensors are written as they are generated, in blocks of rows, so an 8B F16 model
(~16 GB) is written with about 0.2 GB of memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGML_QUANT_VERSION,
    GGMLQuantizationType,
    GGUFValueType,
    GGUFWriter,
    LlamaFileType,
    quants,
)

from scalezero.errors import UserError
from scalezero.models.files import atomic_output
from scalezero.models.gguf import GGUFArray, read_gguf_metadata
from scalezero.models.shapes import DTYPE_NAMES, ModelShape, resolve_shape

ARCH = "llama"
WEIGHT_STD = 0.02
# Rows are generated and written in blocks of about this many elements (16 MiB as f32).
BLOCK_ELEMENTS = 4 * 1024 * 1024
DEFAULT_VOCAB_FILE = "smollm2-vocab.gguf"

# dtype name -> (tensor type of the 2-D weights, general.file_type)
DTYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}
if tuple(DTYPES) != DTYPE_NAMES:  # the config schema lists DTYPE_NAMES
    raise ImportError("synthetic.DTYPES and shapes.DTYPE_NAMES differ")


def default_vocab_file() -> Path:
    """The bundled vocabulary-only GGUF used when no donor is given."""
    return Path(str(resources.files("scalezero") / "data" / DEFAULT_VOCAB_FILE))


# --------------------------------------------------------------------------- donor metadata


def _donor_metadata(donor: Path, keep: Any) -> list[tuple[str, Any, GGUFValueType, Any]]:
    """(key, value, type, item type) of the donor's key/values accepted by `keep(key)`."""
    meta = read_gguf_metadata(donor, load_arrays=True)
    out = []
    for key, value in meta.kv.items():
        if not keep(key) or isinstance(value, GGUFArray):
            continue
        vtype, item_type = meta.kv_types[key]
        if vtype == GGUFValueType.ARRAY and not value:
            continue  # the writer cannot write an empty array; absent reads the same
        out.append((key, value, vtype, item_type))
    return out


def _tokenizer_metadata(donor: Path) -> list[tuple[str, Any, GGUFValueType, Any]]:
    entries = _donor_metadata(donor, lambda key: key.startswith("tokenizer."))
    if not any(key == "tokenizer.ggml.tokens" for key, *_ in entries):
        raise UserError(f"donor {donor} has no tokenizer (tokenizer.ggml.tokens)")
    return entries


def make_vocab_file(donor: Path, out: Path) -> None:
    """Write a vocabulary-only GGUF (no tensors) from a donor model.

    Keeps the donor's tokenizer (all `tokenizer.*` keys) and its architecture
    hyper-parameters, which llama.cpp reads even when it loads only the vocabulary
    (`vocab_only=True`). The output depends only on the donor, so it can be regenerated
    byte for byte.
    """
    donor = Path(donor)
    meta_keys = _donor_metadata(donor, lambda key: True)
    kv = {key: value for key, value, *_ in meta_keys}
    arch = kv.get("general.architecture")
    if not isinstance(arch, str):
        raise UserError(f"donor {donor} has no general.architecture")
    if "tokenizer.ggml.tokens" not in kv:
        raise UserError(f"donor {donor} has no tokenizer (tokenizer.ggml.tokens)")
    source_name = kv.get("general.name") or donor.name
    # Keys that describe tensors or quantization do not apply to a file without tensors.
    skip = {"general.file_type", "general.quantization_version", "general.alignment"}
    writer = GGUFWriter(None, arch)
    writer.add_type("vocab")
    writer.add_name(f"{source_name} vocabulary")
    writer.add_description(
        # Not the donor's file name: the output depends only on the donor's content.
        f"Tokenizer and hyper-parameters of {source_name}; no tensors."
    )
    for key, value, vtype, item_type in meta_keys:
        if key in skip or key in ("general.architecture", "general.type", "general.name"):
            continue
        if key.startswith("general.") or key.startswith(f"{arch}.") or key.startswith("tokenizer."):
            writer.add_key_value(key, value, vtype, sub_type=item_type)
    with _gguf_file(writer, Path(out)):
        pass  # no tensors: the header is the file


@contextlib.contextmanager
def _gguf_file(writer: GGUFWriter, out: Path) -> Iterator[IO[bytes]]:
    """Header, key/values and tensor infos written to a temporary file that replaces `out`
    only once the body (written by the caller to the yielded file) is synced whole."""
    with atomic_output(out) as tmp:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        yield fout
        fout.flush()
        os.fsync(fout.fileno())
        writer.close()


# --------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class _TensorPlan:
    name: str
    shape: tuple[int, ...]  # numpy order: (rows, row_length)
    qtype: GGMLQuantizationType
    kind: str  # "weight" (random), "norm" (ones) or "rope_freqs"

    @property
    def n_bytes(self) -> int:
        block, type_bytes = GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape) // block * type_bytes


def _weight_type(qtype: GGMLQuantizationType, row_length: int) -> GGMLQuantizationType:
    # Block-quantized rows must hold whole blocks; llama.cpp's converter keeps F16 otherwise.
    block, _ = GGML_QUANT_SIZES[qtype]
    return qtype if row_length % block == 0 else GGMLQuantizationType.F16


def _tensor_plan(
    shape: ModelShape, vocab_size: int, qtype: GGMLQuantizationType
) -> list[_TensorPlan]:
    """Tensors of a llama-architecture model, named as llama.cpp loads them."""
    h, hd = shape.hidden_size, shape.head_dim
    q, kv = shape.n_heads * hd, shape.n_kv_heads * hd
    f32 = GGMLQuantizationType.F32

    def weight(name: str, rows: int, cols: int) -> _TensorPlan:
        return _TensorPlan(name, (rows, cols), _weight_type(qtype, cols), "weight")

    plan = [
        weight("token_embd.weight", vocab_size, h),
        _TensorPlan("output_norm.weight", (h,), f32, "norm"),
    ]
    if not shape.tie_embeddings:
        plan.append(weight("output.weight", vocab_size, h))
    if shape.rope_scaling is not None:
        plan.append(_TensorPlan("rope_freqs.weight", (hd // 2,), f32, "rope_freqs"))
    for i in range(shape.n_layers):
        b = f"blk.{i}"
        plan += [
            _TensorPlan(f"{b}.attn_norm.weight", (h,), f32, "norm"),
            weight(f"{b}.attn_q.weight", q, h),
            weight(f"{b}.attn_k.weight", kv, h),
            weight(f"{b}.attn_v.weight", kv, h),
            weight(f"{b}.attn_output.weight", h, q),
            _TensorPlan(f"{b}.ffn_norm.weight", (h,), f32, "norm"),
            weight(f"{b}.ffn_gate.weight", shape.ffn_size, h),
            weight(f"{b}.ffn_up.weight", shape.ffn_size, h),
            weight(f"{b}.ffn_down.weight", h, shape.ffn_size),
        ]
    return plan


def llama3_rope_factors(shape: ModelShape) -> np.ndarray:
    """Per-frequency RoPE divisors for Llama-3 scaling (the `rope_freqs` tensor).

    High frequencies (wavelength below original_context / high_freq_factor) are kept,
    low ones (above original_context / low_freq_factor) are slowed by `factor`, and the
    band between is interpolated smoothly.
    """
    scaling = shape.rope_scaling
    assert scaling is not None
    hd = shape.head_dim
    freqs = 1.0 / shape.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    wavelen = 2 * math.pi / freqs
    old_ctx = scaling.original_context_length
    smooth = (old_ctx / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    factors = 1.0 / ((1 - smooth) / scaling.factor + smooth)
    factors = np.where(wavelen < old_ctx / scaling.high_freq_factor, 1.0, factors)
    factors = np.where(wavelen > old_ctx / scaling.low_freq_factor, scaling.factor, factors)
    return factors.astype(np.float32)


def _write_tensor(
    fout: IO[bytes], plan: _TensorPlan, shape: ModelShape, rng: np.random.Generator
) -> int:
    """Generate one tensor block by block and append it; returns bytes written."""
    if plan.kind == "norm":
        data = np.ones(plan.shape, dtype=np.float32)
        fout.write(data.tobytes())
        return data.nbytes
    if plan.kind == "rope_freqs":
        data = llama3_rope_factors(shape)
        fout.write(data.tobytes())
        return data.nbytes
    rows, cols = plan.shape
    rows_per_block = max(1, BLOCK_ELEMENTS // cols)
    written = 0
    for start in range(0, rows, rows_per_block):
        n = min(rows_per_block, rows - start)
        block = rng.standard_normal((n, cols), dtype=np.float32)
        block *= WEIGHT_STD
        encoded = quants.quantize(block, plan.qtype)
        fout.write(np.ascontiguousarray(encoded).data.cast("B"))
        written += encoded.nbytes
    return written


# --------------------------------------------------------------------------- writer


def write_synthetic_model(
    out: Path,
    shape: str | ModelShape | Mapping[str, Any],
    dtype: str = "q8_0",
    donor: Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a random-weight GGUF of `shape` to `out` (atomically) and describe it.

    The same shape, dtype, donor and seed give the same bytes. Returns the parameter
    count for the donor's vocabulary (`parameters`) and for the real model's
    (`parameters_real_vocab`), file and tensor bytes, and the time taken.
    """
    start_s = time.monotonic()
    model_shape = resolve_shape(shape)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    qtype, file_type = DTYPES[dtype]
    donor_path = Path(donor) if donor is not None else default_vocab_file()
    if not donor_path.is_file():
        raise UserError(f"donor not found: {donor_path}")
    tokenizer_kv = _tokenizer_metadata(donor_path)
    vocab_size = len(
        next(value for key, value, *_ in tokenizer_kv if key == "tokenizer.ggml.tokens")
    )
    plan = _tensor_plan(model_shape, vocab_size, qtype)

    writer = GGUFWriter(None, ARCH)
    writer.add_type("model")
    writer.add_name(f"synthetic {model_shape.name} {dtype}")
    writer.add_description(
        f"Random weights (seed {seed}, normal std {WEIGHT_STD}) in the shape of "
        f"{model_shape.name}; tokenizer from {donor_path.name}. Not a trained model."
    )
    writer.add_file_type(int(file_type))
    if dtype not in ("f32", "f16"):
        writer.add_quantization_version(GGML_QUANT_VERSION)
    writer.add_context_length(model_shape.context_length)
    writer.add_embedding_length(model_shape.hidden_size)
    writer.add_block_count(model_shape.n_layers)
    writer.add_feed_forward_length(model_shape.ffn_size)
    writer.add_head_count(model_shape.n_heads)
    writer.add_head_count_kv(model_shape.n_kv_heads)
    writer.add_rope_freq_base(model_shape.rope_theta)
    writer.add_layer_norm_rms_eps(model_shape.rms_norm_eps)
    writer.add_rope_dimension_count(model_shape.head_dim)
    writer.add_vocab_size(vocab_size)
    for key, value, vtype, item_type in tokenizer_kv:
        writer.add_key_value(key, value, vtype, sub_type=item_type)
    # Provenance, read back by models.gguf.gguf_info; llama.cpp ignores unknown keys.
    writer.add_string("scalezero.synthetic.shape", model_shape.name)
    writer.add_string("scalezero.synthetic.dtype", dtype)
    writer.add_uint32("scalezero.synthetic.seed", seed)
    writer.add_float32("scalezero.synthetic.weight_std", WEIGHT_STD)
    writer.add_string("scalezero.synthetic.donor", donor_path.name)
    for tensor in plan:
        writer.add_tensor_info(
            tensor.name, tensor.shape, np.dtype(np.float32), tensor.n_bytes, raw_dtype=tensor.qtype
        )

    out = Path(out)
    with _gguf_file(writer, out) as fout:
        writer.write_padding(fout, fout.tell())
        layer_done = -1
        for index, tensor in enumerate(plan):
            # One stream per tensor: reproducible whatever the block size.
            rng = np.random.default_rng([seed, index])
            written = _write_tensor(fout, tensor, model_shape, rng)
            if written != tensor.n_bytes:
                raise RuntimeError(
                    f"{tensor.name}: wrote {written} bytes, planned {tensor.n_bytes}"
                )
            writer.write_padding(fout, written)
            if (
                progress
                and tensor.name.startswith("blk.")
                and tensor.name.endswith("ffn_down.weight")
            ):
                layer_done += 1
                print(
                    f"synth-model: layer {layer_done + 1}/{model_shape.n_layers} "
                    f"({time.monotonic() - start_s:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )

    real_vocab = model_shape.real_vocab_size
    return {
        "path": str(out),
        "shape": model_shape.name,
        "shape_params": asdict(model_shape),
        "dtype": dtype,
        "seed": seed,
        "donor": str(donor_path),
        "vocab_size": vocab_size,
        "parameters": model_shape.parameter_count(vocab_size),
        "parameters_real_vocab": model_shape.parameter_count(real_vocab) if real_vocab else None,
        "tensor_count": len(plan),
        "tensor_bytes": sum(t.n_bytes for t in plan),
        "file_bytes": out.stat().st_size,
        "seconds": round(time.monotonic() - start_s, 3),
    }


def ensure_probe_model(path: Path) -> Path:
    """The tiny synthetic GGUF the context probe loads, written once and reused."""
    if not path.is_file():
        write_synthetic_model(path, "tiny", dtype="f16")
    return path
