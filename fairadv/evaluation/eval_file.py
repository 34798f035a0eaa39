"""``eval.json``: every evaluation of one checkpoint, one entry per setup.

A setup is what makes two numbers comparable: the checkpoint and its epoch, the data, the subset (``n``, the images
it holds, its ``seed``), ``eps`` and the norm. ``fairadv eval`` with a new setup adds an entry instead of replacing
the file; with a setup seen before it adds or replaces attacks inside that entry. The top level mirrors the latest
evaluation (``attacks``, ``n``, ``images``, ...), so a reader that wants "the" result needs nothing else, and
``evaluations`` lists them all, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
# What must agree for two evaluations to be one setup (merged attack by attack).
SETUP_KEYS = ("checkpoint", "epoch", "model", "data", "split", "n", "images", "seed", "eps", "norm")
# What must agree for results of two different runs to compare: the images and the threat model.
COMPARABLE_KEYS = ("split", "n", "images", "seed", "eps", "norm")


def setup_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The setup fields of an evaluation."""
    return {k: doc.get(k) for k in SETUP_KEYS}


def setup_label(doc: Mapping[str, Any]) -> str:
    """A short human description: ``539 test images (all), eps 0.2 linf, seed 0``."""
    subset = "all" if not doc.get("n") else f"n={doc['n']}"
    eps = f", eps {doc['eps']:g} {doc.get('norm', 'linf')}" if doc.get("eps") is not None else ""
    return f"{doc.get('images')} {doc.get('split', 'test')} images ({subset}){eps}, seed {doc.get('seed')}"


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
    every other setup as its own entry."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        old = None
    entries = evaluations(old) if isinstance(old, dict) else []
    setup = setup_of(doc)
    same = [e for e in entries if setup_of(e) == setup]
    kept = {k: v for e in same for k, v in (e.get("attacks") or {}).items() if k not in doc["attacks"]}
    current = {**setup, "precision": doc.get("precision"), "attacks": {**kept, **doc["attacks"]}}
    others = [e for e in entries if setup_of(e) != setup]
    return {**doc, "format": FORMAT_VERSION, "attacks": current["attacks"], "evaluations": [*others, current]}
