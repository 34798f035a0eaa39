"""PGD-20 evaluation throughput: stop-on-success against all samples for all steps, and proof they agree.

Both count a sample as robust only if it is classified correctly on the clean input and at every PGD iterate (DAFA's
evaluation convention). The reference attacks every sample for all 20 steps and checks each iterate; fairadv's
``stop_on_success`` freezes a sample at its first fooling iterate and stops spending work on it. Same seed, same
uniform random start (one ``rand_like`` draw per batch in both), so the per-class counts must be identical.

Usage:
    python benchmarks/eval_pgd.py                 # trains a TRADES digits model for a minute, then measures
    python benchmarks/eval_pgd.py runs/trades_digits [--eps 0.2] [--repeats 3] [--batch-size 540] [--device cpu]

Set OMP_NUM_THREADS to the cores you mean to use; figures are images per second, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fairadv.attacks import PGD
from fairadv.attacks.base import eval_mode
from fairadv.evaluation.classwise import ClasswiseResult, evaluate
from fairadv.evaluation.presets import make_preset

EPS_FALLBACK = 0.031


def all_steps_reference(model: torch.nn.Module, loader, attack: PGD, num_classes: int,
                        device: torch.device) -> ClasswiseResult:
    """Every sample, every step; a sample is robust if its clean input and every iterate are classified correctly.

    The loop is plain PGD (the same start draw, projection and step as fairadv's PGD without stopping) written out,
    so the comparison does not depend on the code path under test.
    """
    c = num_classes
    counts, clean_c, robust_c = (torch.zeros(c, dtype=torch.long) for _ in range(3))
    eps, step = attack.eps, attack.eps * (attack.step_size / attack.eps)

    def project(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.clamp(z - x, -eps, eps)).clamp(0, 1)

    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                robust = model(x).argmax(1) == y
            clean_ok = robust.clone()
            current = project(x + (2 * torch.rand_like(x) - 1) * eps, x)
            for k in range(attack.steps + 1):  # iterates 0 (the start) .. K, each checked
                z = current.clone().requires_grad_(True)
                logits = model(z)
                robust &= logits.argmax(1) == y
                if k == attack.steps:
                    break
                grad, = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), z)
                current = project(current + step * grad.sign(), x).detach()
            counts += torch.bincount(y, minlength=c).cpu()
            clean_c += torch.bincount(y[clean_ok], minlength=c).cpu()
            robust_c += torch.bincount(y[robust], minlength=c).cpu()
    return ClasswiseResult(counts, clean_c, robust_c, torch.zeros(c, c, dtype=torch.long))  # confusion unused


def load_or_train(run: str | None, device: torch.device) -> tuple[torch.nn.Module, torch.utils.data.TensorDataset,
                                                                   Any, int, str]:
    """(model, test set, recipe, batch size, description) from a run folder, or from a TRADES digits run trained
    now."""
    from fairadv.api import load_model
    from fairadv.build import build_dataset
    from fairadv.checkpoint import parse_stored_recipe
    from fairadv.recipe import Recipe

    if run is None:
        from fairadv.api import run as fit

        out = Path(tempfile.mkdtemp(prefix="fairadv-bench-"))
        recipe = Recipe.load(Path(__file__).parent.parent / "recipes" / "trades_digits.toml",
                             ["train.epochs=15", "eval.n=50"])
        print(f"training {recipe.run.name} for {recipe.train.epochs} epochs into {out} ...", flush=True)
        fit(recipe, out=out)
        run = str(out / recipe.run.name)
    recipe_path = Path(run) / "recipe.toml"
    recipe = Recipe.from_dict(parse_stored_recipe(recipe_path.read_text(), recipe_path), source=str(recipe_path))
    model = load_model(run).to(device).float().eval()
    return model, build_dataset(recipe, "test"), recipe, recipe.eval.batch_size, f"{recipe.model.name} from {run}"


def timed(fn, repeats: int) -> tuple[float, ClasswiseResult]:
    best, result = float("inf"), None
    for _ in range(repeats):
        torch.manual_seed(0)
        tic = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - tic)
    return best, result  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run folder (default: train a digits model first)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eps", type=float, default=None, help="radius (default: the recipe's eval.attack eps)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, test_set, recipe, batch_size, what = load_or_train(args.run, device)
    batch_size = args.batch_size or batch_size
    eps = args.eps or float(recipe.eval.attack.params.get("eps", EPS_FALLBACK))
    x, y = (t.to(device) for t in test_set.tensors[:2])
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
    c = int(y.max()) + 1
    # fairadv's one PGD-20: the pgd20 preset, which takes the run recipe's own step ratio (0.02 at eps 0.2 on digits)
    attack = make_preset("pgd20", eps, "linf", seed=0, recipe=recipe).attack
    assert isinstance(attack, PGD) and attack.stop_on_success

    t_stop, stop = timed(lambda: evaluate(model, batches, attack, c, device), args.repeats)
    t_all, ref = timed(lambda: all_steps_reference(model, batches, attack, c, device), args.repeats)

    n = len(y)
    print(f"model: {what}; {n} test images, batch {batch_size}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"PGD-20 (eps {eps:g}, step {attack.step_size:.5f}, uniform start, CE), best of {args.repeats}:")
    print(f"  stop on success        {n / t_stop:9.1f} images/s  ({t_stop:.3f} s)")
    print(f"  all samples, all steps {n / t_all:9.1f} images/s  ({t_all:.3f} s)   speed-up x{t_all / t_stop:.2f}")
    print(f"  clean accuracy  {float(stop.clean_accuracy.mean()):.4f}")
    print(f"  robust accuracy {float(stop.robust_accuracy.mean()):.4f} (stop on success) vs "
          f"{float(ref.robust_accuracy.mean()):.4f} (all steps, any-iterate rule)")
    same = torch.equal(stop.robust_correct, ref.robust_correct) and torch.equal(stop.clean_correct, ref.clean_correct)
    print(f"  per-class robust counts identical: {same}  {stop.robust_correct.tolist()}")
    if not same:
        raise SystemExit(f"MISMATCH: reference {ref.robust_correct.tolist()}")


if __name__ == "__main__":
    main()
