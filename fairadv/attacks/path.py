"""Points on an attack's path, for objectives that train on more than its end point (BAT).

An iterative attack walks x_0 (its start), x_1, ..., x_K and checks the prediction at x_0 ... x_{K-1} (the forward
pass its gradient needs); x_K is never checked. `pick_path_points` reads that walk the way BAT's official code
(``train_mode/stop_to_lastclean.py``, ``stop_to_firstadv.py``) stops its two attacks:

- ``last_correct``: x_{t-1} for the first checked iterate x_t that fools the model (x_0 if the start already does),
  x_K if none does;
- ``past_fooled``: the iterate at which the model is fooled for the (patience + 1)-th time (with patience 1: one
  step past the first fooling iterate, if it still fools), x_K if that never happens.

`count_correct` reads the same checks as GAIRAT's geometry value kappa, which Fair-ARD's code (``Fair-ARD.py``,
``AttackPGD``) counts: how many of x_0 ... x_{K-1} the model classified correctly.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import torch


@attrs.frozen(eq=False)
class PathPoints:
    """BAT's two points of each sample's attack path, (B, ...) like the input."""

    last_correct: torch.Tensor
    past_fooled: torch.Tensor


def pick_path_points(walk: Iterable[tuple[torch.Tensor, torch.Tensor | None]], y: torch.Tensor,
                     patience: int = 1) -> PathPoints:
    """The two points of a walk that yields ``(x_t, logits at x_t)`` for t < K and ``(x_K, None)`` last."""
    last_correct = past_fooled = previous = None
    for x_t, logits in walk:
        if last_correct is None:
            last_correct, past_fooled = x_t.clone(), x_t.clone()
            correct_so_far = torch.ones_like(y, dtype=torch.bool)
            picked = torch.zeros_like(y, dtype=torch.bool)
            misses = torch.zeros_like(y)
        if logits is None:  # x_K: whoever is still walking ends here
            last_correct[correct_so_far] = x_t[correct_so_far]
            past_fooled[~picked] = x_t[~picked]
            break
        fooled = logits.argmax(dim=1) != y
        first_fooled = fooled & correct_so_far
        last_correct[first_fooled] = (x_t if previous is None else previous)[first_fooled]
        correct_so_far &= ~fooled
        misses += (fooled & ~picked).long()
        now = fooled & ~picked & (misses > patience)
        past_fooled[now] = x_t[now]
        picked |= now
        previous = x_t
    if last_correct is None or past_fooled is None:
        raise ValueError("an attack path needs at least its end point")
    return PathPoints(last_correct, past_fooled)


def count_correct(walk: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
                  y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The end point x_K of a walk (as `pick_path_points` reads it) and, per sample, how many checked iterates
    x_0 ... x_{K-1} were classified as ``y``: an int64 (B,) count in [0, K]."""
    kappa = torch.zeros_like(y)
    end = None
    for x_t, logits in walk:
        if logits is None:
            end = x_t
            break
        kappa += (logits.argmax(dim=1) == y).long()
    if end is None:
        raise ValueError("an attack path needs at least its end point")
    return end, kappa
