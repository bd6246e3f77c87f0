"""Decode and prefill attention on one GPU: slimrt's paged kernels against torch SDPA.

For each case (batch x context, 32 query heads, 8 KV heads, head_dim 128, BF16), SDPA runs on
q [B, 32, 1, 128] and contiguous K/V [B, 8, L, 128] (enable_gqa=True), and slimrt on the same
values copied into a pool of 16-token pages scattered in random order. The outputs are compared
(relative L2 error per (sequence, head) < 1e-2), then each is timed with CUDA events: warm-up,
then the median of --reps launches. Inputs are rotated among several copies only when one
copy's K/V would fit in L2. Run it on a CUDA machine with torch and slimrt (built with CUDA):

    python bench/compare_attention.py --json compare_attention.json

The markdown table goes to stdout, progress to stderr. GB/s counts the K/V bytes each kernel
must read (B * L * 8 * 128 * 2 bytes, for K and for V) over its median time; "% of copy" relates
that to a device-to-device copy's read+write bandwidth. Exit code 1 when a check failed.

`--prefill-cases BATCHxLENGTH,...` (default 1x4096,1x16384,16x512) adds causal prefill: B prompts
of L tokens each, all of a prompt's tokens querying its own L positions (SDPA: is_causal=True on
q [B, 32, L, 128]; slimrt: its tensor-core prefill kernel, q in FP32 as the engine passes it).
TFLOP/s counts the causal work, 4 * B * 32 * 128 * L(L + 1)/2 flops, over the median time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from cuda_timing import time_cuda
from source_commit import source_commit

HEADS = 32
KV_HEADS = 8
HEAD_DIM = 128
PAGE_SIZE = 16
DEFAULT_CASES = "1x32768,32x4096,64x8192"
DEFAULT_PREFILL_CASES = "1x4096,1x16384,16x512"
L2_BYTES = 50 * 1024 * 1024
MAX_INPUT_SETS = 4


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Inputs:
    """One input set: q, contiguous K/V for SDPA, and the same K/V as scattered pages."""

    def __init__(
        self, batch: int, context: int, seed: int, device: torch.device, queries: int = 1
    ) -> None:
        g = torch.Generator(device=device).manual_seed(seed)
        shape = (batch, KV_HEADS, context, HEAD_DIM)
        self.q = torch.randn(
            (batch, HEADS, queries, HEAD_DIM), generator=g, device=device, dtype=torch.bfloat16
        )
        self.k = torch.randn(shape, generator=g, device=device, dtype=torch.bfloat16)
        self.v = torch.randn(shape, generator=g, device=device, dtype=torch.bfloat16)
        pages_per_seq = math.ceil(context / PAGE_SIZE)
        pages = batch * pages_per_seq
        perm = torch.randperm(pages, generator=g, device=device).to(torch.int32)
        self.page_indices = perm.contiguous()
        self.page_indptr = torch.arange(
            0, pages + 1, pages_per_seq, device=device, dtype=torch.int32
        )
        self.context_lens = torch.full((batch,), context, device=device, dtype=torch.int32)
        self.k_pages = self._paged(self.k, pages, pages_per_seq)
        self.v_pages = self._paged(self.v, pages, pages_per_seq)
        # [tokens][heads][head_dim], tokens sequence-major: the engine's layout.
        self.q_flat = self.q.transpose(1, 2).reshape(batch * queries, HEADS, HEAD_DIM).contiguous()
        self.out = torch.empty_like(self.q_flat)
        self.q_indptr = torch.arange(
            0, batch * queries + 1, queries, device=device, dtype=torch.int32
        )

    def _paged(self, kv: torch.Tensor, pages: int, pages_per_seq: int) -> torch.Tensor:
        batch, _, context, _ = kv.shape
        pool = torch.zeros(
            (pages, PAGE_SIZE, KV_HEADS, HEAD_DIM), device=kv.device, dtype=torch.bfloat16
        )
        for b in range(batch):  # one sequence at a time bounds the temporary copies
            padded = torch.zeros(
                (pages_per_seq * PAGE_SIZE, KV_HEADS, HEAD_DIM),
                device=kv.device,
                dtype=torch.bfloat16,
            )
            padded[:context] = kv[b].transpose(0, 1)
            idx = self.page_indices[b * pages_per_seq : (b + 1) * pages_per_seq].long()
            pool[idx] = padded.view(pages_per_seq, PAGE_SIZE, KV_HEADS, HEAD_DIM)
        return pool


def max_relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """The largest relative L2 error of a head_dim row (a NaN or inf counts as infinite)."""
    got, ref = got.float(), ref.float()
    rel = (got - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-30)
    return float(rel.nan_to_num(float("inf")).max())


def parse_cases(text: str) -> list[tuple[int, int]]:
    """'AxB,CxD' as [(A, B), (C, D)]; 'none' is no case."""
    cases = []
    for case in text.split(","):
        if case != "none":
            a, b = case.split("x")
            cases.append((int(a), int(b)))
    return cases


def sdpa(x: Inputs, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(x.q, x.k, x.v, scale=scale, enable_gqa=True)


def run_case(core: Any, batch: int, context: int, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda")
    kv_bytes = 2 * batch * KV_HEADS * context * HEAD_DIM * 2
    sets = max(1, min(MAX_INPUT_SETS, math.ceil(2 * L2_BYTES / kv_bytes)))
    log(f"{batch}x{context}: building {sets} input set(s), K/V {kv_bytes / 1e6:.0f} MB each")
    inputs = [Inputs(batch, context, 1000 + i, device) for i in range(sets)]
    scale = 1.0 / math.sqrt(HEAD_DIM)
    plan = core.paged_decode_attention_plan(batch, HEADS, KV_HEADS, HEAD_DIM, PAGE_SIZE, context)
    workspace = torch.empty(max(1, plan["workspace_bytes"]), device=device, dtype=torch.uint8)
    stream = torch.cuda.Stream()

    def slimrt_launch(x: Inputs) -> None:
        core.paged_decode_attention_cuda(
            x.q_flat.data_ptr(),
            x.k_pages.data_ptr(),
            x.v_pages.data_ptr(),
            x.page_indptr.data_ptr(),
            x.page_indices.data_ptr(),
            x.context_lens.data_ptr(),
            x.out.data_ptr(),
            workspace.data_ptr(),
            plan["workspace_bytes"],
            scale,
            num_seqs=batch,
            heads=HEADS,
            kv_heads=KV_HEADS,
            head_dim=HEAD_DIM,
            page_size=PAGE_SIZE,
            max_context=context,
            stream=torch.cuda.current_stream().cuda_stream,
        )

    # Correctness on every set (on the default stream, before any timing).
    worst = 0.0
    for x in inputs:
        x.out.fill_(float("nan"))
        slimrt_launch(x)
        ref = sdpa(x, scale).reshape(batch, HEADS, HEAD_DIM)
        worst = max(worst, max_relative_error(x.out, ref))
    ok = worst < 1e-2
    log(f"  max relative L2 error vs SDPA: {worst:.2e} ({'ok' if ok else 'FAILED'})")

    counter = {"sdpa": 0, "slimrt": 0}

    def rotating(name: str, fn: Callable[[Inputs], Any]) -> Callable[[], None]:
        def launch() -> None:
            fn(inputs[counter[name] % sets])
            counter[name] += 1

        return launch

    sdpa_us = time_cuda(
        rotating("sdpa", lambda x: sdpa(x, scale)), stream, args.warmup, args.reps, 50.0
    )
    slimrt_us = time_cuda(rotating("slimrt", slimrt_launch), stream, args.warmup, args.reps, 50.0)
    sdpa_med = statistics.median(sdpa_us)
    slimrt_med = statistics.median(slimrt_us)
    return {
        "case": f"{batch}x{context}",
        "batch": batch,
        "context": context,
        "kv_bytes": kv_bytes,
        "input_sets": sets,
        "splits": plan["splits"],
        "chunk_tokens": plan["chunk_tokens"],
        "max_rel_err": worst,
        "ok": ok,
        "sdpa_us": {"median": sdpa_med, "min": min(sdpa_us), "stdev": statistics.stdev(sdpa_us)},
        "slimrt_us": {
            "median": slimrt_med,
            "min": min(slimrt_us),
            "stdev": statistics.stdev(slimrt_us),
        },
        "ratio": slimrt_med / sdpa_med,
        "sdpa_gbps": kv_bytes / (sdpa_med * 1e-6) / 1e9,
        "slimrt_gbps": kv_bytes / (slimrt_med * 1e-6) / 1e9,
    }


def run_prefill_case(
    core: Any, batch: int, length: int, args: argparse.Namespace
) -> dict[str, Any]:
    device = torch.device("cuda")
    log(f"prefill {batch}x{length}: building the inputs")
    x = Inputs(batch, length, 2000 + length, device, queries=length)
    q_f32 = x.q_flat.float()
    scale = 1.0 / math.sqrt(HEAD_DIM)
    stream = torch.cuda.Stream()

    def slimrt_launch() -> None:
        core.paged_prefill_attention_cuda(
            q_f32.data_ptr(),
            x.k_pages.data_ptr(),
            x.v_pages.data_ptr(),
            x.q_indptr.data_ptr(),
            x.page_indptr.data_ptr(),
            x.page_indices.data_ptr(),
            x.context_lens.data_ptr(),
            x.out.data_ptr(),
            scale,
            num_seqs=batch,
            heads=HEADS,
            kv_heads=KV_HEADS,
            head_dim=HEAD_DIM,
            page_size=PAGE_SIZE,
            max_query_tokens=length,
            stream=torch.cuda.current_stream().cuda_stream,
        )

    def sdpa_launch() -> torch.Tensor:
        return F.scaled_dot_product_attention(
            x.q, x.k, x.v, scale=scale, is_causal=True, enable_gqa=True
        )

    x.out.fill_(float("nan"))
    slimrt_launch()
    ref = sdpa_launch().transpose(1, 2).reshape(batch * length, HEADS, HEAD_DIM)
    worst = max_relative_error(x.out, ref)
    ok = worst < 1e-2
    log(f"  max relative L2 error vs SDPA: {worst:.2e} ({'ok' if ok else 'FAILED'})")
    sdpa_med = statistics.median(time_cuda(sdpa_launch, stream, args.warmup, args.reps, 50.0))
    slimrt_med = statistics.median(time_cuda(slimrt_launch, stream, args.warmup, args.reps, 50.0))
    flops = 4 * batch * HEADS * HEAD_DIM * length * (length + 1) / 2
    return {
        "case": f"{batch}x{length}",
        "batch": batch,
        "length": length,
        "max_rel_err": worst,
        "ok": ok,
        "sdpa_us": sdpa_med,
        "slimrt_us": slimrt_med,
        "ratio": slimrt_med / sdpa_med,
        "sdpa_tflops": flops / (sdpa_med * 1e-6) / 1e12,
        "slimrt_tflops": flops / (slimrt_med * 1e-6) / 1e12,
    }


def copy_gbps(args: argparse.Namespace) -> float:
    n = 512 * 1024 * 1024
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = time_cuda(lambda: dst.copy_(src), torch.cuda.Stream(), args.warmup, args.reps, 50.0)
    return 2 * n / (statistics.median(times) * 1e-6) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="BATCHxCONTEXT,...")
    parser.add_argument(
        "--prefill-cases", default=DEFAULT_PREFILL_CASES, help="BATCHxLENGTH,... or none"
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from slimrt import _core as core

    cases = parse_cases(args.cases)
    prefill_cases = parse_cases(args.prefill_cases)
    copy = copy_gbps(args)
    log(f"device-to-device copy: {copy:.0f} GB/s read+write")
    rows = []
    for b, ctx in cases:
        rows.append(run_case(core, b, ctx, args))
        torch.cuda.empty_cache()  # the case's inputs are gone; give their memory back
    prefill_rows = []
    for b, length in prefill_cases:
        prefill_rows.append(run_prefill_case(core, b, length, args))
        torch.cuda.empty_cache()

    gpu = torch.cuda.get_device_name()
    commit = source_commit()
    print(
        f"decode attention, {HEADS} q / {KV_HEADS} kv heads, d={HEAD_DIM}, BF16, page "
        f"{PAGE_SIZE}; {gpu}; torch {torch.__version__}; slimrt {commit}; median of "
        f"{args.reps}; D2D copy {copy:.0f} GB/s"
    )
    print()
    print(
        "| case | SDPA us | slimrt us | slimrt/SDPA | SDPA GB/s | slimrt GB/s "
        "| slimrt % of copy | splits | max rel err |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['sdpa_us']['median']:.1f} | {r['slimrt_us']['median']:.1f} "
            f"| {r['ratio']:.3f} | {r['sdpa_gbps']:.0f} | {r['slimrt_gbps']:.0f} "
            f"| {100 * r['slimrt_gbps'] / copy:.1f} | {r['splits']} "
            f"| {r['max_rel_err']:.1e}{'' if r['ok'] else ' FAILED'} |"
        )
    if prefill_rows:
        print(
            f"\nprefill attention (causal), {HEADS} q / {KV_HEADS} kv heads, d={HEAD_DIM}, BF16 "
            f"K/V, page {PAGE_SIZE}; median of {args.reps}\n"
        )
        print(
            "| case | SDPA us | slimrt us | slimrt/SDPA | SDPA TFLOP/s | slimrt TFLOP/s "
            "| max rel err |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in prefill_rows:
            print(
                f"| {r['case']} | {r['sdpa_us']:.1f} | {r['slimrt_us']:.1f} | {r['ratio']:.3f} "
                f"| {r['sdpa_tflops']:.0f} | {r['slimrt_tflops']:.0f} "
                f"| {r['max_rel_err']:.1e}{'' if r['ok'] else ' FAILED'} |"
            )
    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "gpu": gpu,
            "torch": torch.__version__,
            "commit": commit,
            "copy_gbps_read_write": copy,
            "reps": args.reps,
            "warmup": args.warmup,
            "cases": rows,
            "prefill_cases": prefill_rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows + prefill_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
