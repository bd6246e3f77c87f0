"""Log-probabilities computed by the engine's sampler (SamplingParams.logprobs) against the
engine's own logits: log_softmax of the raw logits in double, whatever the sampling parameters,
for every generated token; the top n in order (ties to the lower id)."""

from __future__ import annotations

import numpy as np
import pytest
from slimrt import LLM, SamplingParams, _core
from slimrt.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def llm(tiny_model_dir) -> LLM:
    path, _ = tiny_model_dir("llama")
    return LLM(str(path), progress=False, device="cpu", kv_dtype="f32")


def _logits_of(llm: LLM, prompt_ids: list[int], output_ids: list[int]) -> np.ndarray:
    """The logits each output token was drawn from: one prefill of the prompt, then a decode
    step per token, as the generation ran."""
    engine = llm.engine
    seq = engine.add_sequence()
    try:
        rows = [engine.step([seq], prompt_ids, [len(prompt_ids)])[0]]
        for token in output_ids[:-1]:
            rows.append(engine.step([seq], [token], [1])[0])
    finally:
        engine.release_sequence(seq)
    return np.array(rows, dtype=np.float64)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=8, logprobs=5, ignore_eos=True),
        SamplingParams(
            max_tokens=8, logprobs=20, temperature=1.7, top_k=12, top_p=0.8, seed=7, ignore_eos=True
        ),
        SamplingParams(max_tokens=4, logprobs=0, temperature=0.5, seed=1, ignore_eos=True),
    ],
)
def test_logprobs_are_the_log_softmax_of_the_engines_logits(llm: LLM, params) -> None:
    prompt = "The quick brown fox"
    (completion,) = llm.generate(prompt, params)
    assert completion.logprobs is not None
    assert [e.token_id for e in completion.logprobs] == completion.token_ids
    logits = _logits_of(llm, llm.prompt_ids(prompt), completion.token_ids)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    for row, logit, entry in zip(log_softmax, logits, completion.logprobs, strict=True):
        assert entry.logprob == pytest.approx(row[entry.token_id], abs=1e-5)
        order = np.lexsort((np.arange(len(logit)), -logit))[: params.logprobs]
        assert [i for i, _ in entry.top] == order.tolist()
        assert [v for _, v in entry.top] == pytest.approx(row[order].tolist(), abs=1e-5)


def test_only_requests_that_ask_get_logprobs_and_the_tokens_do_not_change(llm: LLM) -> None:
    sampled = SamplingParams(max_tokens=6, temperature=0.9, seed=11, ignore_eos=True)
    with_logprobs = SamplingParams(
        max_tokens=6, temperature=0.9, seed=11, ignore_eos=True, logprobs=2
    )
    # In one batch: the step computes the top 2 for both rows, only one request keeps them.
    plain, asked = llm.generate(["Once upon a time", "Once upon a time"], [sampled, with_logprobs])
    assert plain.logprobs is None
    assert asked.token_ids == plain.token_ids
    assert [len(e.top) for e in asked.logprobs] == [2] * 6


def test_the_engine_refuses_a_bad_top_n_before_the_step_runs(llm: LLM) -> None:
    engine = llm.engine
    seq = engine.add_sequence()
    try:
        sampling = [_core.SamplingParams(temperature=0.0)]
        with pytest.raises(InvalidArgumentError, match=r"^step: top_n 21 outside \[0, 20\]$"):
            engine.step([seq], [1, 2], [2], sampling, top_logprobs=21)
        with pytest.raises(InvalidArgumentError, match=r"^step: top_logprobs without sampling$"):
            engine.step([seq], [1, 2], [2], top_logprobs=3)
        assert engine.sequence_length(seq) == 0
        ids, logprobs, top_ids, top = engine.step([seq], [1, 2], [2], sampling, top_logprobs=3)
        assert top_ids.shape == top.shape == (1, 3) and logprobs.shape == (1,)
        assert ids[0] == top_ids[0, 0] and logprobs[0] == top[0, 0]
    finally:
        engine.release_sequence(seq)
