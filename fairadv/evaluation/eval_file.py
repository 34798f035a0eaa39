"""``eval.json``: every evaluation of one checkpoint, one entry per setup.

A setup is what makes two numbers comparable: the checkpoint and its epoch, the data, the subset (``n``, the images
it holds, its ``seed``), ``eps`` and the norm. ``fairadv eval`` with a new setup adds an entry instead of replacing
the file; with a setup seen before it adds or replaces attacks inside that entry. The top level mirrors the latest
evaluation (``attacks``, ``n``, ``images``, ...), so a reader that wants "the" result needs nothing else, and
``evaluations`` lists them all, oldest first.

Each entry also keeps every sample's label and clean prediction, and each attack its predictions under attack
(``int16`` little-endian, base64). From those, ``worst_case`` is recomputed whenever a setup holds two attacks or
more: a sample is robust only if every attack run on it failed. ``robustbench`` holds RobustBench's own fields
(``clean_acc`` and ``autoattack_acc`` in percent of images, as strings with two decimals, and ``eps`` as written).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairadv.errors import FairadvError
from fairadv.files import read_json
from fairadv.run_folder import EVAL_FORMAT

FORMAT_VERSION = EVAL_FORMAT
# What must agree for two evaluations to be one setup (merged attack by attack).
SETUP_KEYS = ("checkpoint", "epoch", "model", "data", "split", "n", "images", "seed", "eps", "norm", "counting")
# What must agree for results of two different runs to compare: the images, the threat model, the convention.
COMPARABLE_KEYS = ("split", "n", "images", "seed", "eps", "norm", "counting")
# Of those, the threat model: results that differ here never share a column or a pairing; the rest (n, images,
# seed) pick the images and decide only whether two results pair image by image.
THREAT_KEYS = ("split", "eps", "norm", "counting")
WORST_CASE = "worst_case"
# Before the counting option there was one convention: a file without the key used it.
DEFAULTS = {"counting": "any_iterate"}


def setup_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The setup fields of an evaluation."""
    return {k: doc.get(k, DEFAULTS.get(k)) for k in SETUP_KEYS}


def attack_label(name: str, result: Mapping[str, Any] | None = None) -> str:
    """A column name: the preset's name; ``worst case`` (and, given its result, the attacks it spans)."""
    if name != WORST_CASE:
        return name
    spans = (result or {}).get("attack", {}).get("of")
    return f"worst case ({', '.join(spans)})" if spans else "worst case"


def setup_label(doc: Mapping[str, Any]) -> str:
    """A short human description: ``539 test images (all), eps 0.2 linf, seed 0``."""
    subset = "all" if not doc.get("n") else f"n={doc['n']}"
    eps = f", eps {doc['eps']:g} {doc.get('norm', 'linf')}" if doc.get("eps") is not None else ""
    counting = doc.get("counting", DEFAULTS["counting"]).replace("_", " ")
    return f"{doc.get('images')} {doc.get('split', 'test')} images ({subset}){eps}, {counting}, seed {doc.get('seed')}"


def evaluations(doc: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every evaluation in ``doc``, oldest first; a format-1 file (one setup, no list) is its own only entry."""
    if not doc:
        return []
    entries = doc.get("evaluations")
    if isinstance(entries, list) and entries:
        return [dict(e) for e in entries if isinstance(e, Mapping)]
    return [{**setup_of(doc), "attacks": dict(doc.get("attacks") or {})}]


def merge_previous(doc: dict[str, Any], out: Path) -> dict[str, Any]:
    """``doc`` (one new evaluation) joined with what ``out`` already holds: the same setup's other attacks, and
    every other setup as its own entry; the worst case over attacks and RobustBench's fields recomputed."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        old = None
    entries = evaluations(old) if isinstance(old, dict) else []
    setup = setup_of(doc)
    same = [e for e in entries if setup_of(e) == setup]
    kept = {k: v for e in same for k, v in (e.get("attacks") or {}).items() if k not in doc["attacks"]}
    current = {**setup, **{k: doc[k] for k in ENTRY_EXTRAS if k in doc}, "attacks": {**kept, **doc["attacks"]}}
    add_worst_case(current, doc.get("class_names") or [])
    current["robustbench"] = robustbench_fields(current, doc.get("robustbench") or {})
    others = [e for e in entries if e not in same]
    latest = {k: v for k, v in doc.items() if k not in ENTRY_EXTRAS[1:]}  # the per-sample data once, in the entry
    return {**latest, **{k: current[k] for k in ("attacks", "robustbench")}, "format": FORMAT_VERSION,
            "evaluations": [*others, current]}


ENTRY_EXTRAS = ("precision", "labels", "clean_predictions")
DAMAGED = "the file was damaged after it was written; move it away or choose another --out"


def check_previous(out: Path) -> None:
    """What ``out`` already holds, checked before any attack runs (`merge_previous` keeps it): a readable
    ``eval.json`` whose every attack is a result and whose per-sample fields decode. A damaged file is a one-line
    `FairadvError`, rather than a traceback after every attack has run."""
    from fairadv.evaluation.summary import check_evaluation

    if not out.exists():
        return
    doc = read_json(out)
    try:
        check_evaluation(doc, str(out))
    except FairadvError as exc:
        raise FairadvError(f"{exc}; {DAMAGED}") from None
    for i, entry in enumerate(evaluations(doc)):
        fields = [(key, entry.get(key)) for key in ENTRY_EXTRAS[1:]]
        fields += [(f"attacks.{name}.predictions", result.get("predictions"))
                   for name, result in entry["attacks"].items()]
        for key, text in fields:
            if text is not None and not _decodes(text):
                raise FairadvError(f"{out}: evaluations[{i}].{key} = {text!r:.40}: expected base64 of int16 class "
                                   f"indices (an even number of bytes); {DAMAGED}")


def _decodes(text: Any) -> bool:
    try:
        return isinstance(text, str) and len(base64.b64decode(text, validate=True)) % 2 == 0
    except (binascii.Error, ValueError):
        return False


def encode(values: torch.Tensor) -> str:
    """Class indices as base64 of little-endian int16."""
    return base64.b64encode(values.to(torch.int16).numpy().astype("<i2").tobytes()).decode("ascii")


def decode(text: str) -> torch.Tensor:
    """The inverse of `encode` (int64)."""
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<i2").astype(np.int64))


def add_worst_case(entry: dict[str, Any], class_names: Sequence[str]) -> None:
    """Set ``entry["attacks"]["worst_case"]`` from every attack with stored predictions (two or more), or drop it."""
    from fairadv.evaluation.classwise import Predictions, worst_case
    from fairadv.evaluation.summary import summarize

    attacks = entry["attacks"]
    attacks.pop(WORST_CASE, None)
    names = [k for k, v in attacks.items() if isinstance(v.get("predictions"), str)]
    if len(names) < 2 or not isinstance(entry.get("labels"), str) or not class_names:
        return
    labels, clean = decode(entry["labels"]), decode(entry["clean_predictions"])
    runs = [Predictions(labels, clean, decode(attacks[k]["predictions"])) for k in names]
    if any(len(r.attacked) != len(labels) for r in runs):
        return
    counting = entry.get("counting", DEFAULTS["counting"])
    combined = worst_case(runs)
    result = combined.classwise(len(class_names), counting)
    summary = summarize(result, class_names, {"name": WORST_CASE, "of": names})
    summary["clean_accuracy_std"] = float(result.clean_accuracy.std(unbiased=False))
    summary["confusion"] = result.confusion.tolist()
    summary["seconds"] = round(sum(float(attacks[k].get("seconds", 0.0)) for k in names), 3)
    summary["images_per_s"] = round(len(labels) / max(summary["seconds"], 1e-9), 1)
    attacks[WORST_CASE] = summary


def robustbench_fields(entry: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """RobustBench's leaderboard fields for ``entry``: accuracies in percent of images (not of classes) with two
    decimals as strings, ``autoattack_acc`` only when AutoAttack ran, and ``eps`` as written."""
    attacks = entry["attacks"]
    first = next(iter(attacks.values()), None)
    fields: dict[str, Any] = dict(given)
    if first is not None:
        fields["clean_acc"] = _percent_of_images(first, "clean")
    if "autoattack" in attacks:
        fields["autoattack_acc"] = _percent_of_images(attacks["autoattack"], "robust")
    return fields


def _percent_of_images(result: Mapping[str, Any], key: str) -> str:
    rows = result["per_class"]
    total = sum(int(r.get("count", 0)) for r in rows)
    correct = sum(float(r[key]) * int(r.get("count", 0)) for r in rows)
    return f"{100 * correct / max(total, 1):.2f}"
