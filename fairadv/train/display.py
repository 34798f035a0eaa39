"""What the training loop shows people on the console: the progress bar, one line per epoch, the policy table."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fairadv.policy import ClassPolicy


def training_progress(console: Console, enabled: bool) -> Any:
    """A context giving the live progress bar (epoch, batches, loss, images/s), or None when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
                    TimeElapsedColumn(), console=console, transient=False)


def policy_table(policy: ClassPolicy, class_names: Sequence[str], base_eps: float, applies_from: int) -> Table:
    """The per-class weights and radii of ``policy`` (radius = ``base_eps`` times the class's eps scale)."""
    table = Table(title=f"class policy from epoch {applies_from}", title_justify="left")
    temperatures = {label: t for label, t in (("T adv", policy.adv_temperature), ("T clean", policy.clean_temperature))
                    if t is not None}  # ABSLD's soft-label temperatures, where set
    for column in ("class", "CE weight", "KL weight", "eps", "beta scale", *temperatures):
        table.add_column(column, justify="right")
    eps = base_eps * policy.eps_scale
    for i, name in enumerate(class_names):
        table.add_row(name, f"{policy.ce_weight[i]:.4f}", f"{policy.kl_weight[i]:.4f}", f"{eps[i]:.4f}",
                      f"{policy.beta_scale[i]:.4f}", *(f"{t[i]:.4f}" for t in temperatures.values()))
    return table


def epoch_line(metrics: Mapping[str, Any], epochs: int, timing_key: str = "timing") -> str:
    """One line per finished epoch: loss, training accuracies, test figures when measured, speed."""
    parts = [f"epoch {metrics['epoch']}/{epochs}", f"lr {metrics['lr']:.4g}", f"loss {metrics['loss']:.4f}"]
    for key, label in (("train_clean_accuracy", "train clean"), ("train_robust_accuracy", "train robust"),
                       ("test_robust_accuracy", "test robust"),
                       ("test_worst_class_robust_accuracy", "test worst class")):
        if metrics.get(key) is not None:
            parts.append(f"{label} {100 * metrics[key]:.1f}%")
    timing = metrics[timing_key]
    parts.append(f"{timing['seconds']:.1f}s ({timing['images_per_s']:.0f} img/s)")
    return "  ".join(parts)
