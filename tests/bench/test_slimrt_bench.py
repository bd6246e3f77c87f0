"""slimrt-bench on the CPU at tiny sizes: every subcommand prints its markdown table, and valid
JSON and CSV carrying the build commit, the device, the threads and every raw sample; --help
works everywhere; bad command lines get their message and exit code 2.

Run by ctest (bench/CMakeLists.txt) as `python3 test_slimrt_bench.py BINARY`; standard library
only, since CI runs ctest before it installs the Python test dependencies.
"""

from __future__ import annotations

import csv
import io
import json
import random
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import ClassVar

BENCH = ""  # set from argv in __main__
REPS = 2
# Every subcommand but bandwidth is given the reference, so none spends time measuring it.
BANDWIDTH = ["--bandwidth-gbs", "10"]
MODEL_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
RANDOM_SHAPE = ["--vocab", "128", "--hidden", "64", "--intermediate", "128", "--layers", "2"]
RANDOM_SHAPE += ["--heads", "4", "--kv-heads", "2", "--head-dim", "16"]


def write_tiny_model(directory: Path) -> Path:
    """A Hugging Face directory: config.json and one BF16 safetensors file of random weights."""
    c = MODEL_CONFIG
    h, i, q = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"] * c["head_dim"]
    kv = c["num_key_value_heads"] * c["head_dim"]
    shapes = {"model.embed_tokens.weight": [c["vocab_size"], h], "model.norm.weight": [h]}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes |= {
            p + "input_layernorm.weight": [h],
            p + "post_attention_layernorm.weight": [h],
            p + "self_attn.q_proj.weight": [q, h],
            p + "self_attn.k_proj.weight": [kv, h],
            p + "self_attn.v_proj.weight": [kv, h],
            p + "self_attn.o_proj.weight": [h, q],
            p + "mlp.gate_proj.weight": [i, h],
            p + "mlp.up_proj.weight": [i, h],
            p + "mlp.down_proj.weight": [h, i],
        }
    rng = random.Random(5)
    header: dict[str, object] = {}
    data = bytearray()
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        ones = len(shape) == 1  # norms
        values = [1.0 if ones else rng.gauss(0.0, 0.05) for _ in range(n)]
        # BF16: the upper half of each float32 (truncation is fine for noise).
        raw = struct.pack(f"<{n}f", *values)
        bf16 = b"".join(raw[k + 2 : k + 4] for k in range(0, len(raw), 4))
        header[name] = {
            "dtype": "BF16",
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(bf16)],
        }
        data += bf16
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data)
    (directory / "config.json").write_text(json.dumps(c))
    return directory


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=120, check=False)


class Outputs(unittest.TestCase):
    """Each case: a subcommand's arguments and the rows it must give."""

    model_dir: Path

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model_dir = write_tiny_model(Path(cls.tmp.name) / "tiny")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def cases(self) -> dict[str, tuple[list[str], int, list[str]]]:
        """name -> (arguments, rows, fields every row has besides the common ones)."""
        reps = ["-r", str(REPS), "--warmup", "0"]
        tail = [*reps, *BANDWIDTH]
        sparse = ["--sparsity", "0.5,0.7"]
        model = str(self.model_dir)
        return {
            "bandwidth": (["bandwidth", "--size-mib", "4", *reps], 3, ["test", "gbps"]),
            "df11": (["df11", "--rows", "64", "--cols", "256", *reps], 3, ["ratio", "gbps"]),
            "gemv": (
                ["gemv", "--model", "custom", "--k", "256", "--n", "512", "--rows", "1,3", *tail],
                6,
                ["way", "rows", "gbps", "pct_of_bandwidth", "bytes_moved"],
            ),
            "attention": (
                [
                    "attention",
                    "--heads",
                    "smollm2",
                    "-b",
                    "1",
                    "-c",
                    "64",
                    "--query",
                    "1,16",
                    *tail,
                ],
                2,
                ["phase", "time_us"],
            ),
            "sparse-attention": (
                ["sparse-attention", "--heads", "smollm2", "-b", "1", "-c", "128", *sparse, *tail],
                3,
                ["kv", "gbps", "pct_of_bandwidth", "bytes_moved"],
            ),
            "decode-step": (
                ["decode-step", *RANDOM_SHAPE, "-b", "1,2", "-c", "16", *reps, *BANDWIDTH],
                2,
                ["batch", "tokens_per_s", "gbps", "pct_of_bandwidth"],
            ),
            "decode-step-loaded": (
                ["decode-step", "-m", model, "-b", "2", "-c", "8", *reps, *BANDWIDTH],
                1,
                ["model", "tokens_per_s", "gbps"],
            ),
            "e2e": (
                ["e2e", "-m", model, "-p", "16", "-n", "8", "-b", "8", *reps],
                2,
                ["model", "size", "params", "n_batch", "test", "tokens_per_s"],
            ),
        }

    def check_common(self, row: dict[str, object]) -> None:
        self.assertRegex(str(row["commit"]), r"^[0-9a-f]{7,}(-dirty)?$|^unknown$")
        self.assertTrue(row["device"])
        self.assertEqual(row["backend"], "cpu")
        self.assertGreaterEqual(int(row["threads"]), 1)  # type: ignore[arg-type]
        self.assertIn("test_time", row)

    def test_markdown_tables(self) -> None:
        for name, (args, rows, _) in self.cases().items():
            with self.subTest(name):
                p = run(*args)
                self.assertEqual(p.returncode, 0, p.stderr)
                lines = p.stdout.strip().splitlines()
                self.assertRegex(lines[0], r"^\| commit +\| device +\| backend +\| threads +\|")
                self.assertRegex(lines[1], r"^\|[ :|-]+\|$")
                self.assertEqual(len(lines), 2 + rows, p.stdout)
                for line in lines[2:]:
                    self.assertRegex(line, r" ± ")  # mean ± stddev of the samples

    def test_json_has_every_sample(self) -> None:
        for name, (args, rows, fields) in self.cases().items():
            with self.subTest(name):
                p = run(*args, "-o", "json")
                self.assertEqual(p.returncode, 0, p.stderr)
                data = json.loads(p.stdout)
                self.assertEqual(len(data), rows)
                for row in data:
                    self.check_common(row)
                    for field in fields:
                        self.assertIn(field, row)
                    stats = [v for v in row.values() if isinstance(v, dict)]
                    self.assertTrue(stats)
                    for s in stats:
                        self.assertEqual(
                            set(s), {"mean", "stddev", "median", "min", "max", "samples"}
                        )
                        self.assertGreaterEqual(len(s["samples"]), REPS)
                        self.assertAlmostEqual(
                            s["mean"],
                            sum(s["samples"]) / len(s["samples"]),
                            delta=1e-6 * abs(s["mean"]) + 1e-9,
                        )

    def test_csv_has_every_sample(self) -> None:
        for name, (args, rows, fields) in self.cases().items():
            with self.subTest(name):
                p = run(*args, "-o", "csv")
                self.assertEqual(p.returncode, 0, p.stderr)
                table = list(csv.DictReader(io.StringIO(p.stdout)))
                self.assertEqual(len(table), rows)
                for row in table:
                    self.check_common(row)
                    for field in fields:
                        self.assertTrue(field in row or field + "_mean" in row, field)
                    samples = [k for k in row if k.endswith("_samples") and row[k]]
                    self.assertTrue(samples)
                    for key in samples:
                        self.assertGreaterEqual(len(row[key].split(";")), REPS)

    def test_memory_bound_rows_are_measured_against_the_given_bandwidth(self) -> None:
        args, _, _ = self.cases()["gemv"]
        for row in json.loads(run(*args, "-o", "json").stdout):
            self.assertEqual(row["bandwidth_gbs"], 10)
            self.assertAlmostEqual(row["pct_of_bandwidth"], 10 * row["gbps"]["mean"], places=6)
            if row["way"] == "bf16":
                self.assertEqual(row["bytes_moved"], 2 * 256 * 512)

    def test_a_bar_in_a_cell_is_escaped_in_the_table(self) -> None:
        p = run(
            "gemv", "--model", "smollm2", "--shape", "q|k|v", "--rows", "1", "-r", "1", *BANDWIDTH
        )
        self.assertEqual(p.returncode, 0, p.stderr)
        for line in p.stdout.strip().splitlines():
            self.assertEqual(line.replace("\\|", "").count("|"), 16, line)  # 15 columns
        self.assertIn(" q\\|k\\|v ", p.stdout)

    def test_e2e_rows_are_llama_bench_tests(self) -> None:
        args, _, _ = self.cases()["e2e"]
        rows = json.loads(run(*args, "-o", "json").stdout)
        self.assertEqual([r["test"] for r in rows], ["pp16", "tg8"])
        self.assertEqual(
            [(r["n_prompt"], r["n_gen"], r["n_batch"]) for r in rows], [(16, 0, 8), (0, 8, 8)]
        )
        # 128 x 64 tied embedding, 2 layers of 36,992, the final norm: 82,240.
        self.assertEqual(rows[0]["params"], "0.08 M")

    def test_rows_report_the_threads_asked_for(self) -> None:
        rows = json.loads(
            run("bandwidth", "--size-mib", "1", "-r", "1", "-t", "1", "-o", "json").stdout
        )
        self.assertEqual({r["threads"] for r in rows}, {1})


class CommandLine(unittest.TestCase):
    SUBCOMMANDS: ClassVar[list[str]] = [
        "bandwidth",
        "df11",
        "gemv",
        "attention",
        "sparse-attention",
        "decode-step",
        "e2e",
    ]

    def test_every_subcommand_has_help(self) -> None:
        for name in self.SUBCOMMANDS:
            with self.subTest(name):
                p = run(name, "--help")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(f"usage: slimrt-bench {name} [options]", p.stdout)
                self.assertIn("-o, --output md|json|csv", p.stdout)
        p = run("--help")
        self.assertEqual(p.returncode, 0)
        for name in self.SUBCOMMANDS:
            self.assertIn(name, p.stdout)

    def test_bad_arguments_exit_2_with_their_message(self) -> None:
        cases = [
            (["nosuch"], "unknown command 'nosuch'"),
            ([], "usage: slimrt-bench COMMAND"),
            (["gemv", "--nosuch"], "unknown option --nosuch"),
            (["gemv", "-x"], "unknown option -x"),
            (["gemv", "--rows", "1,x"], "--rows: expected comma-separated integers, got '1,x'"),
            (["gemv", "--rows", "65"], "--rows: 65 is out of range [1, 64]"),
            (["gemv", "--k", "64"], "--k and --n shape the matrix of --model custom"),
            (["df11", "-r", "0"], "--reps: 0 is out of range [1, 1000000]"),
            (["df11", "-o", "xml"], "--output: expected one of md|json|csv, got 'xml'"),
            (["bandwidth", "--size-mib"], "--size-mib needs a value"),
            (
                ["sparse-attention", "--sparsity", "0.5,1"],
                "--sparsity: 1 is out of range [0, 0.999]",
            ),
            (["attention", "-c", "64", "--query", "128"], "--query 128 is more than --context 64"),
            (["decode-step", "-m", "x.gguf", "--layers", "2"], "--layers shapes a random model"),
            (["decode-step", "--heads", "5", "--kv-heads", "2"], "the model shape: config:"),
            (
                ["e2e", "-m", "/nonexistent/model.gguf"],
                "-m: /nonexistent/model.gguf does not exist",
            ),
            (["e2e", "-m", "x", "-p", "0", "-n", "0"], "no tests: every -p and -n is 0"),
        ]
        for args, message in cases:
            with self.subTest(args):
                p = run(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)
                self.assertEqual(p.stdout, "")


if __name__ == "__main__":
    BENCH = sys.argv.pop(1)
    unittest.main()
