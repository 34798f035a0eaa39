"""Class weights from a KL-constrained distributionally robust problem, solved through its one-dimensional dual.

FAAL (Zhang et al., CVPR 2024, https://arxiv.org/abs/2402.17729) reweights classes every batch by the worst case
over class distributions near the uniform one. Its official code (TrustAI/FAAL, ``FAAL.py``) hands the problem to
cvxpy; it has a closed form up to one scalar, found here by a vectorised search, so fairadv needs no convex solver.

The problem, for C classes with batch losses L_k, batch counts n_k and u_k = 1/C:

    maximise_p   sum_k a_k p_k,   a_k = n_k L_k           (the code's objective sum_b p[y_b] L[y_b])
    subject to   p_k >= 0,  sum_k p_k = 1,  KL(u || p) = sum_k u_k log(u_k / p_k) <= r.

The objective is linear, so unless all a_k are equal the KL constraint is active. Stationarity of the Lagrangian
a.p - lam (KL(u||p) - r) - nu (sum p - 1) gives, with mu = nu / lam > max_k a_k,

    p_k(mu) = (u_k / (mu - a_k)) / sum_j u_j / (mu - a_j),

and KL(u || p(mu)) falls monotonically from +inf (mu -> max a, all mass on the arg max) to 0 (mu -> inf, p -> u).
The solution is the mu with KL = r. With d_k = (max a - a_k) / D in [0, 1], D = max a - min a, and
mu = max a + D e^s, the search runs over s, where

    w_k(s) = e^s / (e^s + d_k) = 1 / (1 + d_k e^-s),   p = w / sum_k w_k,   KL(s) = log mean_k w_k - mean_k log w_k

(no exponential overflows: w_k is in (0, 1], and the classes at max a have w_k = 1). The root lies in [s_lo, s_hi]:

- s_hi = -log(expm1(r)): p_k / u_k lies in [t / (t + 1), (t + 1) / t] for t = e^s, so KL <= log(1 + 1/t) <= r;
- s_lo = log u(M) - (r - (1 - u(S)) log(1 - u(S))) / u(S), with M the classes at max a and S those at min a: the
  two-set coarsening bounds KL from below by u(S) log(u(M) / t) + (1 - u(S)) log(1 - u(S)) >= r.

Both ends are clipped to [-700, 700] (e^s stays a normal float64); a root below -700 needs r > 600 u(S), where the
weights are the limit (all mass on the top classes) to float64 precision anyway. The search splits the bracket into
128 cells per round and keeps the one where KL crosses r; 8 rounds narrow any bracket to under 3e-14 in s. It has a
fixed length and no data-dependent branch, so on a GPU it never waits for the device.
"""

from __future__ import annotations

import math

import torch

LOG_T_LIMIT = 700.0  # |s| bound: e^700 ~ 1e304 is a normal float64
POINTS = 127  # interior points per round: the bracket shrinks 128-fold
ROUNDS = 8  # 1400 / 128**8 < 3e-14


def kl_dro_weights(losses: torch.Tensor, counts: torch.Tensor, radius: float) -> torch.Tensor:
    """The class distribution p that maximises sum_k n_k L_k p_k subject to KL(uniform || p) <= radius.

    Args:
        losses: L_k, the batch loss of each class (FAAL: mean softmax margin); a class with count 0 may hold any
            value, NaN included (its a_k = n_k L_k is 0, as in the official objective).
        counts: n_k, how many samples of each class the batch holds (>= 0).
        radius: r >= 0, the KL budget; 0 gives the uniform distribution.

    Returns:
        p, float64 on the inputs' device, positive and summing to 1. Uniform when r = 0 or all a_k are equal.
        Detached: the weights are constants of the training loss.

    Shape:
        losses, counts: (C,) -> p: (C,).

    Example:
        >>> p = kl_dro_weights(torch.tensor([0.2, -0.5, -0.9]), torch.tensor([4, 4, 4]), 0.5)
    """
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    if losses.ndim != 1 or losses.shape != counts.shape or losses.numel() == 0:
        raise ValueError(f"losses and counts must be vectors of one length C >= 1, got shapes {tuple(losses.shape)} "
                         f"and {tuple(counts.shape)}")
    losses = losses.detach().to(torch.float64)
    counts = counts.detach().to(device=losses.device, dtype=torch.float64)
    c = losses.numel()
    if radius == 0 or c == 1:
        return torch.full((c,), 1.0 / c, dtype=torch.float64, device=losses.device)
    a = torch.where(counts > 0, counts * losses, 0.0)
    top = a.max()
    spread = top - a.min()
    d = (top - a) / torch.where(spread > 0, spread, 1.0)  # in [0, 1]; all 0 when a is flat, and then p = u
    u_top = (d == 0).to(torch.float64).mean()
    u_bottom = (d == 1).to(torch.float64).mean().clamp_min(1.0 / c)
    s_hi = min(max(-(radius + math.log(-math.expm1(-radius))), -LOG_T_LIMIT), LOG_T_LIMIT)  # -log(expm1(r))
    s_lo = torch.log(u_top) - (radius - torch.xlogy(1 - u_bottom, 1 - u_bottom)) / u_bottom
    lo = s_lo.clamp(-LOG_T_LIMIT, s_hi)
    width = s_hi - lo
    fractions = torch.arange(1, POINTS + 1, dtype=torch.float64, device=a.device) / (POINTS + 1)
    for _ in range(ROUNDS):
        above = kl_to_uniform(lo + width * fractions, d) > radius  # True, then False: KL falls as s grows
        width = width / (POINTS + 1)
        lo = lo + width * above.sum()  # the cell where KL crosses r
    w = 1 / (1 + d * torch.exp(-(lo + width / 2)))
    return w / w.sum()


def kl_to_uniform(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """KL(u || p(s)) for each s: log mean w - mean log w, w = 1 / (1 + d e^-s); s: (K,), d: (C,) -> (K,).

    Written as log1p(-mean(x / (1 + x))) + mean(log1p(x)), x = d e^-s: both terms are O(x) and cancel to O(x^2), so
    each is computed to relative precision and a tiny radius (KL ~ 1e-16) still has a well-defined root.
    """
    x = torch.outer(torch.exp(-s), d)
    return torch.log1p(-(x / (1 + x)).mean(dim=1)) + torch.log1p(x).mean(dim=1)
