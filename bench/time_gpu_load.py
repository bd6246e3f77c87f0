"""Load time of a model directory onto the GPU through the C++ loader, per weight format, with
and without the DF11 checksum check (on the GPU: decode by the GPU decoder, CRC by
cuda/checksum.cu), a fresh load each time; the files are read once first so the page cache
holds them and the figures time slimrt, not the disk.

    python bench/time_gpu_load.py --bf16 MODEL_DIR --df11 DF11_DIR [--reps 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from slimrt import _core


def seconds(path: str, options: dict) -> float:
    start = time.perf_counter()
    model = _core.Model.load(path, options)
    elapsed = time.perf_counter() - start
    del model
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bf16", required=True)
    parser.add_argument("--df11", required=True)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    for directory in (args.bf16, args.df11):
        for file in Path(directory).glob("*.safetensors"):
            file.read_bytes()  # into the page cache
    rows = [
        ("BF16 directory, bf16 weights", args.bf16, {"weights": "bf16"}),
        ("DF11 directory, df11 weights, verified", args.df11, {"weights": "df11"}),
        (
            "DF11 directory, df11 weights, unverified",
            args.df11,
            {"weights": "df11", "verify": False},
        ),
        ("DF11 directory, bf16 weights (decoded, verified)", args.df11, {"weights": "bf16"}),
    ]
    print("| load onto cuda | seconds (each run) |")
    print("| --- | --- |")
    for name, path, options in rows:
        times = [seconds(path, {"device": "cuda", **options}) for _ in range(args.reps)]
        print(f"| {name} | {' / '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
