"""CUDA-event timing shared by the GPU comparison scripts in bench/."""

from __future__ import annotations

from collections.abc import Callable

import torch


def time_cuda(
    launch: Callable[[], None],
    stream: torch.cuda.Stream,
    warmup: int,
    reps: int,
    queue_us_per_rep: float = 100.0,
) -> list[float]:
    """Per-launch CUDA-event times in microseconds. A sleep kernel queued first keeps the GPU
    busy while Python queues every launch, so no sample includes Python's launch overhead;
    queue_us_per_rep must exceed the time Python needs to queue one launch."""
    # Inputs were written on the default stream; ours does not wait for it by itself.
    torch.cuda.synchronize()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(reps)
    ]
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            launch()
        stream.synchronize()
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is not None:
            sleep(int(2e9 * queue_us_per_rep * 1e-6 * reps))  # cycles, at ~2 GHz
        for start, stop in events:
            start.record(stream)
            launch()
            stop.record(stream)
    stream.synchronize()
    return [1000.0 * start.elapsed_time(stop) for start, stop in events]
