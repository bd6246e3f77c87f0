"""Decode tokens/s and GPU memory in one run: slimrt (BF16, DF11) vs transformers generate.

Side by side: slimrt's CUDA engine with BF16 and with DF11 weights, and transformers `generate`
(default, and static cache + torch.compile), plus the longest context each slimrt weight format
fits in a fixed memory budget.

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

Longest context in a fixed budget (`--budget-gib X`, 0 skips): per weight format, the largest
KV pool (kv_tokens, whole pages) an engine with memory_limit_bytes = X GiB (the model's
weights and the engine's arenas together), max_batch 1, max_step_tokens 512 accepts, i.e. the
longest single sequence (also capped by max_position_embeddings). A one-page engine's memory()
gives the fixed part and the size of a page (K and V: 2 x layers x kv_heads x head_dim x 2
bytes per token for BF16 KV), hence an estimate; then the estimate + 1 page must be refused
with "not enough memory" and the estimate must fit (one step down or up if not). The model is
loaded once per format; a refusal is cheap (the budget is checked before anything is
reserved), a fit reserves the engine's arenas: at most three fits per format.

    python bench/compare_gpu_generate.py MODEL_DIR [--df11-model DIR] [--weights bf16,df11]
        [--batches 1,16,64] [--prompt 128] [--new 128] [--sampling greedy]
        [--transformers default,static] [--budget-gib 24] [--device cuda|cpu] [--json out.json]

`--device cpu` checks the script on a machine without a GPU (memory columns stay empty). The
markdown tables go to stdout at the end; each result is also logged to stderr when it is
measured, and `--json` is rewritten after each one, so a run cut short keeps what it measured.
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
from slimrt.errors import OutOfMemoryError
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


def longest_context(model: _core.Model, budget_gib: float, gpu: bool) -> dict[str, Any]:
    """Largest kv_tokens an engine (max_batch 1) on `model` accepts within budget_bytes; see
    the module docstring for the method. Any error other than the budget's propagates."""
    config = model.config
    budget_bytes = int(budget_gib * GIB)
    per_token = kv_bytes_per_token(config)
    constructions = 0

    def memory_at(kv_tokens: int) -> dict[str, int] | None:
        nonlocal constructions
        constructions += 1
        options = {
            "max_batch": 1,
            "max_step_tokens": BUDGET_MAX_STEP_TOKENS,
            "kv_tokens": kv_tokens,
            "memory_limit_bytes": budget_bytes,
        }
        try:
            engine = _core.Engine(model, options)
        except OutOfMemoryError as e:
            if not is_budget_error(e):
                raise
            log(f"  kv_tokens {kv_tokens}: does not fit ({str(e).split(' [')[0]})")
            return None
        memory = dict(engine.memory())
        page = engine.page_size
        del engine
        release_gpu_memory(gpu)
        memory["page_size"] = page
        log(f"  kv_tokens {kv_tokens}: fits ({memory['total'] / GIB:.3f} GiB)")
        return memory

    result: dict[str, Any] = {
        "budget_gib": budget_gib,
        "budget_bytes": budget_bytes,
        "kv_bytes_per_token": per_token,
        "max_position_embeddings": config.max_position_embeddings,
    }
    # One page: the fixed part of the budget (weights, DF11 scratch, activations).
    probe = memory_at(16)
    if probe is None:
        return result | {
            "kv_tokens": 0,
            "context_tokens": 0,
            "exact": True,
            "limited_by": "not even one page fits",
            "constructions": constructions,
        }
    page = probe["page_size"]
    fixed = probe["total"] - probe["kv_pool"]
    # The probe's pool is one page: it measures the page's real size, should the pool ever hold
    # more than K and V (the formula alone would then overshoot).
    per_page = probe["kv_pool"] or per_token * page
    if per_page != per_token * page:
        log(f"  a KV page takes {per_page} bytes; K and V of {page} tokens are {per_token * page}")
    cap = config.max_position_embeddings // page * page
    estimate = min(max((budget_bytes - fixed) // per_page, 1) * page, cap)

    fit, fit_memory, no_fit = page, probe, None  # largest known to fit, smallest known not to

    def check(kv_tokens: int) -> bool:
        nonlocal fit, fit_memory, no_fit
        memory = memory_at(kv_tokens)
        if memory is not None and kv_tokens > fit:
            fit, fit_memory = kv_tokens, memory
        elif memory is None and (no_fit is None or kv_tokens < no_fit):
            no_fit = kv_tokens
        return memory is not None

    if estimate < cap:
        check(estimate + page)  # refused before any weight is copied: cheap
    if estimate > fit:
        check(estimate)
    # One adjustment when the estimate was off by a page.
    if no_fit is None and fit < cap:
        check(fit + page)
    elif no_fit is not None and no_fit > fit + page:
        check(no_fit - page)
    # Still no fit near the estimate (the plan grows with the pool faster than the probe
    # showed): step down 2, 4, 8... pages, at most halfway to the probe each time; refusals
    # cost nothing, the first fit ends it. That fit and the probe give the plan's exact growth
    # per page, for one more estimate.
    anchor, step = no_fit, 2 * page
    while no_fit is not None and fit == page and no_fit > 2 * page:
        halfway = (page + no_fit) // 2 // page * page
        if check(max(anchor - step, halfway)):
            growth = (fit_memory["total"] - probe["total"]) / ((fit - page) // page)
            better = min(int((budget_bytes - probe["total"]) // growth) * page + page, cap)
            if fit < better + page < no_fit:
                check(better + page)
            if fit < better and no_fit == better + page:
                check(better)
            break
        step *= 2
    exact = fit == cap or no_fit == fit + page
    return result | {
        "kv_tokens": fit,
        "context_tokens": min(fit, config.max_position_embeddings),
        "exact": exact,
        "smallest_refused": no_fit,
        "limited_by": "max_position_embeddings" if fit == cap else "memory budget",
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
    if results["budget"]:
        print(
            "\nLongest single-sequence context in a fixed memory budget (slimrt, max_batch 1, "
            f"max_step_tokens {BUDGET_MAX_STEP_TOKENS})\n\n"
            "| weights | budget GiB | context tokens | KV pool GiB | engine total GiB "
            "| limited by | exact | constructions |\n"
            "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |"
        )
        for b in results["budget"]:
            if "error" in b:
                print(f"| {b['weights']} | {b['budget_gib']:g} | | | | {b['error']} | | |")
                continue
            m = b.get("engine_memory") or {}
            context = str(b["context_tokens"])
            if not b["exact"]:
                below = b.get("smallest_refused")
                context += f" (at least; less than {below})" if below else " (at least)"
            print(
                f"| {b['weights']} | {b['budget_gib']:g} | {context} | "
                f"{gib(m.get('kv_pool'))} | {gib(m.get('total'))} | {b['limited_by']} | "
                f"{'yes' if b['exact'] else 'no'} | {b['constructions']} |"
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


def measure_budget(report: Report, fmt: str, args: argparse.Namespace) -> None:
    """The longest context of one weight format in --budget-gib (run after every speed row)."""
    gpu = args.device == "cuda"
    log(f"longest context in {args.budget_gib:g} GiB, {fmt} weights:")
    try:
        model, _ = load_weights(fmt, args.model, args.df11_model, args.device)
        budget = longest_context(model, args.budget_gib, gpu)
        del model
    except Exception as e:  # not a budget refusal: no figure, but the reason
        traceback.print_exc()
        budget = {"budget_gib": args.budget_gib, "error": error_text(e)}
    report.add("budget", {"weights": fmt} | budget)
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
    parser.add_argument("--device", default="cuda", help="cpu: check the script without a GPU")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches = [int(b) for b in split_list(args.batches)]
    formats = split_list(args.weights, WEIGHT_FORMATS)
    # The core's choices (which DF11 products multiply as they decode) go to the log.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    modes = split_list(args.transformers, tuple(TRANSFORMERS_MODES))
    args.sampling = split_list(args.sampling, tuple(SAMPLING))
    if not batches and args.budget_gib <= 0:
        raise SystemExit("--batches none measures nothing without --budget-gib")
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
    if args.budget_gib > 0:
        for fmt in formats:
            if fmt != "df11-ahead":  # the same memory as df11
                measure_budget(report, fmt, args)
    print_report(report.results)


if __name__ == "__main__":
    main()
