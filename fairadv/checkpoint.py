"""Checkpoints: written atomically, read without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, saved with `torch.save` to a temporary
file in the same folder and renamed into place, so a crash never leaves a half-written file. Loading uses
``torch.load(weights_only=True)``: a file that carries a pickled object is refused and nothing in it runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import torch

from fairadv.errors import FairadvError
from fairadv.files import open_atomic
from fairadv.policy import ClassPolicy

FORMAT_VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> None:
    """Save ``obj`` to ``path`` via a temporary file and an atomic rename (`fairadv.files.open_atomic`)."""
    with open_atomic(path, "wb", fsync=True) as handle:
        torch.save(obj, handle)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a fairadv checkpoint safely; any problem is a one-line `FairadvError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FairadvError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or unsafe: all the user's to fix
        raise FairadvError(f"{path}: not a readable fairadv checkpoint: {load_failure(path, exc)}") from None
    if not isinstance(state, dict):
        raise FairadvError(f"{path}: not a fairadv checkpoint (expected a dict, got {type(state).__name__})")
    return state


def load_failure(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed, in words that never suggest ``weights_only=False``."""
    if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # the weights-only unpickler met an object
        return "it contains pickled Python objects, which fairadv refuses to load (nothing was executed)"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "the file is empty"
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # torch.save writes a zip archive (old: a pickle)
        return f"it is not a file torch.save wrote (it starts with {head!r}, not a zip archive)"
    return "the file is truncated or corrupt"


def load_error(exc: Exception) -> str:
    """The informative line of ``load_state_dict``'s error: the first size mismatch, missing or unexpected key."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return line[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def model_spec(state: dict[str, Any], path: Path) -> tuple[int, tuple[int, ...], list[str] | None]:
    """(classes, input shape, class names or None) of a fairadv checkpoint's ``model_spec``; one line if malformed."""
    spec = state.get("model_spec")
    try:
        classes, shape = spec["num_classes"], tuple(spec["input_shape"])  # type: ignore[index]
        names = spec.get("class_names")  # type: ignore[union-attr]
        if not (isinstance(classes, int) and classes >= 1 and len(shape) == 3
                and all(isinstance(s, int) and s >= 1 for s in shape)):
            raise ValueError
        if names is not None and (not isinstance(names, list) or len(names) != classes):
            raise ValueError
    except (KeyError, TypeError, ValueError, AttributeError):
        raise FairadvError(f"{path}: model_spec = {spec!r:.80}: expected num_classes (an integer), input_shape (C, H, "
                           "W) and optional class_names; the checkpoint is damaged") from None
    return classes, shape, names


def state_dict_of(state: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict in a loaded fairadv checkpoint or bare state-dict file (e.g. a published checkpoint).

    Accepts ``{"eval_model": sd}`` (what a fairadv run reports), ``{"model": sd}``, ``{"state_dict": sd}`` or a bare
    ``sd``, and strips a DataParallel ``module.`` prefix; ``path`` names the file in the error.
    """
    for key in ("eval_model", "model", "state_dict", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FairadvError(f"{path}: no model state dict found (expected tensors under 'model' or at the top level)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def parse_stored_recipe(text: Any, origin: Path) -> dict[str, Any]:
    """Parse the recipe TOML stored in a checkpoint or run folder; a problem names ``origin``."""
    if not isinstance(text, str):
        raise FairadvError(f"{origin}: the stored recipe is not text (got {type(text).__name__})")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FairadvError(f"{origin}: the recipe stored in the checkpoint is not valid TOML: {exc}") from None


def resumable_epoch_and_policy(state: dict[str, Any], epochs: int, num_classes: int) -> tuple[int, ClassPolicy]:
    """The finished epoch and the policy of a training checkpoint, checked against a run of ``epochs`` epochs on
    ``num_classes`` classes; ValueError says what does not fit."""
    epoch = state["epoch"]
    if not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        raise ValueError(f"its epoch {epoch!r} is not in 1..{epochs}")
    spec_classes = state.get("model_spec", {}).get("num_classes", num_classes)
    if spec_classes != num_classes:
        raise ValueError(f"its model has {spec_classes} classes, the data {num_classes}")
    policy = ClassPolicy.from_dict(state["policy"])
    if policy.num_classes != num_classes:
        raise ValueError(f"its policy has {policy.num_classes} classes, the data {num_classes}")
    return epoch, policy
