"""`ClassPolicy`: what a fairness strategy decides for each class.

One type expresses every method fairadv ships (docs/strategies/ gives each method's rule):

- DAFA scales the cross-entropy term and the attack radius of class y by W_y (reduction ``"batch"``);
- FRL weights the cross-entropy and the KL term with separate normalised weights (reduction ``"weights"``) and
  scales the radius;
- CFA scales the radius (CCM) and TRADES' beta (CCR) per class;
- ABSLD sets the temperature of a teacher's soft labels per class, for adversarial and for clean inputs;
- CSR weights an adversarial cross-entropy term per (predicted, true) class pair, a [C, C] ``pair_weight``.

Objectives read the policy per sample by indexing with the labels: ``policy.ce_weight[y]``.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

Reduction = Literal["batch", "weights"]
VECTORS = ("ce_weight", "kl_weight", "eps_scale", "beta_scale")
OPTIONAL_VECTORS = ("step_scale", "adv_temperature", "clean_temperature")  # per-class, None when unset


def _class_vector(name: str, value: object) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"ClassPolicy.{name} must be a non-empty vector of per-class values, got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"ClassPolicy.{name} has non-finite values: {tensor.tolist()}")
    if (tensor <= 0).any():
        raise ValueError(f"ClassPolicy.{name} must be positive, got {tensor.tolist()}")
    return tensor


def _pair_matrix(value: object) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if tensor.ndim != 2 or tensor.shape[0] != tensor.shape[1] or tensor.numel() == 0:
        raise ValueError(f"ClassPolicy.pair_weight must be a square [C, C] matrix, got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all() or (tensor < 0).any():
        raise ValueError(f"ClassPolicy.pair_weight must be finite and non-negative, got {tensor.tolist()}")
    return tensor


@attrs.frozen(eq=False)
class ClassPolicy:
    """Per-class loss weights, attack-radius scales and TRADES-beta scales. Validates itself on construction.

    Attributes:
        ce_weight: weight of each class's cross-entropy term (clean CE in TRADES, adversarial CE in PGD-AT).
        kl_weight: weight of each class's TRADES KL term (unused by PGD-AT).
        eps_scale: attack radius of class y is ``eps * eps_scale[y]``.
        beta_scale: TRADES' beta of class y is ``beta * beta_scale[y]``.
        step_scale: attack step of class y is ``step * step_scale[y]``; None (the default) scales the step like the
            radius, ``step * eps_scale[y]``, as DAFA's code does. FRL and CFA set it to keep steps fixed.
        adv_temperature: temperature of the teacher's soft labels in class y's adversarial term of a distillation
            objective (``rslad``); None (the default) is 1 for every class. ABSLD sets it.
        clean_temperature: the same for the clean term.
        reduction: ``"batch"`` averages weighted per-sample terms over the batch, (1/B) sum_b w_b l_b, as DAFA's
            code does; ``"weights"`` divides by the weight sum, sum_b w_b l_b / sum_b w_b, as FRL's code does.
        pair_weight: None (the default: no such term), or [C, C] with ``pair_weight[p, t]`` the weight of the
            adversarial cross-entropy of a sample of true class t predicted (under attack) as p; an objective that
            supports it adds that term (TRADES, for CSR).

    Shape:
        every vector is [C], finite and strictly positive; ``pair_weight`` is [C, C], finite and non-negative.
    """

    ce_weight: torch.Tensor = attrs.field(converter=lambda v: _class_vector("ce_weight", v))
    kl_weight: torch.Tensor = attrs.field(converter=lambda v: _class_vector("kl_weight", v))
    eps_scale: torch.Tensor = attrs.field(converter=lambda v: _class_vector("eps_scale", v))
    beta_scale: torch.Tensor = attrs.field(converter=lambda v: _class_vector("beta_scale", v))
    reduction: Reduction = attrs.field(default="batch", validator=attrs.validators.in_(("batch", "weights")))
    step_scale: torch.Tensor | None = attrs.field(
        default=None, converter=lambda v: None if v is None else _class_vector("step_scale", v))
    pair_weight: torch.Tensor | None = attrs.field(
        default=None, converter=lambda v: None if v is None else _pair_matrix(v))
    adv_temperature: torch.Tensor | None = attrs.field(
        default=None, converter=lambda v: None if v is None else _class_vector("adv_temperature", v))
    clean_temperature: torch.Tensor | None = attrs.field(
        default=None, converter=lambda v: None if v is None else _class_vector("clean_temperature", v))

    def __attrs_post_init__(self) -> None:
        sizes = {getattr(self, name).numel() for name in VECTORS + self.set_optional()}
        if self.pair_weight is not None:
            sizes.add(self.pair_weight.shape[0])
        if len(sizes) != 1:
            raise ValueError(f"ClassPolicy vectors must share one length (the class count), got {sorted(sizes)}")

    @classmethod
    def uniform(cls, num_classes: int) -> ClassPolicy:
        """Every class weighted 1 with the base radius and beta: plain TRADES / PGD-AT."""
        ones = torch.ones(num_classes)
        return cls(ones, ones, ones, ones)

    def set_optional(self) -> tuple[str, ...]:
        """The optional per-class vectors (`OPTIONAL_VECTORS`) this policy sets."""
        return tuple(name for name in OPTIONAL_VECTORS if getattr(self, name) is not None)

    @property
    def num_classes(self) -> int:
        """C, the length of every vector."""
        return self.ce_weight.numel()

    def evolve(self, **changes: object) -> ClassPolicy:
        """A copy with some fields replaced (validated again)."""
        return attrs.evolve(self, **changes)

    def to(self, device: torch.device | str) -> ClassPolicy:
        """The same policy with its vectors on ``device`` (for indexing by on-device labels)."""
        pair = None if self.pair_weight is None else self.pair_weight.to(device)
        return attrs.evolve(self, **{name: getattr(self, name).to(device) for name in VECTORS + self.set_optional()},
                            pair_weight=pair)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as written to ``policy.jsonl`` and checkpoints."""
        out: dict[str, object] = {name: getattr(self, name).tolist() for name in VECTORS}
        out["reduction"] = self.reduction
        out.update({name: getattr(self, name).tolist() for name in self.set_optional()})
        if self.pair_weight is not None:
            out["pair_weight"] = self.pair_weight.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClassPolicy:
        """The inverse of `to_dict` (validated again)."""
        return cls(**data)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassPolicy):
            return NotImplemented
        optional = (*OPTIONAL_VECTORS, "pair_weight")
        if any((getattr(self, n) is None) != (getattr(other, n) is None) for n in optional):
            return False
        names = VECTORS + tuple(n for n in optional if getattr(self, n) is not None)
        return self.reduction == other.reduction and all(
            torch.equal(getattr(self, n).cpu(), getattr(other, n).cpu()) for n in names
        )

    def is_uniform(self) -> bool:
        """Whether every class has weight 1 and the base radius, step, beta and temperatures, and no pair is
        weighted."""
        if self.pair_weight is not None:
            return False
        return all(math.isclose(v, 1.0) for n in VECTORS + self.set_optional() for v in getattr(self, n).tolist())
