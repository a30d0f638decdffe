"""The memory plan of a training run, as the C planner computed it."""
from __future__ import annotations

from typing import Dict, List

from . import _core

KINDS = ("parameters", "gradients", "optimizer state", "input", "activations", "activation gradients", "scratch")
KIND_COLOURS = {"parameters": "#4c72b0", "gradients": "#dd8452", "optimizer state": "#937860",
                "input": "#8c8c8c", "activations": "#55a868", "activation gradients": "#c44e52",
                "scratch": "#da8bc3"}


def _fmt(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


class PlanInfo:
    """Read-only view of a ``_core.Plan``: the arena's peak and its breakdown.

    ``peak_bytes`` is the arena size the run needs (the highest byte any tensor
    reaches); ``live_peak_bytes`` the most bytes live at one schedule step;
    ``naive_bytes`` what every tensor would take with no sharing at all.
    """

    def __init__(self, core_plan: "_core.Plan", layer_names: List[str]):
        self.core = core_plan
        self._names = layer_names

    @property
    def peak_bytes(self) -> int:
        return int(self.core.peak_bytes)

    @property
    def live_peak_bytes(self) -> int:
        return int(self.core.live_peak_bytes)

    @property
    def naive_bytes(self) -> int:
        return int(self.core.naive_bytes)

    @property
    def micro_batch(self) -> int:
        return int(self.core.micro_batch)

    @property
    def breakdown(self) -> Dict[str, int]:
        """Bytes of each kind live at the peak step."""
        return {k: int(v) for k, v in self.core.live_by_kind.items()}

    @property
    def totals(self) -> Dict[str, int]:
        """Bytes of each kind summed over all tensors (no sharing)."""
        return {k: int(v) for k, v in self.core.total_by_kind.items()}

    def tensors(self) -> List[dict]:
        return self.core.tensors()

    def step_name(self, step: int) -> str:
        n = len(self._names)
        if step == 0:
            return "load input"
        if step < n:
            return f"forward {self._names[step]}"
        if step == n:
            return "loss"
        if step < 2 * n:
            return f"backward {self._names[2 * n - step]}"
        return "optimizer"

    def summary(self) -> str:
        lines = [f"arena peak {self.peak_bytes} B ({_fmt(self.peak_bytes)}), live peak {self.live_peak_bytes} B "
                 f"at step {self.core.peak_step} ({self.step_name(self.core.peak_step)}), "
                 f"micro-batch {self.micro_batch}, no-reuse figure {self.naive_bytes} B ({_fmt(self.naive_bytes)})"]
        lines.append("  live at the peak, by kind:")
        for k, v in self.breakdown.items():
            if v:
                lines.append(f"    {k:<22s} {v:>10d} B")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PlanInfo(peak_bytes={self.peak_bytes}, micro_batch={self.micro_batch})"

    def plot(self, path: str, title: str = "") -> str:
        """Draws the arena: offset against schedule step, one box per tensor,
        coloured by kind, the peak marked. Writes a PNG and returns its path."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle

        fig, ax = plt.subplots(figsize=(11, 5.5))
        for t in self.tensors():
            if t["bytes"] == 0:
                continue
            colour = KIND_COLOURS.get(t["kind"], "#333333")
            ax.add_patch(Rectangle((t["first"] - 0.45, t["offset"] / 1024), t["last"] - t["first"] + 0.9,
                                   t["bytes"] / 1024, facecolor=colour, edgecolor="black", linewidth=0.3,
                                   alpha=0.85))
        n_steps = self.core.n_steps
        ax.axhline(self.peak_bytes / 1024, color="red", linestyle="--", linewidth=1)
        ax.text(0, self.peak_bytes / 1024, f" peak {_fmt(self.peak_bytes)}", color="red", va="bottom")
        ax.axvline(self.core.peak_step, color="red", linestyle=":", linewidth=0.8)
        ax.set_xlim(-1, n_steps)
        ax.set_ylim(0, self.peak_bytes / 1024 * 1.08 + 1e-9)
        ax.set_xlabel("schedule step (forward, loss, backward, update)")
        ax.set_ylabel("arena offset (KiB)")
        ax.set_title(title or "memory plan of one training step")
        ax.legend(handles=[Patch(color=c, label=k) for k, c in KIND_COLOURS.items()], loc="upper right",
                  fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
