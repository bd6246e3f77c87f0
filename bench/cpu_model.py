"""The CPU a benchmark ran on, as lscpu names it ("AMD EPYC", "Intel(R) Xeon(R) Processor")."""

from __future__ import annotations

import re
import subprocess


def cpu_model() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Model name:\s*(.+)", text)
    return match.group(1).strip() if match else "unknown CPU"
