"""The `fetch-model` and `synth-model` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalezero.errors import UserError
from scalezero.models.gguf import gguf_info
from scalezero.models.shapes import DTYPE_NAMES, SHAPES
from scalezero.models.sources import fetch_model
from scalezero.models.synthetic import make_vocab_file, write_synthetic_model


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


def _run_fetch(args: argparse.Namespace) -> int:
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


def _add_fetch_cli(subparsers: Any) -> None:
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
    parser.set_defaults(func=_run_fetch)


def _run_synth(args: argparse.Namespace) -> int:
    if args.list_shapes:
        for shape in SHAPES.values():
            real = shape.parameter_count(shape.real_vocab_size) if shape.real_vocab_size else None
            print(
                f"{shape.name:14s} hidden {shape.hidden_size:5d}  layers {shape.n_layers:3d}  "
                f"heads {shape.n_heads:3d}/{shape.n_kv_heads:<3d} ffn {shape.ffn_size:6d}  "
                f"params(real vocab) {real if real is not None else '-'}  {shape.source}"
            )
        return 0
    if args.vocab_from:
        if not args.out:
            raise UserError("--vocab-from needs --out")
        make_vocab_file(Path(args.vocab_from), Path(args.out))
        print(f"vocabulary of {args.vocab_from} -> {args.out} "
              f"({Path(args.out).stat().st_size:,} bytes)")
        return 0
    if not (args.shape and args.out):
        raise UserError("give --shape and --out (or --list-shapes, or --vocab-from)")
    info = write_synthetic_model(
        Path(args.out),
        args.shape,
        dtype=args.dtype,
        donor=Path(args.donor) if args.donor else None,
        seed=args.seed,
        progress=True,
    )
    print(json.dumps(info, indent=2))
    return 0


def _add_synth_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth-model",
        help="write a random-weight GGUF in the shape of a real model",
        description=(
            "Write a llama-architecture GGUF with seeded random weights, a real tokenizer "
            "(from --donor, default the bundled SmolLM2 vocabulary) and the shape of a "
            "real model family."
        ),
    )
    parser.add_argument("--shape", choices=list(SHAPES), help="model shape")
    parser.add_argument("--dtype", choices=list(DTYPE_NAMES), default="q8_0", help="weight type")
    parser.add_argument("--donor", help="GGUF whose tokenizer to copy")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", help="output GGUF file")
    parser.add_argument("--list-shapes", action="store_true", help="print the known shapes")
    parser.add_argument(
        "--vocab-from", metavar="GGUF",
        help="instead: write a vocabulary-only GGUF (tokenizer, no weights) of this model to "
        "--out; the bundled default was made this way from the default model")
    parser.set_defaults(func=_run_synth)


def add_cli(subparsers: Any) -> None:
    """Register `scalezero fetch-model` and `scalezero synth-model`."""
    _add_fetch_cli(subparsers)
    _add_synth_cli(subparsers)
