"""The scaling figure (``docs/benchmarks-scaling.png``): trace size and time against tokens and layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["scaling_plot"]


def scaling_plot(tokens: list[dict[str, Any]], layers: list[dict[str, Any]], path: Path, *,
                 layer_tokens: int) -> Path:
    """Two rows (tokens, layers) × two columns (trace size, time untraced vs traced)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for row, (points, xlabel) in enumerate(((tokens, "generated tokens"),
                                            (layers, f"language layers (tiny width, {layer_tokens} tokens)"))):
        xs = [pt["x"] for pt in points]
        size_ax, time_ax = axes[row]
        size_ax.plot(xs, [pt["bytes"] / 1e6 for pt in points], "o-", color="tab:blue", label="trace files")
        size_ax.set_xlabel(xlabel)
        size_ax.set_ylabel("trace size (MB)")
        events_ax = size_ax.twinx()
        events_ax.plot(xs, [pt["events"] for pt in points], "s--", color="tab:gray", label="events")
        events_ax.set_ylabel("events")
        size_ax.legend(loc="upper left")
        events_ax.legend(loc="lower right")
        time_ax.plot(xs, [pt["untraced"] for pt in points], "o-", color="tab:green", label="untraced")
        time_ax.plot(xs, [pt["traced"] for pt in points], "o-", color="tab:red", label="runtime tracing")
        time_ax.set_xlabel(xlabel)
        time_ax.set_ylabel("wall time (s)")
        time_ax.legend(loc="upper left")
        for ax in (size_ax, time_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.grid(alpha=0.3)
    fig.suptitle("cogvlm-tracer: trace size and time, tiny CogVLM")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
