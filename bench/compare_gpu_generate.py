"""Decode tokens/s and GPU memory in one run: slimrt (BF16, DF11) vs transformers generate.

Side by side: slimrt's CUDA engine with BF16 and with DF11 weights, and transformers `generate`
(default, and static cache + torch.compile), plus the longest context and KV capacity each
slimrt weight format fits in a fixed memory budget, dense and with the bitmap-sparse KV cache,
and slimrt's decode speed at a long context.

All engines run the same model (e.g. `bench/make_random_model.py llama-3.1-8b DIR --device
cuda`), `--prompt` random prompt tokens then `--new` generated tokens per sequence, at each
batch size. Decode tokens/s is summed over the batch and excludes the prefill. Decoding is
greedy; `--sampling greedy,sampled,nucleus` adds slimrt rows that sample on the GPU (SAMPLING:
`sampled` is temperature 0.7, top-k 50, top-p 0.9; `nucleus` temperature 1, top-p 0.95 over the
whole vocabulary, the sampler's heaviest path), each sequence with its own seed.

- slimrt is driven one engine step at a time, synchronously (what slimrt.LLM does, minus
  tokenization): each sequence is prefilled on its own, then one warm-up decode step, then
  (new - 1) timed decode steps; an untimed pass of the same steps goes first, so that no CUDA
  graph recording is timed. One model (`_core.Model.load` onto the device) and one engine on
  it per weight format (`--weights bf16,df11`), created and destroyed in turn. DF11 weights
  come from `--df11-model` (a directory written by `slimrt compress MODEL_DIR OUT_DIR`), or,
  without it, are compressed while loading MODEL_DIR.
- transformers (BF16) runs `generate` with 1 and with `--new` new tokens per batch
  (min_new_tokens = max_new_tokens, so EOS cannot end it early); decode time is the
  difference. `default`: dynamic cache, eager; warm-up `generate` calls with 1 and 2 new
  tokens. `static`: `cache_implementation="static"` with `CompileConfig(fullgraph=True,
  mode="reduce-overhead")`, transformers' own compiled-decode path (generate compiles the
  decode forward; the prefill stays eager); the timed pair of calls runs once before as
  warm-up, so compilation and CUDA-graph capture are not timed. A failing mode is recorded in
  its rows and the run goes on.

Memory (CUDA): "GPU GiB at peak" is free memory before the model was loaded minus the
smallest free memory seen (cudaMemGetInfo): for slimrt sampled after every step, for
transformers after each `generate` (torch's caching allocator keeps what it reserved, so that
is its peak; its cache is emptied before each batch). Per slimrt engine also engine.memory()
and the GPU memory the model's load and the engine's construction took.

Longest context in a fixed budget (`--budget-gib X`, 0 skips): per weight format and per KV
sparsity of `--kv-sparsity` (0: the dense cache; s > 0: the bitmap-sparse one, s of K's and of
V's values dropped per token and head, the newest `--kv-window` tokens of each sequence dense),
the largest KV pool (kv_tokens, whole pages) an engine with memory_limit_bytes = X GiB (the
model's weights and the engine's arenas together), max_batch 1, max_step_tokens 512 accepts.
Two figures per row: the pool's capacity, the tokens it holds across sequences (pages x page
size; for a sparse cache its dense window and step pages plus its compressed pages, which the
engine fits into the bytes of a dense pool of kv_tokens tokens), with its ratio to the BF16
dense row's; and the longest single sequence, at most max_position_embeddings (a sparse
cache's compressed pages plus its window: a 70 % sparse pool can hold more than that). A
one-page dense engine's memory() gives the fixed part and the size of a page (K and V: 2 x
layers x kv_heads x head_dim x 2 bytes per token for BF16 KV), hence an estimate of kv_tokens;
then the estimate + 1 page must be refused with "not enough memory" and the estimate must fit
(a page down or up if not; further down in growing steps when the plan grew faster than the
probe showed). The model is loaded once per format; a refusal is cheap (the budget is checked
before anything is reserved), a fit reserves the engine's arenas: at most three fits per row
("constructions" counts every engine tried, the format's shared probe included). A sparsity
the device cannot run is a row with the error. In the JSON's "budget" rows kv_tokens is the
option that fit (a sparse cache's byte budget, in dense tokens), capacity_tokens, dense_pages
and compressed_pages what the engine made of it, context_tokens the longest sequence and
capacity_vs_bf16_dense the ratio.

Long context (`--long-context N`, 0 skips; `--long-batches 1,8`): per weight format and per
KV sparsity, decode tokens/s with every sequence prefilled to N random tokens (seeded), in
chunks of 512 tokens (slimrt.LLM's max_step_tokens), then `--new` greedy decode steps, the first
untimed; the prefill's tokens/s too. A warm-up pass goes first: one sequence prefilled to N and
the others to one token, decoded as many steps, so that every CUDA graph the timed steps
replay (keyed by batch size and the longest context's bucket) is recorded outside the timing.
One engine per row, sized for its batch (a sparse one gets the dense pool's bytes and room for
its dense pages, more than it needs; the row's kv_usage in the JSON says what it used). What the
engine refuses (not enough memory, a sparse cache the device cannot run) and a context past
max_position_embeddings are rows with the error; the run goes on. The budget and long-context
sections share one load of each format's model.

    python bench/compare_gpu_generate.py MODEL_DIR [--df11-model DIR] [--weights bf16,df11]
        [--batches 1,16,64] [--prompt 128] [--new 128] [--sampling greedy]
        [--transformers default,static] [--budget-gib 24] [--kv-sparsity 0,0.5,0.7]
        [--kv-window 32] [--long-context 32768] [--long-batches 1,8] [--device cuda|cpu]
        [--json out.json]

`--device cpu` checks the script on a machine without a GPU (memory columns stay empty), e.g.
`bench/make_random_model.py tiny-llama DIR`, then `... DIR --device cpu --weights bf16 --batches
1 --prompt 16 --new 8 --transformers none --budget-gib 0.05 --kv-sparsity 0,0.7 --long-context
512 --long-batches 1,2`. The markdown tables go to stdout at the end; each result is also
logged to stderr when it is measured, and `--json` is rewritten after each one, so a run cut
short keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from slimrt import _core
from slimrt.errors import InvalidArgumentError, OutOfMemoryError
from source_commit import source_commit

GIB = 2**30
WEIGHT_FORMATS = ("bf16", "df11", "df11-ahead")
# df11-ahead: DF11 weights always decoded ahead into scratch for cuBLAS (the path before the fused
# DF11 matmul), for comparing both in one run; the same memory as df11.
FUSED_ROWS_ENV = "SLIMRT_DF11_FUSED_ROWS"
TRANSFORMERS_MODES = {
    "default": "transformers generate (default)",
    "static": "transformers generate (static cache + compile)",
}
BUDGET_MAX_STEP_TOKENS = 512
LONG_MAX_STEP_TOKENS = 512  # slimrt.LLM's default max_step_tokens: its prefill chunk
SAMPLING = {
    "greedy": {"temperature": 0.0},
    "sampled": {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
    "nucleus": {"temperature": 1.0, "top_p": 0.95},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class GpuFree:
    """Free GPU memory (cudaMemGetInfo), and the smallest value seen since `reset`; inert
    (None everywhere) when the run is not on CUDA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.low: int | None = None

    def now(self) -> int | None:
        return torch.cuda.mem_get_info()[0] if self.enabled else None

    def reset(self) -> None:
        self.low = self.now()

    def sample(self) -> None:
        free = self.now()
        if free is not None:
            self.low = free if self.low is None else min(self.low, free)


def release_gpu_memory(gpu: bool) -> None:
    """Frees what dropped Python objects held (engines free their arenas in their destructor)."""
    gc.collect()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def slimrt_decode(
    engine: _core.Engine,
    batch: int,
    prompt: int,
    new: int,
    vocab: int,
    sampling: str,
    after_step: Callable[[], None],
) -> float:
    """Decode tokens/s of `batch` sequences over (new - 1) timed steps, after prefilling each
    sequence and one warm-up step. An untimed pass over the same lengths goes first: the engine
    records a CUDA graph per batch size and context-length bucket on first use, and no
    recording is timed. `after_step` runs after every step, outside the timing."""
    rng = np.random.default_rng(batch)
    prompts = [rng.integers(0, vocab, prompt).astype(np.int32) for _ in range(batch)]
    params = [_core.SamplingParams(**SAMPLING[sampling], seed=i) for i in range(batch)]
    ones = [1] * batch

    def one_pass() -> float:
        seqs = [engine.add_sequence() for _ in range(batch)]
        try:
            last = []
            for seq, ids in zip(seqs, prompts, strict=True):
                last.append(int(engine.step([seq], ids, [prompt], [params[0]])[0]))
                after_step()
            tokens = engine.step(seqs, np.array(last, np.int32), ones, params)  # warm-up step
            after_step()
            elapsed = 0.0
            for _ in range(new - 1):
                start = time.perf_counter()
                tokens = engine.step(seqs, tokens, ones, params)  # ids come back: synchronous
                elapsed += time.perf_counter() - start
                after_step()
            return batch * (new - 1) / elapsed
        finally:
            for seq in seqs:
                engine.release_sequence(seq)

    one_pass()
    return one_pass()


def transformers_decode(
    model: Any,
    batch: int,
    prompt: int,
    new: int,
    vocab: int,
    device: str,
    extra: dict[str, Any],
    warmup_new: int,
) -> float:
    """Decode tokens/s: time of `generate` with `new` tokens minus that with 1 (the prefill),
    after a warm-up `generate` with 1 then `warmup_new` new tokens."""
    generator = torch.Generator(device="cpu").manual_seed(batch)
    ids = torch.randint(0, vocab, (batch, prompt), generator=generator).to(device)
    # An explicit mask: without it, generate guesses one from pad_token_id occurrences.
    mask = torch.ones_like(ids)

    def timed(new_tokens: int) -> float:
        start = time.perf_counter()
        model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            **extra,
        )
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    with torch.no_grad():
        timed(1)
        timed(warmup_new)
        first = timed(1)
        full = timed(new)
    return batch * (new - 1) / (full - first)


def transformers_mode_kwargs(mode: str, device: str) -> tuple[dict[str, Any], int | None]:
    """generate() arguments of a mode, and its warm-up length (None: same as the timed run)."""
    if mode == "default":
        return {}, 2
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
    if device != "cuda":
        # generate compiles only on accelerators unless told otherwise (a testing switch).
        compile_config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": compile_config}, None


def error_text(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first}"[:300]


def is_budget_error(error: OutOfMemoryError) -> bool:
    return str(error).startswith("not enough memory")


def kv_bytes_per_token(config: Any) -> int:
    """BF16 K and V of one token over all layers (config: a _core.ModelConfig)."""
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2


def kv_options(sparsity: float, window: int | None) -> dict[str, Any]:
    """Engine options of a KV sparsity: 0 is the dense cache, more the bitmap-sparse one with
    that sparsity for K and V alike (the newest `window` tokens of each sequence dense; None:
    the engine's default)."""
    if sparsity == 0:
        return {}
    options: dict[str, Any] = {
        "kv_compression": True,
        "k_sparsity": sparsity,
        "v_sparsity": sparsity,
    }
    if window is not None:
        options["kv_window"] = window
    return options


def budget_probe(model: _core.Model, budget_gib: float, gpu: bool) -> dict[str, Any] | None:
    """engine.memory() of a one-page dense engine (max_batch 1) within the budget, with its
    page size: the fixed part of the budget (weights, DF11 scratch, activations) and the size of
    a page; None when not even that fits."""
    page = _core.EngineOptions().page_size
    return engine_in_budget(model, int(budget_gib * GIB), page, {}, gpu)


def engine_in_budget(
    model: _core.Model, budget_bytes: int, kv_tokens: int, kv: dict[str, Any], gpu: bool
) -> dict[str, Any] | None:
    """engine.memory() of an engine (max_batch 1, KV options `kv`) on `model` with `kv_tokens`
    within budget_bytes, with its page size and KV pages (dense and compressed); None when the
    budget refuses it. Any other error propagates."""
    options = {
        "max_batch": 1,
        "max_step_tokens": BUDGET_MAX_STEP_TOKENS,
        "kv_tokens": kv_tokens,
        "memory_limit_bytes": budget_bytes,
    }
    try:
        engine = _core.Engine(model, options | kv)
    except OutOfMemoryError as e:
        if not is_budget_error(e):
            raise
        log(f"  kv_tokens {kv_tokens}: does not fit ({str(e).split(' [')[0]})")
        return None
    memory = dict(engine.memory())
    usage = engine.kv_usage()
    del engine
    release_gpu_memory(gpu)
    memory["page_size"] = usage["page_size"]
    memory["dense_pages"] = usage["dense_pages"]
    memory["compressed_pages"] = usage["compressed_pages"]
    # What the pool holds across sequences: for a sparse cache its dense (window and step)
    # pages too, as the engine counts them in its kv_tokens.
    memory["capacity_tokens"] = (usage["dense_pages"] + usage["compressed_pages"]) * usage[
        "page_size"
    ]
    log(
        f"  kv_tokens {kv_tokens}: fits ({memory['total'] / GIB:.3f} GiB, "
        f"{memory['capacity_tokens']} tokens of KV capacity)"
    )
    return memory


def longest_sequence(memory: dict[str, Any], window: int, max_position_embeddings: int) -> int:
    """The longest single sequence the KV pool of `memory` holds, at most
    max_position_embeddings. A sparse cache keeps each sequence's newest `window` tokens and the
    page being filled dense, everything before in compressed pages (BlockTable::
    compressed_pages_at): the compressed pages bound the length, not the dense ones, which
    max_batch 1 sizes for one window and one step."""
    page = memory["page_size"]
    if memory["compressed_pages"] == 0:
        tokens = memory["capacity_tokens"]
    else:
        tokens = memory["compressed_pages"] * page + window + page - 1
    return min(tokens, max_position_embeddings)


def longest_context(
    model: _core.Model,
    budget_gib: float,
    gpu: bool,
    probe: dict[str, Any] | None,
    sparsity: float,
    window: int | None,
) -> dict[str, Any]:
    """Largest kv_tokens an engine (max_batch 1, KV sparsity `sparsity`) on `model` accepts
    within the budget, from the format's one-page dense `probe` (budget_probe); see the module
    docstring for the method. Any error other than the budget's propagates."""
    config = model.config
    budget_bytes = int(budget_gib * GIB)
    per_token = kv_bytes_per_token(config)
    kv = kv_options(sparsity, window)
    window_tokens = kv.get("kv_window", _core.EngineOptions().kv_window)
    constructions = 1  # the probe

    result: dict[str, Any] = {
        "budget_gib": budget_gib,
        "budget_bytes": budget_bytes,
        "kv_sparsity": sparsity,
        "kv_window": window_tokens if sparsity else None,
        "kv_bytes_per_token": per_token,
        "max_position_embeddings": config.max_position_embeddings,
    }
    nothing = {
        "kv_tokens": 0,
        "capacity_tokens": 0,
        "context_tokens": 0,
        "exact": True,
        "constructions": constructions,
    }
    if probe is None:
        return result | nothing | {"limited_by": "not even one page fits"}
    page = probe["page_size"]
    fixed = probe["total"] - probe["kv_pool"]
    # The probe's pool is one page: it measures the page's real size, should the pool ever hold
    # more than K and V (the formula alone would then overshoot). A sparse cache's kv_tokens is
    # the byte budget of that many dense tokens: the same estimate.
    per_page = probe["kv_pool"] or per_token * page
    if per_page != per_token * page:
        log(f"  a KV page takes {per_page} bytes; K and V of {page} tokens are {per_token * page}")
    # No cap at max_position_embeddings: the pool's capacity is measured, which a sparse cache
    # can take past it (and the BF16 dense row is what capacities are compared with).
    estimate = max((budget_bytes - fixed) // per_page, 1) * page

    # Largest kv_tokens known to fit, with its memory, and smallest known not to. The probe is a
    # fit of the dense cache only: a sparse one needs room for its dense pages first.
    first_fit, first_memory = (page, probe) if sparsity == 0 else (0, None)
    fit, fit_memory, no_fit = first_fit, first_memory, None

    def check(kv_tokens: int) -> bool:
        nonlocal fit, fit_memory, no_fit, constructions
        constructions += 1
        memory = engine_in_budget(model, budget_bytes, kv_tokens, kv, gpu)
        if memory is not None and kv_tokens > fit:
            fit, fit_memory = kv_tokens, memory
        elif memory is None and (no_fit is None or kv_tokens < no_fit):
            no_fit = kv_tokens
        return memory is not None

    check(estimate + page)  # refused before anything is reserved: cheap
    if estimate > fit:
        check(estimate)
    # One adjustment when the estimate was off by a page.
    if no_fit is None:
        check(fit + page)
    elif no_fit > fit + page:
        check(no_fit - page)
    # Still no fit near the estimate (the plan grows with the pool faster than the probe
    # showed): step down 2, 4, 8... pages, at most halfway to the probe each time; refusals
    # cost nothing, the first fit ends it. That fit and the probe give the plan's growth per
    # page, for one more estimate.
    anchor, step = no_fit, 2 * page
    while no_fit is not None and fit == first_fit and no_fit > 2 * page:
        halfway = (page + no_fit) // 2 // page * page
        if check(max(anchor - step, halfway)):
            growth = (fit_memory["total"] - probe["total"]) / ((fit - page) // page)
            better = int((budget_bytes - probe["total"]) // growth) * page + page
            if fit < better + page < no_fit:
                check(better + page)
            if fit < better and no_fit == better + page:
                check(better)
            break
        step *= 2
    if fit_memory is None:
        return result | nothing | {"constructions": constructions, "limited_by": "nothing fits"}
    context = longest_sequence(fit_memory, window_tokens, config.max_position_embeddings)
    return result | {
        "kv_tokens": fit,
        "capacity_tokens": fit_memory["capacity_tokens"],
        "dense_pages": fit_memory["dense_pages"],
        "compressed_pages": fit_memory["compressed_pages"],
        "context_tokens": context,
        "exact": no_fit == fit + page,
        "smallest_refused": no_fit,
        "limited_by": (
            "max_position_embeddings"
            if context == config.max_position_embeddings
            else "memory budget"
        ),
        "estimate": estimate,
        "kv_bytes_per_page": per_page,
        "engine_memory": fit_memory,
        "constructions": constructions,
    }


def load_weights(
    fmt: str, model: str, df11_model: str | None, device: str
) -> tuple[_core.Model, str]:
    """The model with `fmt` weights on `device`, and the directory it came from."""
    weights = "df11" if fmt.startswith("df11") else fmt
    source = df11_model if weights == "df11" and df11_model else model
    if weights == "df11" and not df11_model:
        log("no --df11-model: compressing the BF16 model to DF11 while loading")
    return _core.Model.load(source, {"device": device, "weights": weights}), source


def make_engine(model: _core.Model, fmt: str, options: dict) -> _core.Engine:
    """An engine; for df11-ahead with the fused DF11 matmul switched off while it is tuned."""
    if fmt != "df11-ahead":
        return _core.Engine(model, options)
    os.environ[FUSED_ROWS_ENV] = "0"
    try:
        return _core.Engine(model, options)
    finally:
        del os.environ[FUSED_ROWS_ENV]


def check_same_model(model: str, other: str) -> None:
    """The DF11 directory must hold the model measured in BF16 (same config shapes)."""
    keys = (
        "architectures",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
    )
    a, b = (json.loads((Path(d) / "config.json").read_text()) for d in (model, other))
    differ = [k for k in keys if a.get(k) != b.get(k)]
    if differ:
        raise SystemExit(f"{other}: config differs from {model} in {', '.join(differ)}")


def split_list(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip() and item.strip() != "none"]
    for item in items:
        if allowed is not None and item not in allowed:
            raise SystemExit(f"unknown value {item!r}; expected some of {', '.join(allowed)}")
    return items


def gib(value: int | None, digits: int = 2) -> str:
    """GiB as the engine's budget messages print them: 3 significant digits below 0.01."""
    if value is None:
        return ""
    v = value / GIB
    return f"{v:.{digits}f}" if v >= 0.01 or v == 0 else f"{v:.3g}"


def print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(
        f"{meta['model']}: prompt {meta['prompt']}, {meta['new']} new tokens; "
        f"{meta['device']}; slimrt {meta['commit']}; torch {meta['torch']}; transformers "
        f"{meta['transformers']}; {meta['date']}\n"
    )
    print("| engine | weights | sampling | batch | decode tokens/s | GPU GiB at peak | note |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for row in results["rows"]:
        tps = "" if row["decode_tokens_per_s"] is None else f"{row['decode_tokens_per_s']:.1f}"
        note = (row["error"] or "").replace("|", "/")[:120]
        print(
            f"| {row['engine']} | {row['weights']} | {row['sampling']} | {row['batch']} | {tps} | "
            f"{gib(row['gpu_peak_bytes'])} | {note} |"
        )
    if results["engines"]:
        print(
            "\nslimrt engines (GiB): engine.memory(), and what the model load and the engine took "
            "on the GPU\n\n"
            "| weights | total | weights | DF11 scratch | KV pool | KV tokens | activations "
            "| GPU taken | GPU peak in decode |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        for e in results["engines"]:
            m = e["engine_memory"]
            print(
                f"| {e['weights']} | {gib(m['total'])} | {gib(m['weights'])} | "
                f"{gib(m['df11_scratch'])} | {gib(m['kv_pool'])} | {e['kv_tokens']} | "
                f"{gib(m['activations'], 3)} | {gib(e['gpu_bytes_taken'])} | "
                f"{gib(e['gpu_peak_bytes'])} |"
            )
    for t in results["transformers_models"]:
        if t["gpu_bytes_taken"] is not None:
            print(f"\ntransformers model (BF16): loading took {gib(t['gpu_bytes_taken'])} GiB")
    print_budget(results)
    print_long_context(results)


def print_budget(results: dict[str, Any]) -> None:
    """The budget section's table (none without rows)."""
    if results["budget"]:
        print(
            "\nLongest single-sequence context and KV capacity in a fixed memory budget (slimrt, "
            f"max_batch 1, max_step_tokens {BUDGET_MAX_STEP_TOKENS}); KV capacity: the tokens the "
            "pool holds across sequences (dense + compressed pages x page size)\n\n"
            "| weights | KV sparsity | budget GiB | context tokens | KV capacity tokens "
            "| vs BF16 dense | KV pages dense + compressed | KV pool GiB | engine total GiB "
            "| limited by | exact | constructions |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"
        )
        for b in results["budget"]:
            head = f"| {b['weights']} | {b['kv_sparsity']:g} | {b['budget_gib']:g} |"
            if "error" in b:
                print(f"{head} | | | | | | {b['error'].replace('|', '/')} | | |")
                continue
            m = b.get("engine_memory") or {}
            context = str(b["context_tokens"])
            capacity = str(b["capacity_tokens"])
            if not b["exact"]:
                below = b.get("smallest_refused")
                capacity += " (at least)"
                context += f" (at least; pool less than {below})" if below else " (at least)"
            ratio = b.get("capacity_vs_bf16_dense")
            pages = f"{m['dense_pages']} + {m['compressed_pages']}" if m else ""
            print(
                f"{head} {context} | {capacity} | {'' if ratio is None else f'{ratio:.2f}x'} | "
                f"{pages} | {gib(m.get('kv_pool'))} | {gib(m.get('total'))} | "
                f"{b['limited_by']} | {'yes' if b['exact'] else 'no'} | {b['constructions']} |"
            )


def print_long_context(results: dict[str, Any]) -> None:
    """The long-context section's table (none without rows)."""
    meta = results["meta"]
    if results["long_context"]:
        print(
            "\nLong context (slimrt): every sequence prefilled to the context with random tokens "
            f"(chunks of {LONG_MAX_STEP_TOKENS}), then {meta['new']} greedy decode steps, the "
            "first untimed\n\n"
            "| weights | KV sparsity | context tokens | batch | decode tokens/s | prefill tokens/s "
            "| KV capacity tokens | KV pool GiB | engine total GiB | note |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        )
        for r in results["long_context"]:
            m = r.get("engine_memory") or {}
            tps, prefill_tps = r["decode_tokens_per_s"], r["prefill_tokens_per_s"]
            note = (r["error"] or "").replace("|", "/")[:120]
            print(
                f"| {r['weights']} | {r['kv_sparsity']:g} | {r['context_tokens']} | "
                f"{r['batch']} | {'' if tps is None else f'{tps:.1f}'} | "
                f"{'' if prefill_tps is None else f'{prefill_tps:.0f}'} | "
                f"{r.get('capacity_tokens', '')} | {gib(m.get('kv_pool'))} | "
                f"{gib(m.get('total'))} | {note} |"
            )


class Report:
    """Every result of the run; rewritten to `json_path` after each addition."""

    def __init__(self, meta: dict[str, Any], json_path: str | None) -> None:
        self.results: dict[str, Any] = {
            "meta": meta,
            "rows": [],
            "engines": [],
            "transformers_models": [],
            "budget": [],
            "long_context": [],
        }
        self.json_path = json_path

    def add(self, table: str, entry: dict[str, Any]) -> dict[str, Any]:
        self.results[table].append(entry)
        self.save()
        return entry

    def add_row(
        self,
        engine: str,
        weights: str,
        batch: int,
        tps: float | None,
        peak: int | None,
        error: str | None = None,
        sampling: str = "greedy",
    ) -> None:
        meta = self.results["meta"]
        row = {
            "engine": engine,
            "weights": weights,
            "batch": batch,
            "sampling": sampling,
            "decode_tokens_per_s": tps,
            "gpu_peak_bytes": peak,
            "error": error,
            "device": meta["device"],
            "commit": meta["commit"],
        }
        self.add("rows", row)
        log(f"{engine} {weights} batch {batch} {sampling}: {error or f'{tps:.1f} tokens/s'}")

    def add_long_row(self, entry: dict[str, Any]) -> None:
        meta = self.results["meta"]
        row = {"decode_tokens_per_s": None, "prefill_tokens_per_s": None, "error": None}
        row |= entry | {"device": meta["device"], "commit": meta["commit"]}
        self.add("long_context", row)
        tps = row["decode_tokens_per_s"]
        log(
            f"long context {row['context_tokens']}, {row['weights']}, KV sparsity "
            f"{row['kv_sparsity']:g}, batch {row['batch']}: {row['error'] or f'{tps:.1f} tokens/s'}"
        )

    def set_capacity_ratios(self) -> None:
        """Each budget row's KV capacity over the BF16 dense row's, once that row exists."""
        budget = self.results["budget"]
        base = next(
            (
                b.get("capacity_tokens")
                for b in budget
                if b["weights"] == "bf16" and b["kv_sparsity"] == 0
            ),
            None,
        )
        for b in budget:
            if base and b.get("capacity_tokens") is not None:
                b["capacity_vs_bf16_dense"] = b["capacity_tokens"] / base
        self.save()

    def save(self) -> None:
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self.results, indent=2) + "\n")


def measure_slimrt(
    report: Report, fmt: str, args: argparse.Namespace, batches: list[int], free: GpuFree
) -> None:
    """Decode rows and the engine's memory of one weight format. An error ends this format's
    measurements, recorded in its rows; the run goes on."""
    gpu = args.device == "cuda"
    try:
        release_gpu_memory(gpu)
        before = free.now()
        model, source = load_weights(fmt, args.model, args.df11_model, args.device)
        engine = make_engine(
            model,
            fmt,
            {
                "max_batch": max(batches),
                "kv_tokens": max(batches) * (args.prompt + args.new + 16),
                "max_step_tokens": max(args.prompt, max(batches)),
            },
        )
    except Exception as e:
        traceback.print_exc()
        for b in batches:
            report.add_row("slimrt", fmt, b, None, None, error_text(e))
        return
    taken = None if before is None else before - free.now()
    entry = report.add(
        "engines",
        {
            "weights": fmt,
            "source": source,
            "model": model.summary,
            "engine_memory": dict(engine.memory()),
            "kv_tokens": engine.total_pages * engine.page_size,
            "gpu_bytes_taken": taken,
            "gpu_peak_bytes": None,
        },
    )
    vocab = model.config.vocab_size
    for sampling in args.sampling:
        for b in batches:
            free.reset()
            try:
                tps = slimrt_decode(engine, b, args.prompt, args.new, vocab, sampling, free.sample)
            except Exception as e:
                traceback.print_exc()
                report.add_row("slimrt", fmt, b, None, None, error_text(e), sampling)
                continue
            peak = None if before is None else before - free.low
            if peak is not None:
                entry["gpu_peak_bytes"] = max(entry["gpu_peak_bytes"] or 0, peak)
            report.add_row("slimrt", fmt, b, tps, peak, sampling=sampling)
    del engine
    del model
    release_gpu_memory(gpu)


def measure_budget(report: Report, fmt: str, args: argparse.Namespace, model: _core.Model) -> None:
    """The longest context and KV capacity of one weight format in --budget-gib, per
    --kv-sparsity (run after every speed row)."""
    gpu = args.device == "cuda"
    log(f"longest context in {args.budget_gib:g} GiB, {fmt} weights: one-page probe")
    try:
        probe = budget_probe(model, args.budget_gib, gpu)
    except Exception as e:  # not a budget refusal: no figure, but the reason
        traceback.print_exc()
        for sparsity in args.kv_sparsity:
            entry = {"weights": fmt, "budget_gib": args.budget_gib, "kv_sparsity": sparsity}
            report.add("budget", entry | {"error": error_text(e)})
        return
    for sparsity in args.kv_sparsity:
        log(f"longest context in {args.budget_gib:g} GiB, {fmt} weights, KV sparsity {sparsity:g}:")
        try:
            budget = longest_context(model, args.budget_gib, gpu, probe, sparsity, args.kv_window)
        except Exception as e:  # e.g. a sparse cache the device does not run
            traceback.print_exc()
            budget = {
                "budget_gib": args.budget_gib,
                "kv_sparsity": sparsity,
                "error": error_text(e),
            }
        report.add("budget", {"weights": fmt} | budget)
        release_gpu_memory(gpu)
    report.set_capacity_ratios()


def long_context_kv_tokens(batch: int, tokens: int, sparsity: float, window: int | None) -> int:
    """kv_tokens of an engine for `batch` sequences of `tokens` tokens each. For a sparse cache
    kv_tokens is a byte budget: that of the dense pool, which more than holds the compressed
    pages (a record is smaller than its dense values above 1/16 sparsity, the bitmap's bit per
    value), plus the dense pages the engine keeps beside them, bounded by each sequence's window
    and 3 pages and one step (engine.cpp)."""
    page = _core.EngineOptions().page_size
    dense = batch * (tokens + page)
    if sparsity == 0:
        return dense
    window = _core.EngineOptions().kv_window if window is None else window
    return dense + batch * (window + 3 * page) + LONG_MAX_STEP_TOKENS + page


def prefill(engine: _core.Engine, seq: int, ids: np.ndarray, params: Any) -> int:
    """Feeds `ids` to sequence `seq` in chunks of LONG_MAX_STEP_TOKENS (slimrt.LLM's prefill
    chunk); the token sampled after the last."""
    for start in range(0, len(ids), LONG_MAX_STEP_TOKENS):
        chunk = ids[start : start + LONG_MAX_STEP_TOKENS]
        token = engine.step([seq], chunk, [len(chunk)], [params])[0]
    return int(token)


def long_context_decode(
    engine: _core.Engine, batch: int, context: int, new: int, vocab: int
) -> tuple[float, float]:
    """Decode tokens/s of `batch` sequences prefilled to `context` random tokens each, over
    (new - 1) timed greedy steps after one warm-up step, and the prefill's tokens/s.

    A warm-up pass goes first: the engine records a CUDA graph per batch size and bucket of the
    longest context on first use, so one sequence prefilled to `context` and (batch - 1) of one
    token, decoded `new` steps, record every graph the timed steps replay, for 1/batch of the
    measured pass's prefill."""
    rng = np.random.default_rng([context, batch])
    prompts = [rng.integers(0, vocab, context).astype(np.int32) for _ in range(batch)]
    greedy = [_core.SamplingParams(**SAMPLING["greedy"])] * batch
    ones = [1] * batch

    def one_pass(lengths: list[int], timed_steps: int) -> tuple[float, float]:
        """Seconds of the prefill and of the last `timed_steps` of `new` decode steps."""
        seqs = [engine.add_sequence() for _ in range(batch)]
        try:
            start = time.perf_counter()
            last = [
                prefill(engine, seq, ids[:n], greedy[0])
                for seq, ids, n in zip(seqs, prompts, lengths, strict=True)
            ]
            prefill_s = time.perf_counter() - start
            tokens = np.array(last, np.int32)
            for _ in range(new - timed_steps):
                tokens = engine.step(seqs, tokens, ones, greedy)
            start = time.perf_counter()
            for _ in range(timed_steps):
                tokens = engine.step(seqs, tokens, ones, greedy)  # ids come back: synchronous
            return prefill_s, time.perf_counter() - start
        finally:
            for seq in seqs:
                engine.release_sequence(seq)

    one_pass([context] + [1] * (batch - 1), 0)
    prefill_s, decode_s = one_pass([context] * batch, new - 1)
    return batch * (new - 1) / decode_s, batch * context / prefill_s


def measure_long_context(
    report: Report, fmt: str, args: argparse.Namespace, model: _core.Model
) -> None:
    """Decode tokens/s at --long-context tokens per sequence of one weight format, per
    --kv-sparsity and --long-batches: one engine per row, sized for its batch, so that a batch
    too large for the device loses only its own row. A refused engine or step is a row with its
    error; the run goes on."""
    gpu = args.device == "cuda"
    context = args.long_context
    vocab = model.config.vocab_size
    longest = model.config.max_position_embeddings
    for sparsity in args.kv_sparsity:
        kv = kv_options(sparsity, args.kv_window)
        for b in args.long_batches:
            row = {
                "weights": fmt,
                "kv_sparsity": sparsity,
                "context_tokens": context,
                "new": args.new,
                "batch": b,
            }
            if context + args.new > longest:  # the engine would refuse it only after the prefill
                error = f"context {context} + {args.new} new tokens exceeds the model's {longest}"
                report.add_long_row(row | {"error": error})
                continue
            kv_tokens = long_context_kv_tokens(b, context + args.new, sparsity, args.kv_window)
            log(
                f"long context {context}, {fmt} weights, KV sparsity {sparsity:g}, batch {b}: "
                f"kv_tokens {kv_tokens}"
            )
            options = {
                "max_batch": b,
                "max_step_tokens": LONG_MAX_STEP_TOKENS,
                "kv_tokens": kv_tokens,
            }
            try:
                engine = make_engine(model, fmt, options | kv)
            except Exception as e:  # e.g. not enough memory, or a sparse cache the device lacks
                traceback.print_exc()
                report.add_long_row(row | {"error": error_text(e)})
                continue
            usage = engine.kv_usage()
            row["engine_memory"] = dict(engine.memory())
            row["capacity_tokens"] = (usage["dense_pages"] + usage["compressed_pages"]) * usage[
                "page_size"
            ]
            try:
                tps, prefill_tps = long_context_decode(engine, b, context, args.new, vocab)
                row |= {"decode_tokens_per_s": tps, "prefill_tokens_per_s": prefill_tps}
            except Exception as e:  # e.g. the pool runs out of pages
                traceback.print_exc()
                row["error"] = error_text(e)
            row["kv_usage"] = dict(engine.kv_usage())  # its high-water marks: what the run used
            del engine
            release_gpu_memory(gpu)
            report.add_long_row(row)


def measure_kv_sections(report: Report, fmt: str, args: argparse.Namespace, budget: bool) -> None:
    """The budget section (if `budget`) and the long-context rows of one weight format, on one
    load of its model."""
    gpu = args.device == "cuda"
    try:
        model, _ = load_weights(fmt, args.model, args.df11_model, args.device)
    except Exception as e:
        traceback.print_exc()
        for sparsity in args.kv_sparsity:
            entry = {"weights": fmt, "kv_sparsity": sparsity, "error": error_text(e)}
            if budget:
                report.add("budget", entry | {"budget_gib": args.budget_gib})
            if args.long_context > 0:
                for b in args.long_batches:
                    report.add_long_row(entry | {"context_tokens": args.long_context, "batch": b})
        return
    if budget:
        measure_budget(report, fmt, args, model)
    if args.long_context > 0:
        measure_long_context(report, fmt, args, model)
    del model
    release_gpu_memory(gpu)


def measure_transformers(
    report: Report, modes: list[str], args: argparse.Namespace, batches: list[int], free: GpuFree
) -> None:
    from transformers import AutoModelForCausalLM

    gpu = args.device == "cuda"
    before = free.now()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16)
    model = model.to(args.device).eval()
    taken = None if before is None else before - free.now()
    report.add("transformers_models", {"weights": "bf16", "gpu_bytes_taken": taken})
    vocab = model.config.vocab_size
    for mode in modes:
        extra, warmup_new = transformers_mode_kwargs(mode, args.device)
        for b in batches:
            release_gpu_memory(gpu)
            try:
                tps = transformers_decode(
                    model,
                    b,
                    args.prompt,
                    args.new,
                    vocab,
                    args.device,
                    extra,
                    warmup_new or args.new,
                )
            except Exception as e:  # one failing mode must not lose the other results
                traceback.print_exc()
                report.add_row(TRANSFORMERS_MODES[mode], "bf16", b, None, None, error_text(e))
                continue
            peak = None if before is None else before - free.now()
            report.add_row(TRANSFORMERS_MODES[mode], "bf16", b, tps, peak)
    del model
    release_gpu_memory(gpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Hugging Face model directory (BF16)")
    parser.add_argument("--df11-model", help="its DF11 directory (slimrt compress)")
    parser.add_argument("--weights", default="bf16,df11", help="slimrt weight formats")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument(
        "--sampling", default="greedy", help="slimrt decoding modes: greedy,sampled,nucleus"
    )
    parser.add_argument(
        "--transformers", default="default,static", help="modes to run: default,static or none"
    )
    parser.add_argument("--budget-gib", type=float, default=24.0, help="0 skips")
    parser.add_argument(
        "--kv-sparsity",
        default="0",
        help="KV sparsities of the budget and long-context sections (0: dense), e.g. 0,0.5,0.7",
    )
    parser.add_argument(
        "--kv-window", type=int, help="dense newest tokens of a sparse cache (engine default)"
    )
    parser.add_argument(
        "--long-context", type=int, default=0, help="tokens per sequence; 0 skips the section"
    )
    parser.add_argument("--long-batches", default="1,8")
    parser.add_argument("--device", default="cuda", help="cpu: check the script without a GPU")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches = [int(b) for b in split_list(args.batches)]
    formats = split_list(args.weights, WEIGHT_FORMATS)
    # The core's choices (which DF11 products multiply as they decode) go to the log.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    modes = split_list(args.transformers, tuple(TRANSFORMERS_MODES))
    args.sampling = split_list(args.sampling, tuple(SAMPLING))
    args.long_batches = [int(b) for b in split_list(args.long_batches)]
    args.kv_sparsity = [float(s) for s in split_list(args.kv_sparsity)]
    if not batches and args.budget_gib <= 0 and args.long_context <= 0:
        raise SystemExit("--batches none measures nothing without --budget-gib or --long-context")
    if (args.budget_gib > 0 or args.long_context > 0) and not args.kv_sparsity:
        raise SystemExit("--kv-sparsity needs at least one value (0: the dense cache)")
    if args.long_context > 0 and not args.long_batches:
        raise SystemExit("--long-context needs --long-batches")
    for sparsity in args.kv_sparsity:
        try:  # the core's checks, before any model loads
            _core.EngineOptions.from_dict(kv_options(sparsity, args.kv_window))
        except InvalidArgumentError as e:
            raise SystemExit(f"--kv-sparsity {sparsity:g}: {e}") from None
    if args.new < 2:
        raise SystemExit("--new must be at least 2 (one warm-up step, then timed steps)")
    if args.df11_model and "df11" in formats:
        check_same_model(args.model, args.df11_model)

    gpu = args.device == "cuda"
    free = GpuFree(gpu)
    free.now()  # creates torch's CUDA context now, so no later figure includes it
    import transformers

    report = Report(
        {
            "model": args.model,
            "df11_model": args.df11_model,
            "prompt": args.prompt,
            "new": args.new,
            "batches": batches,
            "kv_sparsity": args.kv_sparsity,
            "kv_window": args.kv_window,
            "long_context": args.long_context,
            "long_batches": args.long_batches,
            "device": torch.cuda.get_device_name() if gpu else "CPU",
            "commit": source_commit(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "date": datetime.date.today().isoformat(),
        },
        args.json,
    )
    if batches:
        for fmt in formats:
            measure_slimrt(report, fmt, args, batches, free)
        if modes:
            measure_transformers(report, modes, args, batches, free)
    for fmt in formats:
        budget = args.budget_gib > 0 and fmt != "df11-ahead"  # the same memory as df11
        if budget or args.long_context > 0:
            measure_kv_sections(report, fmt, args, budget)
    print_report(report.results)


if __name__ == "__main__":
    main()
