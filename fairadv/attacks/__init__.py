"""Attacks: the `Attack` interface, its registry `ATTACKS`, the built-in FGSM and PGD, and the AutoAttack adapter
(evaluation only; the original code, PyPI's pyautoattack, is an optional extra imported on first use)."""

from fairadv.attacks.autoattack import AutoAttack
from fairadv.attacks.base import ATTACKS, Attack
from fairadv.attacks.fgsm import FGSM
from fairadv.attacks.pgd import PGD

__all__ = ["ATTACKS", "Attack", "AutoAttack", "FGSM", "PGD"]
