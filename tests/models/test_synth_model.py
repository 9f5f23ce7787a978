"""Synthetic models: real shapes and tokenizer, random weights, loadable by llama.cpp."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scalezero.cli import main
from scalezero.models.gguf import gguf_info, read_gguf_metadata
from scalezero.models.shapes import SHAPES
from scalezero.models.synthetic import default_vocab_file, write_synthetic_model
from scalezero.system.engine_check import generate_in_child


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundled_vocabulary_is_regenerated_from_the_default_model(
        tmp_path: Path, real_model: Path) -> None:
    out = tmp_path / "vocab.gguf"
    assert main(["synth-model", "--vocab-from", str(real_model), "--out", str(out)]) == 0
    assert _sha(out) == _sha(default_vocab_file())
    assert gguf_info(out)["tensor_count"] == 0


@pytest.mark.parametrize(("dtype", "file_type"), [("f16", "MOSTLY_F16"),
                                                  ("q8_0", "MOSTLY_Q8_0")])
def test_tiny_shape_has_the_shape_and_tokenizer_asked_for(tmp_path: Path, dtype: str,
                                                          file_type: str) -> None:
    out = tmp_path / f"tiny-{dtype}.gguf"
    write_synthetic_model(out, "tiny", dtype=dtype, seed=1)
    info = gguf_info(out)
    shape = SHAPES["tiny"]
    assert info["architecture"] == "llama" and info["file_type"] == file_type
    assert info["embedding_length"] == shape.hidden_size
    assert info["block_count"] == shape.n_layers
    assert info["head_count_kv"] == shape.n_kv_heads
    assert info["vocab_size"] == 49152  # SmolLM2's tokenizer, from the bundled vocabulary
    assert info["parameters"] == shape.parameter_count(49152)
    donor = read_gguf_metadata(default_vocab_file(), load_arrays=True).kv
    kv = read_gguf_metadata(out, load_arrays=True).kv
    assert kv["tokenizer.ggml.model"] == donor["tokenizer.ggml.model"]


def test_same_seed_same_file_other_seed_other_weights(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.gguf" for n in "abc")
    write_synthetic_model(a, "tiny", dtype="f16", seed=3)
    write_synthetic_model(b, "tiny", dtype="f16", seed=3)
    write_synthetic_model(c, "tiny", dtype="f16", seed=4)
    assert _sha(a) == _sha(b) != _sha(c)
    assert a.stat().st_size == c.stat().st_size


def test_unknown_shape_is_a_clear_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth-model", "--shape", "gpt-5", "--out", str(tmp_path / "x.gguf")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gpt-5'" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()


def test_llama_cpp_loads_it_and_answers(tmp_path: Path) -> None:
    # In a child process: a native crash fails this test with the signal's name instead
    # of ending the whole test session.
    out = tmp_path / "tiny.gguf"
    write_synthetic_model(out, "tiny", dtype="q8_0")
    result = generate_in_child(out, n_tokens=6, prompt="The sea")
    assert result.ok, result.detail
    assert result.answer is not None
    assert result.answer["completion_tokens"] == 6
    assert result.answer["finish_reason"] == "length"
