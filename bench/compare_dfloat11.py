"""DF11 decode on one GPU: slimrt's kernel against the dfloat11 package's (v0.5.0), side by side.

Both codecs compress the same seeded N(0, std) BF16 matrix; each decoder's output is checked
bit for bit against the original, then each decoder and a device-to-device copy of the same
output size are timed with CUDA events. Run it on a CUDA machine that has torch, cupy, numpy,
slimrt, dfloat11==0.5.0 and dahuffman==0.4.2:

    python bench/compare_dfloat11.py --json compare_dfloat11.json

The markdown table goes to stdout; progress (and dfloat11's own prints) to stderr. The exit
code is 1 when either decoder failed or was not bit-exact, 0 otherwise.

Figures, per decoder: the median time of --reps launches; GB/s of BF16 output (2 bytes per
element over the median time); "% of copy", that over the copy's bandwidth counting bytes read
plus written; "% of bound", that over the output rate a decoder reading r compressed bytes and
writing 2 bytes per element would reach at copy bandwidth, copy * 2 / (2 + r). dfloat11's ratio
counts what its own compression print counts: encoded exponents, sign+mantissa bytes, output
positions and gaps (not its few-KB lookup tables); slimrt's counts its four arrays.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from cuda_timing import time_cuda
from source_commit import source_commit

# dfloat11 0.5.0's launch geometry (dfloat11/dfloat11.py: bytes_per_thread, threads_per_block).
DFLOAT11_BYTES_PER_THREAD = 8
DFLOAT11_THREADS_PER_BLOCK = 512
# Dynamic shared memory a kernel may use without opting in.
DEFAULT_SHARED_MEMORY_LIMIT = 48 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """dfloat11 prints its code tables and ratio on stdout; stdout is for the results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Timing:
    samples_us: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_us)

    @property
    def minimum(self) -> float:
        return min(self.samples_us)

    def summary(self) -> dict[str, float]:
        s = self.samples_us
        return {
            "median": self.median,
            "min": self.minimum,
            "mean": statistics.fmean(s),
            "stddev": statistics.stdev(s) if len(s) > 1 else 0.0,
            "max": max(s),
        }


@dataclass
class DecoderResult:
    name: str
    version: str
    compressed_bytes: int | None = None
    encode_s: float | None = None
    bit_exact: bool | None = None
    timing: Timing | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.bit_exact is True and self.timing is not None


def failed(result: DecoderResult, stage: str, error: BaseException) -> None:
    result.error = f"{stage}: {type(error).__name__}: {error}"
    log(f"!! {result.name} {result.error}")
    traceback.print_exc(file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Shared pieces


def make_matrix(rows: int, cols: int, std: float, seed: int) -> torch.Tensor:
    """N(0, std) in float32 from a seeded CPU generator, rounded to BF16 (torch rounds to
    nearest even)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    values = torch.randn((rows, cols), generator=generator, dtype=torch.float32)
    return values.mul_(std).to(torch.bfloat16)


def mismatch(expected: torch.Tensor, got: torch.Tensor) -> str | None:
    """None when the two BF16 tensors are equal bit for bit, else what differs."""
    a = expected.reshape(-1).view(torch.int16)
    b = got.reshape(-1).view(torch.int16)
    if torch.equal(a, b):
        return None
    differ = a != b
    first = int(torch.nonzero(differ)[0].item())
    return (
        f"{int(differ.sum().item())} of {a.numel()} values differ, the first at element {first} "
        f"(expected {int(a[first].item()) & 0xFFFF:#06x}, got {int(b[first].item()) & 0xFFFF:#06x})"
    )


def poisoned_output(numel: int, device: torch.device) -> torch.Tensor:
    """An output buffer filled with 0xFFFF (a NaN), so that elements a decoder never writes
    cannot pass the check by luck."""
    return torch.full((numel,), -1, dtype=torch.int16, device=device).view(torch.bfloat16)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# dfloat11 0.5.0, driven as its compress_model() and decode hook drive it


@dataclass
class Dfloat11Encoding:
    luts: torch.Tensor
    encoded: torch.Tensor
    other_8bits: torch.Tensor
    output_positions: torch.Tensor
    gaps: torch.Tensor

    @property
    def n_luts(self) -> int:
        return int(self.luts.shape[0])

    @property
    def n_bytes(self) -> int:
        return int(self.encoded.numel())

    @property
    def n_elements(self) -> int:
        return int(self.other_8bits.numel())

    def positions(self) -> np.ndarray:
        return self.output_positions.numpy().astype(np.int64)

    def compressed_bytes(self) -> int:
        """What encode_weights() prints as its compression factor."""
        return (
            self.encoded.numel()
            + self.other_8bits.numel()
            + self.output_positions.numel() * 4
            + self.gaps.numel()
        )

    def shared_mem_size(self) -> int:
        """compress_model()'s formula: per-thread counts, one total, and the block's output."""
        largest_block = int(np.diff(self.positions()).max())
        return DFLOAT11_THREADS_PER_BLOCK * 4 + 4 + largest_block * 2

    def blocks(self) -> int:
        per_block = DFLOAT11_THREADS_PER_BLOCK * DFLOAT11_BYTES_PER_THREAD
        return math.ceil(self.n_bytes / per_block)


def dfloat11_package_dir() -> Path:
    """Where dfloat11 is installed, found without importing it: its __init__ imports
    transformers, accelerate and huggingface_hub, which the codec does not need."""
    spec = importlib.util.find_spec("dfloat11")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("dfloat11 is not installed (pip install dfloat11==0.5.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def load_dfloat11_utils(package_dir: Path) -> ModuleType:
    """dfloat11/dfloat11_utils.py alone (it imports torch, numpy, dahuffman, tqdm and copy)."""
    spec = importlib.util.spec_from_file_location(
        "dfloat11_utils_standalone", package_dir / "dfloat11_utils.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {package_dir / 'dfloat11_utils.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dfloat11_encode(weight: torch.Tensor, utils: ModuleType) -> Dfloat11Encoding:
    """compress_model()'s steps for one weight, on the CPU (a pure-Python loop: slow)."""
    flat = weight.detach().cpu().flatten()
    with stdout_to_stderr():
        _, counter = utils.get_codec(flat)
        codec, _, table = utils.get_32bit_codec(counter)
        luts = utils.get_luts(table)
        encoded, other_8bits, output_positions, gaps, _ = utils.encode_weights(
            [flat], codec, DFLOAT11_BYTES_PER_THREAD, DFLOAT11_THREADS_PER_BLOCK
        )
    return Dfloat11Encoding(luts, encoded, other_8bits, output_positions, gaps)


def to_device_bytes(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor's bytes on the GPU. Going through uint8 avoids torch's partial support of
    uint32 (output_positions) on some versions; the kernel only needs the address."""
    host = np.ascontiguousarray(tensor.numpy()).view(np.uint8)
    return torch.from_numpy(host).to(device)


class Dfloat11Decoder:
    """The package's PTX kernel, launched with the hook's geometry and argument order."""

    def __init__(self, encoding: Dfloat11Encoding, package_dir: Path, device: torch.device):
        import cupy

        self.encoding = encoding
        self.device = device
        for name, value in [("bytes", encoding.n_bytes), ("elements", encoding.n_elements)]:
            if value >= 2**31:
                raise ValueError(f"dfloat11's kernel takes 32-bit counts; {value} {name}")
        cupy.cuda.Device(device.index or 0).use()
        module = cupy.RawModule(path=str(package_dir / "decode.ptx"))
        self.kernel = module.get_function("decode")
        self.shared_mem = encoding.shared_mem_size()
        if self.shared_mem > DEFAULT_SHARED_MEMORY_LIMIT:
            # The package never opts in; without this the launch would fail outright.
            function = getattr(self.kernel, "kernel", self.kernel)
            cupy.cuda.driver.funcSetAttribute(
                function.ptr,
                cupy.cuda.driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                self.shared_mem,
            )
        self.blocks = encoding.blocks()
        self.buffers = [
            to_device_bytes(t, device)
            for t in (
                encoding.luts,
                encoding.encoded,
                encoding.other_8bits,
                encoding.output_positions,
                encoding.gaps,
            )
        ]
        self._cupy = cupy
        self._streams: dict[int, Any] = {}

    def launch(self, out: torch.Tensor, stream: torch.cuda.Stream) -> None:
        luts, encoded, other_8bits, output_positions, gaps = self.buffers
        e = self.encoding
        cupy_stream = self._streams.get(stream.cuda_stream)
        if cupy_stream is None:
            cupy_stream = self._cupy.cuda.ExternalStream(stream.cuda_stream)
            self._streams[stream.cuda_stream] = cupy_stream
        self.kernel(
            (self.blocks,),
            (DFLOAT11_THREADS_PER_BLOCK,),
            (
                np.uint64(luts.data_ptr()),
                np.uint64(encoded.data_ptr()),
                np.uint64(other_8bits.data_ptr()),
                np.uint64(output_positions.data_ptr()),
                np.uint64(gaps.data_ptr()),
                np.uint64(out.data_ptr()),
                np.int32(e.n_luts),
                np.int32(e.n_bytes),
                np.int32(e.n_elements),
            ),
            shared_mem=self.shared_mem,
            stream=cupy_stream,
        )


# --------------------------------------------------------------------------------------------
# slimrt


@dataclass
class SlimrtArrays:
    lengths: np.ndarray
    bitstream: np.ndarray
    index: np.ndarray
    signmant: np.ndarray
    numel: int

    def compressed_bytes(self) -> int:
        return sum(a.nbytes for a in (self.lengths, self.bitstream, self.index, self.signmant))


def slimrt_compress(weight: torch.Tensor) -> SlimrtArrays:
    """The one place that knows slimrt's Python API for compressing."""
    from slimrt import df11

    t = df11.compress(weight)
    return SlimrtArrays(t.lengths, t.bitstream, t.index, t.signmant, int(t.numel))


class SlimrtDecoder:
    """The one place that knows slimrt's Python API for decoding on the GPU."""

    def __init__(self, arrays: SlimrtArrays):
        from slimrt import _core

        self.tensor = _core.Df11DeviceTensor(
            arrays.lengths, arrays.bitstream, arrays.index, arrays.signmant, arrays.numel
        )

    def launch(self, out: torch.Tensor, stream: torch.cuda.Stream) -> None:
        self.tensor.decode_into_ptr(out.data_ptr(), stream.cuda_stream)


# --------------------------------------------------------------------------------------------
# The comparison


def decode_and_time(
    result: DecoderResult,
    launch: Callable[[torch.Tensor, torch.cuda.Stream], None],
    original: torch.Tensor,
    stream: torch.cuda.Stream,
    args: argparse.Namespace,
) -> None:
    out = poisoned_output(original.numel(), original.device)
    torch.cuda.synchronize()  # the poison was written on the default stream
    with torch.cuda.stream(stream):
        launch(out, stream)
    stream.synchronize()
    problem = mismatch(original, out)
    result.bit_exact = problem is None
    if problem is not None:
        result.error = f"decode is not bit-exact: {problem}"
        log(f"!! {result.name}: {result.error}")
        return
    log(f"{result.name}: bit-exact; timing {args.reps} launches after {args.warmup} warm-up")
    result.timing = Timing(time_cuda(lambda: launch(out, stream), stream, args.warmup, args.reps))


def run_dfloat11(
    weight: torch.Tensor,
    original: torch.Tensor,
    stream: torch.cuda.Stream,
    args: argparse.Namespace,
) -> DecoderResult:
    result = DecoderResult("dfloat11", package_version("dfloat11"))
    try:
        package_dir = dfloat11_package_dir()
        utils = load_dfloat11_utils(package_dir)
        log("dfloat11: encoding on the CPU (a Python loop over every element: ~25 s or more)")
        start = time.perf_counter()
        encoding = dfloat11_encode(weight, utils)
        result.encode_s = time.perf_counter() - start
        result.compressed_bytes = encoding.compressed_bytes()
    except Exception as e:
        failed(result, "encode", e)
        return result
    try:
        decoder = Dfloat11Decoder(encoding, package_dir, original.device)
        result.details = {
            "blocks": decoder.blocks,
            "threads_per_block": DFLOAT11_THREADS_PER_BLOCK,
            "bytes_per_thread": DFLOAT11_BYTES_PER_THREAD,
            "shared_mem_bytes": decoder.shared_mem,
            "n_luts": encoding.n_luts,
            "lut_bytes": int(encoding.luts.numel()),
        }
        decode_and_time(result, decoder.launch, original, stream, args)
    except Exception as e:
        failed(result, "decode", e)
    return result


def run_slimrt(
    weight: torch.Tensor,
    original: torch.Tensor,
    stream: torch.cuda.Stream,
    args: argparse.Namespace,
) -> DecoderResult:
    result = DecoderResult("slimrt", package_version("slimrt"))
    try:
        log("slimrt: encoding on the CPU")
        start = time.perf_counter()
        arrays = slimrt_compress(weight)
        result.encode_s = time.perf_counter() - start
        result.compressed_bytes = arrays.compressed_bytes()
    except Exception as e:
        failed(result, "encode", e)
        return result
    try:
        decoder = SlimrtDecoder(arrays)
        result.details = {"device_bytes": int(getattr(decoder.tensor, "device_bytes", -1))}
        decode_and_time(result, decoder.launch, original, stream, args)
    except Exception as e:
        failed(result, "decode", e)
    return result


def time_copy(
    original: torch.Tensor, stream: torch.cuda.Stream, args: argparse.Namespace
) -> Timing:
    source = original.reshape(-1).clone()
    target = torch.empty_like(source)
    return Timing(time_cuda(lambda: target.copy_(source), stream, args.warmup, args.reps))


# --------------------------------------------------------------------------------------------
# Report


def decoder_figures(
    result: DecoderResult, numel: int, copy_gbps: float, baseline_us: float | None
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "decoder": result.name,
        "version": result.version,
        "ok": result.ok,
        "bit_exact": result.bit_exact,
        "error": result.error,
        "encode_s": result.encode_s,
        "compressed_bytes": result.compressed_bytes,
        "ratio": None,
        "time_us": None,
        "gbps": None,
        "pct_of_copy": None,
        "pct_of_bound": None,
        "speedup_vs_dfloat11": None,
        "details": result.details,
    }
    if result.compressed_bytes is not None:
        figures["ratio"] = result.compressed_bytes / (2 * numel)
    if result.timing is not None:
        median = result.timing.median
        gbps = 2 * numel / (median * 1e-6) / 1e9
        figures["time_us"] = result.timing.summary()
        figures["gbps"] = gbps
        figures["pct_of_copy"] = 100 * gbps / copy_gbps
        read_per_element = 2 * figures["ratio"]
        figures["pct_of_bound"] = 100 * gbps / (copy_gbps * 2 / (2 + read_per_element))
        if baseline_us is not None:
            figures["speedup_vs_dfloat11"] = baseline_us / median
    return figures


def cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    m = report["matrix"]
    copy = report["copy"]
    lines = [
        f"DF11 decode, {m['rows']}x{m['cols']} N(0, {m['std']}) BF16, seed {m['seed']}: "
        f"{env['gpu']}, commit {env['commit']}, {report['date']}",
        f"torch {env['torch']} (CUDA {env['torch_cuda']}), cupy {env['cupy']}, "
        f"numpy {env['numpy']}, dfloat11 {env['dfloat11']}, slimrt {env['slimrt']}",
        f"{report['timing']['reps']} CUDA-event-timed launches after {report['timing']['warmup']} "
        f"warm-up; D2D copy of the output size: {copy['time_us']['median']:.1f} us, "
        f"{copy['gbps_read_write']:.1f} GB/s read+write",
        "",
        "| decoder | commit | GPU | bit-exact | ratio | encode (s) | median (us) | min (us) "
        "| GB/s | % of copy | % of bound | speedup vs dfloat11 |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in report["decoders"]:
        t = d["time_us"] or {}
        exact = "n/a" if d["bit_exact"] is None else ("yes" if d["bit_exact"] else "NO")
        lines.append(
            f"| {d['decoder']} {d['version']} | {env['commit']} | {env['gpu']} | {exact} "
            f"| {cell(d['ratio'], '.4f')} | {cell(d['encode_s'], '.1f')} "
            f"| {cell(t.get('median'), '.1f')} | {cell(t.get('min'), '.1f')} "
            f"| {cell(d['gbps'], '.1f')} | {cell(d['pct_of_copy'], '.1f')} "
            f"| {cell(d['pct_of_bound'], '.1f')} | {cell(d['speedup_vs_dfloat11'], '.2f')} |"
        )
    for d in report["decoders"]:
        if d["error"]:
            lines.append(f"\n{d['decoder']} failed: {d['error']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def positive(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value

    def non_negative(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
        return value

    def std_value(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
        return value

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=positive, default=8192)
    parser.add_argument("--cols", type=positive, default=4096)
    parser.add_argument("--std", type=std_value, default=0.02)
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--reps", type=positive, default=200, help="timed launches (default 200)")
    parser.add_argument("--warmup", type=non_negative, default=20, help="untimed launches first")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument(
        "--skip-dfloat11",
        action="store_true",
        help="time slimrt and the copy only (no encode wait)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        log("compare_dfloat11: needs a CUDA GPU and a CUDA build of torch")
        return 1
    device = torch.device("cuda", torch.cuda.current_device())
    cupy_version = package_version("cupy-cuda13x")
    if cupy_version == "not installed":
        cupy_version = package_version("cupy")
    environment = {
        "gpu": torch.cuda.get_device_name(device),
        "commit": source_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cupy": cupy_version,
        "numpy": np.__version__,
        "dfloat11": package_version("dfloat11"),
        "dahuffman": package_version("dahuffman"),
        "slimrt": package_version("slimrt"),
    }
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    log(f"{environment['gpu']}: {args.rows}x{args.cols} N(0, {args.std}) BF16, seed {args.seed}")

    weight = make_matrix(args.rows, args.cols, args.std, args.seed)
    original = weight.reshape(-1).to(device)
    numel = original.numel()
    stream = torch.cuda.Stream(device)

    # The copy and dfloat11 run first: a fault in the newer kernel must not cost their figures.
    log("copy: timing a device-to-device copy of the output size")
    copy_timing = time_copy(original, stream, args)
    copy_gbps = 2 * 2 * numel / (copy_timing.median * 1e-6) / 1e9

    results = []
    if not args.skip_dfloat11:
        results.append(run_dfloat11(weight, original, stream, args))
    results.append(run_slimrt(weight, original, stream, args))

    baseline = next((r for r in results if r.name == "dfloat11" and r.ok), None)
    baseline_us = baseline.timing.median if baseline and baseline.timing else None
    report = {
        "benchmark": "df11_decode_vs_dfloat11",
        "date": date,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "environment": environment,
        "matrix": {
            "rows": args.rows,
            "cols": args.cols,
            "std": args.std,
            "seed": args.seed,
            "numel": numel,
            "generator": "torch.randn float32 (CPU generator) * std, rounded to bfloat16",
        },
        "timing": {
            "warmup": args.warmup,
            "reps": args.reps,
            "method": "CUDA events around each launch, queued behind a sleep kernel; median",
        },
        "copy": {"time_us": copy_timing.summary(), "gbps_read_write": copy_gbps},
        "decoders": [decoder_figures(r, numel, copy_gbps, baseline_us) for r in results],
    }
    print(markdown(report), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
