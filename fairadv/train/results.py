"""What a finished run leaves for people: ``summary.json`` and its figures.

The class-similarity figure shows the matrix a strategy computed its policy from when one is recorded in
``policy.jsonl`` (DAFA's p_i(j) at the end of warm-up), since that is the matrix behind the run's weights; otherwise
the last epoch's p_i(j), titled as such.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from fairadv.evaluation.curves import write_training_curves
from fairadv.evaluation.plots import plot_pair_weights, write_run_plots
from fairadv.evaluation.summary import chance_warning
from fairadv.run_folder import RunFolder
from fairadv.train.best import BestEpoch

log = logging.getLogger(__name__)


def write_results(folder: RunFolder, summary: dict[str, Any], names: Sequence[str], last_similarity: torch.Tensor,
                  epochs: int, best: BestEpoch | None = None) -> None:
    """``summary.json`` (with ``best_checkpoint`` when ``best.pt`` was kept), then the figures (``class_accuracy``,
    ``confusion_under_attack``, ``class_similarity``, ``training_curves``, and ``pair_weights`` when the policy
    weights class pairs); a run at chance level is logged as a warning."""
    if best is not None:
        summary["best_checkpoint"] = best.record()
    if summary.get("at_chance"):
        log.warning("%s", chance_warning(summary))
    folder.write_summary(summary)
    similarity, title = recorded_similarity(folder)
    if similarity is None:
        similarity, title = last_similarity, f"Class similarity p_i(j), last epoch ({epochs})"
    write_run_plots(folder.path, summary, similarity, list(names), similarity_title=title)
    write_pair_weights(folder, list(names))
    write_training_curves(folder, summary, list(names))


def recorded_similarity(folder: RunFolder) -> tuple[Any, str | None]:
    """The last ``similarity`` a strategy wrote into ``policy.jsonl``, with a title naming its epoch."""
    record = folder.recorded_similarity()
    if record is None:
        return None, None
    epoch = record.get("similarity_epoch", record.get("epoch"))
    return record["similarity"], (f"Class similarity p_i(j) at epoch {epoch}: the source of the weights used from "
                                  f"epoch {record.get('applies_from')}")


def write_pair_weights(folder: RunFolder, names: Sequence[str]) -> None:
    """The last policy's pair weights (CSR's) as a heatmap, when a policy in ``policy.jsonl`` has them."""
    record = next((r for r in reversed(folder.policies()) if isinstance(r.get("pair_weight"), list)), None)
    if record is None:
        return
    plot_pair_weights(record["pair_weight"], names, folder.path / "pair_weights.png",
                      f"Pair weights of the class policy used from epoch {record.get('applies_from')}")
