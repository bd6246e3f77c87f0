"""One version, one place (cpp/include/slimrt/version.h), and one wheel for machines with and
without a GPU: nothing CUDA is mapped until a CUDA engine is made, and "auto" picks CUDA only
when it is usable. The CMake package's version file is checked by tests/cpp/find_package, the
built wheel's metadata by tools/wheel_smoke.sh."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import slimrt
from slimrt import _core

ROOT = Path(__file__).resolve().parents[2]


def header_version() -> str:
    text = (ROOT / "cpp/include/slimrt/version.h").read_text()
    parts = dict(re.findall(r"^#define SLIMRT_VERSION_(MAJOR|MINOR|PATCH) (\d+)$", text, re.M))
    return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"


def test_the_package_and_the_core_have_the_headers_version() -> None:
    assert slimrt.__version__ == _core.version() == header_version()


def test_the_wheels_version_is_read_from_the_header() -> None:
    # What scikit-build-core's regex provider does with these settings (its code: one
    # re.search, then result.format with the named groups).
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's TOML reader")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    settings = pyproject["tool"]["scikit-build"]["metadata"]["version"]
    assert settings["provider"] == "scikit_build_core.metadata.regex"
    match = re.search(settings["regex"], (ROOT / settings["input"]).read_text(), re.MULTILINE)
    assert match is not None
    assert settings["result"].format(**match.groupdict()) == header_version()


def test_cmake_reads_the_header_for_its_project_version() -> None:
    text = (ROOT / "CMakeLists.txt").read_text()
    assert "cpp/include/slimrt/version.h" in text
    assert re.search(r"project\(slimrt\s+VERSION \$\{_slimrt_version_MAJOR\}", text)


def test_the_installed_distribution_has_the_same_version() -> None:
    try:
        files = importlib.metadata.files("slimrt") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("slimrt runs from the source tree: no installed distribution to compare")
    init = [f for f in files if str(f).replace("\\", "/") == "slimrt/__init__.py"]
    if not init or Path(init[0].locate()).resolve() != Path(slimrt.__file__).resolve():
        pytest.skip("the imported slimrt is not the installed distribution's (PYTHONPATH)")
    assert importlib.metadata.version("slimrt") == slimrt.__version__


def test_cuda_available_is_the_cores_and_never_raises() -> None:
    assert slimrt.cuda_available() is _core.cuda_available()
    assert slimrt.cuda_built() is _core.cuda_built()
    reason = _core.cuda_unavailable_reason()
    assert (reason == "") is slimrt.cuda_available()
    if not slimrt.cuda_built():
        assert not slimrt.cuda_available()
        assert "built without CUDA" in reason


def _in_a_fresh_process(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_MAPPED_CUDA = """
import re
mapped = sorted({l.split()[-1] for l in open('/proc/self/maps')
                 if re.search(r'lib(cuda|cudart|cublas|cublasLt)\\.so', l)})
print(mapped)
"""


def test_import_and_a_cpu_engine_map_no_cuda_library(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("llama")
    out = _in_a_fresh_process(
        "import slimrt\n"
        + _MAPPED_CUDA
        + f"llm = slimrt.LLM({str(path)!r}, device='cpu', progress=False, num_threads=2)\n"
        + "llm.generate('hello', slimrt.SamplingParams(max_tokens=2))\n"
        + _MAPPED_CUDA
    )
    assert out == "[]\n[]\n"


def test_auto_picks_cuda_exactly_when_it_is_usable(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("llama")
    llm = slimrt.LLM(path, device="auto", progress=False, num_threads=2)
    assert llm.device == ("cuda" if slimrt.cuda_available() else "cpu")
