"""Shapes of llama-architecture models: the hyper-parameters a synthetic model is built from.

Light on purpose (standard library only): the config schema lists the shape and weight
type names without loading numpy or gguf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from scalezero.errors import UserError

#: Weight types a synthetic model can be written in (see `synthetic.DTYPES`).
DTYPE_NAMES: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3 style RoPE frequency scaling (`rope_scaling` with `rope_type: llama3`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_context_length: int


@dataclass(frozen=True)
class ModelShape:
    """Hyper-parameters of a llama-architecture decoder (HF config.json names in comments)."""

    name: str
    hidden_size: int  # hidden_size
    n_layers: int  # num_hidden_layers
    n_heads: int  # num_attention_heads
    n_kv_heads: int  # num_key_value_heads
    ffn_size: int  # intermediate_size
    context_length: int = 2048  # max_position_embeddings
    rope_theta: float = 10000.0  # rope_theta
    rms_norm_eps: float = 1e-5  # rms_norm_eps
    tie_embeddings: bool = True  # tie_word_embeddings
    rope_scaling: RopeScaling | None = None  # rope_scaling (llama3 type)
    real_vocab_size: int | None = None  # vocab_size of the real model, for comparison
    source: str = ""  # where the values come from

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    def check(self) -> None:
        """UserError when llama.cpp could not run this shape."""
        positive = ("hidden_size", "n_layers", "n_heads", "n_kv_heads", "ffn_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"shape {self.name}: {name} must be positive")
        if self.hidden_size % self.n_heads:
            raise UserError(f"shape {self.name}: hidden_size must be a multiple of n_heads")
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"shape {self.name}: n_heads must be a multiple of n_kv_heads")
        if self.head_dim % 2:
            raise UserError(f"shape {self.name}: head dimension must be even (RoPE)")

    def parameter_count(self, vocab_size: int) -> int:
        """Learned parameters for a given vocabulary (RoPE factors are not parameters)."""
        h, kv = self.hidden_size, self.n_kv_heads * self.head_dim
        q = self.n_heads * self.head_dim
        per_layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * self.ffn_size
        embeddings = vocab_size * h * (1 if self.tie_embeddings else 2)
        return embeddings + h + self.n_layers * per_layer

    @classmethod
    def from_mapping(cls, name: str, values: Mapping[str, Any]) -> ModelShape:
        """A custom shape from a config mapping (keys as the fields of this class)."""
        known = {f.name for f in fields(cls)} - {"name"}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"shape {name}: unknown keys {', '.join(sorted(unknown))}")
        kwargs = dict(values)
        if isinstance(kwargs.get("rope_scaling"), Mapping):
            kwargs["rope_scaling"] = RopeScaling(**kwargs["rope_scaling"])
        try:
            shape = cls(name=name, **kwargs)
        except TypeError as exc:
            raise UserError(f"shape {name}: {exc}") from exc
        shape.check()
        return shape


def _llama3_rope_8k(factor: float) -> RopeScaling:
    """Llama 3.1/3.2's rope_scaling: an 8k original context, low 1.0, high 4.0."""
    return RopeScaling(factor=factor, low_freq_factor=1.0, high_freq_factor=4.0,
                       original_context_length=8192)

SHAPES: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        ModelShape(
            name="tiny",
            hidden_size=64,
            n_layers=2,
            n_heads=4,
            n_kv_heads=2,
            ffn_size=128,
            context_length=2048,
            source="test shape (not a real model)",
        ),
        ModelShape(
            name="smollm2-135m",
            hidden_size=576,
            n_layers=30,
            n_heads=9,
            n_kv_heads=3,
            ffn_size=1536,
            context_length=8192,
            rope_theta=100000.0,
            tie_embeddings=True,
            real_vocab_size=49152,
            source="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json",
        ),
        ModelShape(
            name="llama-3.2-1b",
            hidden_size=2048,
            n_layers=16,
            n_heads=32,
            n_kv_heads=8,
            ffn_size=8192,
            context_length=131072,
            rope_theta=500000.0,
            tie_embeddings=True,
            rope_scaling=_llama3_rope_8k(32.0),
            real_vocab_size=128256,
            source="https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
        ),
        ModelShape(
            name="llama-3.1-8b",
            hidden_size=4096,
            n_layers=32,
            n_heads=32,
            n_kv_heads=8,
            ffn_size=14336,
            context_length=131072,
            rope_theta=500000.0,
            tie_embeddings=False,
            rope_scaling=_llama3_rope_8k(8.0),
            real_vocab_size=128256,
            source="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
        ),
    )
}


def resolve_shape(shape: str | ModelShape | Mapping[str, Any]) -> ModelShape:
    """A ModelShape from a name in SHAPES, a custom mapping, or a ModelShape."""
    if isinstance(shape, ModelShape):
        shape.check()
        return shape
    if isinstance(shape, Mapping):
        return ModelShape.from_mapping("custom", shape)
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    return SHAPES[shape]
