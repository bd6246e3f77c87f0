"""The weights arena of a model's shapes in BF16 and in DF11, without the model: a dry run of
slimrt's loader accounting (cpp/src/weights.cpp: each matrix's BF16 bits, or its four DF11
arrays, and each vector as FP32, every allocation rounded up to the arena's 64 bytes; a
matrix whose DF11 form is not smaller stays BF16, as weights_format.cpp decides).

DF11 sizes depend on the values: each distinct matrix shape is drawn once from
bench/make_random_model.py's distribution (N(0, 0.02), rounded to BF16) and compressed with
slimrt's codec; every matrix of that shape is counted at that size. `--check DIR` first proves
the accounting on a real directory: its sum must equal Model.weight_bytes of the directory
loaded both ways.

    python bench/moe_weight_memory.py mixtral-8x7b [--check tests-tiny-mixtral-dir]
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

import numpy as np
from make_random_model import SHAPES, NumpyWeights, tensor_shapes
from slimrt import df11
from slimrt.model_loader import load_model
from slimrt.safetensors_file import read_safetensors

ALIGNMENT = 64  # cpp/src/arena.h kAlignment


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def df11_arena_bytes(t: df11.Df11Tensor) -> int:
    return sum(aligned(a.nbytes) for a in (t.lengths, t.bitstream, t.index, t.signmant))


def arena_bytes(shape: tuple[int, ...], bits: np.ndarray | None) -> tuple[int, int]:
    """(BF16 arena bytes, DF11 arena bytes) of one tensor; bits: its values (matrices)."""
    numel = math.prod(shape)
    if len(shape) == 1:
        return aligned(numel * 4), aligned(numel * 4)
    assert bits is not None
    compressed = df11.compress(bits)
    dense = aligned(numel * 2)
    return dense, df11_arena_bytes(compressed) if compressed.nbytes < numel * 2 else dense


def check(directory: Path) -> None:
    """The accounting, tensor by tensor on a directory's own values (every tensor of which the
    model uses), against the loader."""
    total = [0, 0]
    for file in sorted(directory.glob("*.safetensors")):
        f = read_safetensors(file)
        for name in f.tensors:
            array = f.array(name)
            bits = np.ascontiguousarray(array).view(np.uint16) if array.ndim == 2 else None
            for i, n in enumerate(arena_bytes(tuple(array.shape), bits)):
                total[i] += n
    loaded = [load_model(directory, weights=w, progress=False).model for w in ("bf16", "df11")]
    assert total == [m.weight_bytes for m in loaded], (total, [m.weight_bytes for m in loaded])
    print(f"check: {directory}: BF16 {total[0]} and DF11 {total[1]} bytes, as the loader says")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--check", type=Path, help="a model directory to prove the accounting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.check:
        check(args.check)
    shapes = tensor_shapes(SHAPES[args.shape])
    counts = Counter(shapes.values())
    draw = NumpyWeights(args.seed)
    bf16_total = df11_total = 0
    print("| shape | tensors | BF16 bytes each | DF11 bytes each |")
    print("| --- | ---: | ---: | ---: |")
    for shape, count in sorted(counts.items(), key=lambda kv: -math.prod(kv[0])):
        bits = draw(shape) if len(shape) == 2 else None
        dense, compressed = arena_bytes(shape, bits)
        print(f"| {list(shape)} | {count} | {dense} | {compressed} |")
        bf16_total += count * dense
        df11_total += count * compressed
    gb = 1e9
    print(
        f"\n{args.shape}: {len(shapes)} tensors; weights arena BF16 {bf16_total} bytes "
        f"({bf16_total / gb:.2f} GB), DF11 {df11_total} bytes ({df11_total / gb:.2f} GB), "
        f"{df11_total / bf16_total:.4f} of BF16"
    )


if __name__ == "__main__":
    main()
