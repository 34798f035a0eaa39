"""A leaderboard's size and cost, printed before it runs (``fairadv study BOARD.toml --dry-run`` prints only this).

Size: targets (done and to run), test images per target (``n``, else the whole test split) and attacks. Cost: for
each attack, images / throughput, summed over the targets to run. The throughput is, in this order, what this
leaderboard's finished targets measured (``eval.json`` records each attack's seconds), else `REFERENCE`: what the
docs measured. Both are estimates: AutoAttack's time depends on how many images stay robust (its later attacks run
only on those), and a zoo WideResNet costs far more per image than the digits CNN the reference is from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fairadv.study.target_cell import TargetJob, evaluation_of, target_done

# images/s measured by fairadv eval on the 30-epoch trades_digits run (small_cnn, eps 0.2) on a 2-core Intel Xeon,
# 2026-12-02 (docs/evaluation.md): AutoAttack 200 images in 105.9 s, PGD-20 in 0.7 s.
REFERENCE = {"autoattack": 1.9, "pgd20": 305.0}
REFERENCE_SOURCE = "the digits CNN on 2 CPU cores (docs/evaluation.md)"
ZOO_TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000}


def images_of(job: TargetJob) -> int | None:
    """The images ``job`` evaluates: ``n``, else its test split's size (None when it cannot be told here)."""
    if job.n:
        return job.n
    zoo = dict(job.spec.zoo)
    if zoo:
        return ZOO_TEST_IMAGES.get(zoo.get("dataset", ""))
    try:
        from fairadv.build import build_source
        from fairadv.evaluation.eval_command import load_target

        return len(build_source(load_target(job.spec.target, job.spec.recipe_path, job.spec.model_name).recipe).test)
    except Exception:  # noqa: BLE001 - a size estimate only; the run itself reports what is wrong
        return None


def throughput(jobs: Sequence[TargetJob], attacks: Sequence[str]) -> dict[str, tuple[float | None, str]]:
    """{attack: (images/s, where it comes from)}: this leaderboard's finished targets, else `REFERENCE`."""
    out: dict[str, tuple[float | None, str]] = {}
    for attack in attacks:
        images = seconds = 0.0
        for job in jobs:
            if target_done(job):
                doc = evaluation_of(job.run_dir) or {}
                result = (doc.get("attacks") or {}).get(attack) or {}
                images, seconds = images + float(doc.get("images") or 0), seconds + float(result.get("seconds", 0))
        if seconds > 0:
            out[attack] = (images / seconds, "measured on this leaderboard's finished targets")
        else:
            out[attack] = (REFERENCE.get(attack), REFERENCE_SOURCE if attack in REFERENCE else "no measurement")
    return out


def estimate(jobs: Sequence[TargetJob], attacks: Sequence[str]) -> dict[str, Any]:
    """The leaderboard's size and estimated seconds for its targets still to run."""
    todo = [job for job in jobs if not target_done(job)]
    sizes = {job.name: images_of(job) if job in todo else (evaluation_of(job.run_dir) or {}).get("images")
             for job in jobs}
    rates = throughput(jobs, attacks)
    seconds = 0.0
    unknown = []
    for job in todo:
        for attack in attacks:
            rate, images = rates[attack][0], sizes[job.name]
            if rate is None or images is None:
                unknown.append(f"{job.name}/{attack}")
            else:
                seconds += images / rate
    return {"targets": len(jobs), "done": len(jobs) - len(todo), "to_run": len(todo),
            "images": sorted({s for s in sizes.values() if s is not None}), "attacks": list(attacks),
            "seconds": round(seconds, 1), "unknown": unknown,
            "throughput": {a: {"images_per_s": r, "source": s} for a, (r, s) in rates.items()}}


def cost_text(name: str, found: Mapping[str, Any]) -> str:
    images = "/".join(map(str, found["images"])) or "?"
    rates = "; ".join(f"{a} {r['images_per_s']:.1f} images/s ({r['source']})" if r["images_per_s"] else
                      f"{a}: {r['source']}" for a, r in found["throughput"].items())
    unknown = f"; not estimated: {', '.join(found['unknown'])}" if found["unknown"] else ""
    return (f"leaderboard {name}: {found['targets']} targets ({found['done']} done, {found['to_run']} to run), "
            f"{images} test images each, attacks {', '.join(found['attacks'])}; estimated "
            f"{_duration(found['seconds'])} for the targets to run, one at a time (an estimate from {rates}){unknown}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
