"""The names and values trackers receive: flat ``{name: number}`` dicts made from ``metrics.jsonl`` records.

One rule for every tracker, so TensorBoard, W&B and MLflow show the same series under the same names:

- a number in a record goes out as ``<split>/<rest>``: ``train_robust_accuracy`` -> ``train/robust_accuracy``,
  ``test_worst_class_robust_accuracy`` -> ``test/worst_class_robust_accuracy``; ``loss`` and ``lr`` -> ``train/...``;
- a per-class list ``<key>_by_class`` goes out as one series per class, ``<key>_by_class/<class name>``;
- the policy a strategy set for the epoch goes out per class as ``policy_ce_weight/<class>``,
  ``policy_kl_weight/<class>``, ``policy_radius/<class>`` (eps times the class's scale) and
  ``policy_beta_scale/<class>`` (and ``policy_adv_temperature/<class>``, ``policy_clean_temperature/<class>``
  where the policy sets ABSLD's temperatures);
- the final evaluation (``summary.json``) goes out as ``final/...`` and ``final_{clean,robust}_accuracy_by_class/...``.

Accuracies stay fractions in [0, 1], as in ``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

SPLITS = ("train", "test", "val")
UNPREFIXED = {"loss": "train/loss", "lr": "train/lr"}
BY_CLASS = "_by_class"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")  # what MLflow accepts in a name, less "/" (our separator) and ":"


def class_tag(name: str) -> str:
    """A class name as the last part of a series name (MLflow rejects most punctuation)."""
    return _UNSAFE.sub("_", str(name)) or "_"


def epoch_scalars(record: Mapping[str, Any], class_names: Sequence[str], timing_key: str) -> dict[str, float]:
    """The series of one ``metrics.jsonl`` line (its ``epoch`` is the step, not a series)."""
    out: dict[str, float] = {}
    tags = [class_tag(n) for n in class_names]
    for key, value in record.items():
        if key == "epoch":
            continue
        if key == timing_key and isinstance(value, Mapping):
            out.update({f"timing/{k}": float(v) for k, v in value.items() if _is_number(v)})
        elif key.endswith(BY_CLASS) and isinstance(value, list):
            out.update({f"{key}/{tag}": float(v) for tag, v in zip(tags, value) if _is_number(v)})
        elif _is_number(value):
            out[series_name(key)] = float(value)
    return out


def series_name(key: str) -> str:
    """``train_clean_accuracy`` -> ``train/clean_accuracy``; ``loss`` -> ``train/loss``."""
    if key in UNPREFIXED:
        return UNPREFIXED[key]
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in SPLITS and rest else key


def policy_scalars(policy: Mapping[str, Any], class_names: Sequence[str], base_eps: float) -> dict[str, float]:
    """Per-class CE weight, KL weight, attack radius and beta scale (and soft-label temperatures, where the policy
    sets them) of a ``policy.jsonl`` record."""
    out: dict[str, float] = {}
    tags = [class_tag(n) for n in class_names]
    columns = {"ce_weight": 1.0, "kl_weight": 1.0, "eps_scale": base_eps, "beta_scale": 1.0,
               "adv_temperature": 1.0, "clean_temperature": 1.0}  # a distillation's temperatures, where set
    for field, factor in columns.items():
        name = "policy_radius" if field == "eps_scale" else f"policy_{field}"
        out.update({f"{name}/{tag}": float(v) * factor for tag, v in zip(tags, policy.get(field) or [])})
    return out


def policy_in_effect(records: Sequence[Mapping[str, Any]], epoch: int) -> Mapping[str, Any] | None:
    """The ``policy.jsonl`` record that training used in ``epoch``: the last one that applies from it or earlier."""
    current = None
    for record in records:
        if isinstance(record.get("applies_from"), int) and record["applies_from"] <= epoch:
            current = record
    return current


def summary_scalars(summary: Mapping[str, Any]) -> dict[str, float]:
    """The final evaluation's averages, worst class and per-class accuracies from ``summary.json``."""
    keys = ("clean_accuracy", "robust_accuracy", "worst_class_robust_accuracy", "worst_class_clean_accuracy",
            "robust_accuracy_std", "worst_class")
    out = {f"final/{k}": float(summary[k]) for k in keys if _is_number(summary.get(k))}
    for row in summary.get("per_class") or []:
        tag = class_tag(row["name"])
        out[f"final_clean_accuracy{BY_CLASS}/{tag}"] = float(row["clean"])
        out[f"final_robust_accuracy{BY_CLASS}/{tag}"] = float(row["robust"])
    return out


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The final per-class table as Markdown (TensorBoard's text tab, the MLflow and W&B run notes)."""
    lines = [f"clean {100 * summary['clean_accuracy']:.2f} %, robust {100 * summary['robust_accuracy']:.2f} %, "
             f"worst class {summary.get('worst_class_name')} {100 * summary['worst_class_robust_accuracy']:.2f} %",
             "", "| class | clean (%) | robust (%) |", "|---|---|---|"]
    lines += [f"| {row['name']} | {100 * row['clean']:.2f} | {100 * row['robust']:.2f} |"
              for row in summary.get("per_class") or []]
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
