from __future__ import annotations

import numpy as np
import pytest
from slimrt import RequestError, SamplingParams
from slimrt.input_limits import MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS


def test_defaults_are_greedy_with_256_tokens_and_no_stops() -> None:
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.seed) == (0.0, 0, 1.0, 0.0, None)
    assert (p.max_tokens, p.stop, p.stop_token_ids, p.ignore_eos) == (256, [], [], False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.5}, "sampling: temperature must be >= 0, got -0.5"),
        ({"temperature": float("nan")}, "temperature must be a finite number, got nan"),
        ({"temperature": "hot"}, "temperature must be a finite number, got 'hot'"),
        ({"top_p": 0}, "sampling: top_p must be in (0, 1], got 0"),
        ({"top_p": 1.5}, "sampling: top_p must be in (0, 1], got 1.5"),
        ({"min_p": -0.1}, "sampling: min_p must be in [0, 1], got -0.1"),
        ({"min_p": 2}, "sampling: min_p must be in [0, 1], got 2"),
        ({"top_k": -1}, "top_k must be >= 0 (0 disables it) and < 2**31, got -1"),
        ({"top_k": 1 << 31}, "top_k must be >= 0 (0 disables it) and < 2**31, got 2147483648"),
        ({"top_k": 2.5}, "top_k must be an integer, got 2.5"),
        ({"top_k": True}, "top_k must be an integer, got True"),
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"seed": -1}, "seed must be in [0, 2**64), got -1"),
        ({"seed": 1 << 64}, f"seed must be in [0, 2**64), got {1 << 64}"),
        ({"stop": [""]}, "stop strings must be non-empty strings, got ''"),
        ({"stop": 5}, "stop must be a list, got 5"),
        ({"stop": ["x"] * 65}, "at most 64 stop strings, got 65"),
        ({"stop_token_ids": [1] * 1025}, "at most 1024 stop_token_ids, got 1025"),
        ({"stop_token_ids": [-3]}, "stop_token_ids must be >= 0, got -3"),
        ({"ignore_eos": 1}, "ignore_eos must be True or False, got 1"),
        ({"logprobs": -1}, "logprobs must be in [0, 20], got -1"),
        ({"logprobs": 21}, "logprobs must be in [0, 20], got 21"),
        ({"logprobs": True}, "logprobs must be an integer, got True"),
    ],
)
def test_invalid_values_raise_a_value_error_naming_them(kwargs: dict, message: str) -> None:
    with pytest.raises(RequestError) as info:
        SamplingParams(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_boundaries_are_accepted() -> None:
    p = SamplingParams(temperature=0, top_p=1, min_p=1, top_k=0, max_tokens=1, seed=(1 << 64) - 1)
    assert p.top_p == 1.0 and isinstance(p.top_p, float) and p.seed == (1 << 64) - 1
    q = SamplingParams(stop=["x"] * MAX_STOP_STRINGS, stop_token_ids=[1] * MAX_STOP_TOKEN_IDS)
    assert len(q.stop) == 64 and len(q.stop_token_ids) == 1024


def test_numpy_scalars_become_python_numbers() -> None:
    p = SamplingParams(temperature=np.float32(0.5), top_k=np.int64(5), max_tokens=np.int32(7))
    assert (p.temperature, p.top_k, p.max_tokens) == (0.5, 5, 7)
    assert type(p.top_k) is int and type(p.max_tokens) is int


def test_a_single_stop_string_is_one_stop_not_its_characters() -> None:
    assert SamplingParams(stop="\n\n").stop == ["\n\n"]
    assert SamplingParams(stop=("a", "b")).stop == ["a", "b"]
