"""Per-image outcomes of one result: each test image's class and whether the model got it right, clean and under
attack. What `fairadv.statistics` resamples and pairs.

Two sources:

- an evaluation entry of ``eval.json`` (`of_entry`), which stores every image's label, clean prediction and
  prediction under each attack in dataset order; two runs evaluated with the same setup (`same_images`) saw the
  same images in the same order, so their outcomes pair image by image;
- a result's per-class counts alone (`of_counts`: ``summary.json`` after training, which stores no predictions),
  rebuilt as arrays with the same per-class counts. Those support every per-run interval (the class-stratified
  bootstrap needs only the counts) but no pairing by image, and clean and robust correctness of one image are not
  linked in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_file import COMPARABLE_KEYS, DEFAULTS, WORST_CASE, decode


@attrs.frozen(eq=False)
class Outcomes:
    """One run's per-image results (numpy, length N).

    Attributes:
        labels: (N,) int64 class of each test image.
        clean: (N,) bool, correct on the clean image.
        robust: (N,) bool, robust under the evaluation's counting convention (always False where ``clean`` is
            False under ``any_iterate``).
        by_image: True when the arrays are in dataset order (from ``eval.json``), so they pair image by image with
            another run's on the same images; False when rebuilt from per-class counts.
        setup: the fields that must agree for two runs' results to compare (``COMPARABLE_KEYS``), None when
            rebuilt from counts.
    """

    labels: np.ndarray
    clean: np.ndarray
    robust: np.ndarray
    by_image: bool
    setup: Mapping[str, Any] | None = None

    def correct(self, kind: str) -> np.ndarray:
        """``clean`` or ``robust`` by name."""
        if kind not in ("clean", "robust"):
            raise FairadvError(f"outcomes: kind {kind!r} must be 'clean' or 'robust'")
        return self.clean if kind == "clean" else self.robust


def of_entry(entry: Mapping[str, Any], attack: str) -> Outcomes | None:
    """The outcomes of ``attack`` in one ``eval.json`` entry (or the top level of a format-2 file), None when the
    entry stores no per-image predictions for it (files written before they were stored).

    The worst case over attacks is recomputed from the attacks it spans: a sample is robust only if each one failed.
    """
    from fairadv.evaluation.classwise import Predictions, worst_case

    attacks = entry.get("attacks") or {}
    result = attacks.get(attack)
    if result is None or not isinstance(entry.get("labels"), str) or not isinstance(entry.get("clean_predictions"),
                                                                                   str):
        return None
    names = (result.get("attack") or {}).get("of") if attack == WORST_CASE else [attack]
    if not names or any(not isinstance((attacks.get(n) or {}).get("predictions"), str) for n in names):
        return None
    labels, clean = decode(entry["labels"]), decode(entry["clean_predictions"])
    runs = [Predictions(labels, clean, decode(attacks[n]["predictions"])) for n in names]
    if any(len(r.attacked) != len(labels) or len(r.clean) != len(labels) for r in runs):
        return None
    combined = worst_case(runs) if len(runs) > 1 else runs[0]
    counting = entry.get("counting", DEFAULTS["counting"])
    setup = {k: entry.get(k, DEFAULTS.get(k)) for k in COMPARABLE_KEYS}
    return Outcomes(labels.numpy(), (combined.clean == combined.labels).numpy(),
                    combined.robust(counting).numpy(), True, setup)


def of_counts(result: Mapping[str, Any]) -> Outcomes:
    """Outcomes rebuilt from a result's ``per_class`` rows (``count``, ``clean`` and ``robust`` fractions): within
    each class, the first round(clean · count) images correct clean and the first round(robust · count) robust."""
    rows = result.get("per_class") or []
    counts = [int(row.get("count", 0)) for row in rows]
    if not rows or min(counts) < 1:
        raise FairadvError("outcomes: the result has no per-class image counts (per_class[i].count); "
                           "re-evaluate it with fairadv eval")
    labels = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    clean = np.concatenate([np.arange(n) < round(float(row["clean"]) * n) for row, n in zip(rows, counts)])
    robust = np.concatenate([np.arange(n) < round(float(row["robust"]) * n) for row, n in zip(rows, counts)])
    return Outcomes(labels, clean, robust, False, None)


def of_result(entry: Mapping[str, Any] | None, attack: str, result: Mapping[str, Any]) -> Outcomes:
    """Per-image outcomes from ``entry`` when it has them for ``attack``, else rebuilt from ``result``'s counts."""
    found = of_entry(entry, attack) if entry is not None else None
    return found if found is not None else of_counts(result)


def same_images(runs: list[Outcomes]) -> bool:
    """Whether every run was scored on the same images in the same order (same setup, same labels), so their
    outcomes pair image by image."""
    first = runs[0]
    return all(r.by_image and r.setup == first.setup and r.labels.shape == first.labels.shape
               and bool(np.array_equal(r.labels, first.labels)) for r in runs)
