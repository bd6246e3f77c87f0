"""The bitmap-sparse KV cache through slimrt.LLM and the CLI: the options reach the engine,
sparsity 0 gives the dense engine's tokens, memory() and --stats report the pool by page kind,
and bad values get the core's messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_run import run
from slimrt import LLM, SamplingParams
from slimrt.errors import InvalidArgumentError, OutOfMemoryError

PROMPTS = [
    "Once upon a time, in a land far away, there lived a small model with a big vocabulary.",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
]
GREEDY = SamplingParams(max_tokens=40, ignore_eos=True)
# Small enough for a tiny model's 256-token budget: 2 windows of 4 tokens, steps of 32.
SMALL = {"max_batch": 2, "max_step_tokens": 32, "kv_window": 4, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> Path:
    return tiny_model_dir("llama")[0]


def record_bytes(head_dim: int, sparsity: float) -> int:
    """docs/FORMAT.md: a bitmap of whole 16-bit words, then the kept BF16 values."""
    kept = head_dim - int(sparsity * head_dim + 0.5)
    return (head_dim + 15) // 16 * 2 + 2 * kept


def test_sparsity_zero_gives_the_dense_engines_tokens(tiny: Path) -> None:
    dense = LLM(str(tiny), progress=False, **SMALL)
    sparse = LLM(str(tiny), progress=False, kv_sparsity=0.0, **SMALL)
    want = [c.token_ids for c in dense.generate(PROMPTS, GREEDY)]
    assert [c.token_ids for c in sparse.generate(PROMPTS, GREEDY)] == want
    memory = sparse.memory()
    # The prompts and 40 tokens went well past the window: pages were compressed.
    assert memory["kv_peak_compressed_pages_used"] > 0
    assert memory["kv_compressed_pages_used"] == memory["kv_dense_pages_used"] == 0


def test_memory_reports_bytes_per_token_and_pages_by_kind(tiny: Path) -> None:
    llm = LLM(str(tiny), progress=False, k_sparsity=0.7, v_sparsity=0.5, **SMALL)
    c = llm.config
    memory = llm.memory()
    per_head = record_bytes(c.head_dim, 0.7) + record_bytes(c.head_dim, 0.5)
    assert memory["kv_compressed_bytes_per_token"] == c.num_layers * c.num_kv_heads * per_head
    assert memory["kv_dense_bytes_per_token"] == c.num_layers * 2 * c.num_kv_heads * c.head_dim * 2
    assert memory["kv_compressed_pages"] == llm.engine.total_pages > 0
    # 2 windows of ceil((4 + 15) / 16) + 2 pages, and 2 pages for a step of 32 tokens.
    assert memory["kv_dense_pages"] == 2 * 4 + 2
    assert memory["kv_bytes_per_token"] == 0.0  # nothing cached
    llm.generate(PROMPTS[0], GREEDY)
    assert llm.memory()["kv_peak_tokens"] == len(llm.tokenizer.encode(PROMPTS[0])) + 39


def test_kv_sparsity_sets_both_and_k_or_v_sparsity_overrides_one(tiny: Path) -> None:
    c = LLM(str(tiny), progress=False, **SMALL).config
    for options, k, v in (
        ({"kv_sparsity": 0.5}, 0.5, 0.5),
        ({"kv_sparsity": 0.5, "v_sparsity": 0.7}, 0.5, 0.7),
        ({"k_sparsity": 0.3}, 0.3, 0.0),
    ):
        llm = LLM(str(tiny), progress=False, **options, **SMALL)
        per_head = record_bytes(c.head_dim, k) + record_bytes(c.head_dim, v)
        expected = c.num_layers * c.num_kv_heads * per_head
        assert llm.memory()["kv_compressed_bytes_per_token"] == expected, options
    dense = LLM(str(tiny), progress=False, **SMALL).memory()
    assert dense["kv_compressed_pages"] == 0 and dense["kv_compressed_bytes_per_token"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kv_sparsity": 1.0}, "options: k_sparsity must be in [0, 1), got 1"),
        ({"v_sparsity": -0.5}, "options: v_sparsity must be in [0, 1), got -0.5"),
        ({"kv_sparsity": 0.5, "kv_window": -1}, "options: kv_window must be >= 0, got -1"),
        (
            {"kv_sparsity": 0.5, "kv_dtype": "f32"},
            'options: kv_compression needs kv_dtype "bf16", got "f32"',
        ),
    ],
)
def test_bad_sparse_options_get_the_cores_messages(options: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        LLM("/nonexistent", **options)
    assert str(info.value) == message


def test_the_cli_flags_reach_the_engine_and_stats_report_the_pages(capsys, tiny: Path) -> None:
    code, _, err = run(
        capsys, "generate", "Hello there, how are you today? I am fine.", "--model", tiny,
        "--max-tokens", 30, "--no-progress", "--device", "cpu", "--max-batch", 2,
        "--max-step-tokens", 32, "--kv-sparsity", 0.5, "--v-sparsity", 0.7, "--kv-window", 4,
        "--stats",
    )  # fmt: skip
    assert code == 0
    [line] = [x for x in err.splitlines() if x.startswith("KV cache:")]
    found = re.search(r"compressed pages at most (\d+)/(\d+) \((\S+) bytes/token\)", line)
    assert found, line
    c = LLM(str(tiny), progress=False, **SMALL).config
    per_head = record_bytes(c.head_dim, 0.5) + record_bytes(c.head_dim, 0.7)
    assert int(found[1]) > 0
    assert float(found[3]) == c.num_layers * c.num_kv_heads * per_head


def tight_llm(tiny: Path, needs: int, **options: object) -> LLM:
    """The LLM whose compressed pages are the fewest that hold `needs`."""
    for kv_tokens in range(176, 1024, 16):  # 160 is the dense pages' alone
        try:
            llm = LLM(str(tiny), progress=False, kv_tokens=kv_tokens, **options)
        except OutOfMemoryError:
            continue  # no compressed page fits yet
        if llm.engine.total_pages >= needs:
            return llm
    raise AssertionError("no budget found")


@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_a_tight_sparse_cache_runs_every_request_and_gives_every_page_back(
    tiny: Path, sparsity: float
) -> None:
    """With compressed pages for the longer request alone, the other waits or is preempted and
    recomputed. At s = 0 the tokens are the dense engine's; at s > 0 they depend on how the
    prompts were cut into chunks (a chunk attends to itself densely), so only completion is
    checked there."""
    options = {**SMALL, "kv_sparsity": sparsity}
    dense = LLM(str(tiny), progress=False, **SMALL)
    alone = [dense.generate(p, GREEDY)[0].token_ids for p in PROMPTS]
    needs = [(len(dense.tokenizer.encode(p)) + 39 - 4) // 16 for p in PROMPTS]
    tight = tight_llm(tiny, max(needs), **options)
    assert tight.engine.total_pages < sum(needs), needs
    done = tight.generate(PROMPTS, GREEDY)
    assert [len(c.token_ids) for c in done] == [40, 40]
    if sparsity == 0.0:
        assert [c.token_ids for c in done] == alone
    memory = tight.memory()
    assert memory["kv_dense_pages_used"] == memory["kv_compressed_pages_used"] == 0
    assert memory["kv_peak_compressed_pages_used"] == tight.engine.total_pages
    assert tight.engine.free_pages == tight.engine.total_pages
