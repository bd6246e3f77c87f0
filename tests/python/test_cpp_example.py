"""examples/cpp/generate.cpp, a C++ application built against the installed package (.ci/run
builds it and names it in SLIMRT_EXAMPLE_GENERATE): it generates the ids LLM.generate does for
the same prompt ids and seed, without Python."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from slimrt import LLM, SamplingParams

EXAMPLE = os.environ.get("SLIMRT_EXAMPLE_GENERATE")
pytestmark = pytest.mark.skipif(
    not EXAMPLE, reason="SLIMRT_EXAMPLE_GENERATE names the built example (.ci/run sets it)"
)


def run_example(model: Path, ids: list[int], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXAMPLE, str(model), "--ids", ",".join(map(str, ids)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("weights", "temperature", "seed"), [("bf16", 0.0, 0), ("bf16", 0.9, 7), ("df11", 0.9, 11)]
)
def test_the_cpp_program_generates_the_ids_of_llm_generate(
    tiny_model_dir, weights: str, temperature: float, seed: int
) -> None:
    path = tiny_model_dir("llama")[0]
    llm = LLM(path, device="cpu", weights=weights, progress=False)
    prompt = "The capital of France is"
    ids = llm.tokenizer.encode(prompt)
    params = SamplingParams(temperature=temperature, seed=seed, max_tokens=20, ignore_eos=True)
    want = llm.generate(prompt, params)[0].token_ids
    result = run_example(
        path,
        ids,
        "--max-tokens",
        "20",
        "--temperature",
        str(temperature),
        "--seed",
        str(seed),
        "--weights",
        weights,
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    assert [int(t) for t in result.stdout.split()] == want
    assert "tokens/s" in result.stderr


def test_the_cpp_program_runs_the_default_gguf(smollm2_gguf: Path) -> None:
    llm = LLM(smollm2_gguf, device="cpu", progress=False)
    ids = llm.tokenizer.encode("1, 2, 3, 4,")
    want = llm.generate("1, 2, 3, 4,", SamplingParams(max_tokens=8, ignore_eos=True))[0].token_ids
    result = run_example(smollm2_gguf, ids, "--max-tokens", "8", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert [int(t) for t in result.stdout.split()] == want


def test_bad_input_is_one_line_naming_the_problem(tmp_path: Path) -> None:
    result = run_example(tmp_path / "missing", [1, 2])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"slimrt-generate: error (I/O): {tmp_path / 'missing'}: no such file or directory"
    )
    (tmp_path / "notes.txt").write_text("hi")
    result = run_example(tmp_path / "notes.txt", [1])
    assert result.returncode == 2
    assert "not a model (pass a .gguf file or a model directory with config.json)" in (
        result.stderr
    )
