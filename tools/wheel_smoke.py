"""The checks of tools/wheel_smoke.sh, run by the fresh virtual environment's Python from an
empty directory, so that `import slimrt` can only find the installed wheel.

    VENV/bin/python tools/wheel_smoke.py --header cpp/include/slimrt/version.h [--cuda-built]

Each check prints one line; the first that fails raises and the script exits 1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

# The one helper taken from the source tree (a test helper, not slimrt): a real `slimrt serve`
# on a free port. It starts the server with this interpreter, i.e. the venv's slimrt.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from serve_process import ServeProcess

CUDA_LIBRARIES = re.compile(r"lib(cuda|cudart|cublas|cublasLt)\.so")


def check(what: str, ok: bool, detail: object = "") -> None:
    if not ok:
        raise SystemExit(f"wheel smoke: FAILED: {what} {detail}")
    print(f"wheel smoke: ok: {what}")


def header_version(path: Path) -> str:
    parts = dict(
        re.findall(r"^#define SLIMRT_VERSION_(MAJOR|MINOR|PATCH) (\d+)$", path.read_text(), re.M)
    )
    return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"


def mapped_cuda_libraries() -> list[str]:
    maps = Path("/proc/self/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if CUDA_LIBRARIES.search(line)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header", type=Path, required=True, help="cpp/include/slimrt/version.h")
    parser.add_argument("--cuda-built", action="store_true", help="the wheel was built with CUDA")
    args = parser.parse_args()

    import slimrt
    from slimrt import _core

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check(
        "slimrt is imported from the venv",
        Path(slimrt.__file__).resolve().is_relative_to(site),
        slimrt.__file__,
    )
    check(
        "nothing CUDA is mapped after import",
        mapped_cuda_libraries() == [],
        mapped_cuda_libraries(),
    )

    expected = header_version(args.header)
    versions = {
        "version.h": expected,
        "metadata": importlib.metadata.version("slimrt"),
        "__version__": slimrt.__version__,
        "core": _core.version(),
    }
    check("one version everywhere", len(set(versions.values())) == 1, versions)
    check("CUDA built as asked", slimrt.cuda_built() == args.cuda_built, slimrt.cuda_built())
    usable = slimrt.cuda_available()
    print(f"wheel smoke: CUDA usable here: {usable} {_core.cuda_unavailable_reason()}")

    out = subprocess.run(["slimrt", "--version"], capture_output=True, text=True, check=True).stdout
    built = "yes" if args.cuda_built else "no"
    start = f"slimrt {expected} (core {expected}, CUDA built: {built}"
    check("slimrt --version", out.startswith(start), out)

    weights = np.random.default_rng(0).normal(0, 0.02, 1 << 16).astype(np.float32)
    bits = slimrt.bfloat16.round_to_bf16(weights)
    tensor = slimrt.df11.compress(bits)
    check("DF11 round trip is bit-exact", (tensor.decompress() == bits).all(), tensor.ratio)
    check("DF11 compresses", tensor.ratio < 0.75, tensor.ratio)

    llm = slimrt.LLM(device="auto", progress=False, num_threads=2)
    check(
        'device="auto" picks CUDA only when usable',
        llm.device == ("cuda" if usable else "cpu"),
        llm.device,
    )
    if llm.device == "cpu":
        # The "auto" probe may have mapped a driver (libcuda) where one is installed; cuBLAS is
        # what a CPU engine must never open.
        cublas = [name for name in mapped_cuda_libraries() if "cublas" in name]
        check("a CPU engine opens no cuBLAS", cublas == [], cublas)
    text = llm.generate("The capital of France is", slimrt.SamplingParams(max_tokens=8))[0].text
    check("LLM.generate with the default model", len(text) > 0, repr(text))
    cli = subprocess.run(
        [
            "slimrt",
            "generate",
            "The capital of France is",
            "--max-tokens",
            "8",
            "--threads",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    check(
        "slimrt generate gives LLM.generate's greedy text",
        cli.returncode == 0 and cli.stdout.strip() == text.strip(),
        (cli.stdout, cli.stderr),
    )

    with ServeProcess(None) as server:
        request = {
            "model": server.model_name,
            "prompt": "The capital of France is",
            "max_tokens": 8,
            "temperature": 0,
        }
        status, body = server.http(
            "POST",
            "/v1/completions",
            json.dumps(request).encode(),
            {"Content-Type": "application/json"},
        )
        reply = json.loads(body)
        check(
            "slimrt serve answers a completion",
            status == 200 and reply["choices"][0]["text"] == text,
            (status, reply),
        )
        code = server.stop()
    check("slimrt serve exits 0 on SIGTERM", code == 0, code)


if __name__ == "__main__":
    main()
