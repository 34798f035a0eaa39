"""``fairadv compare``'s statistics on real runs: each group's 95 % interval, paired differences from a baseline with
Holm's correction, the designs that cannot test (one seed, few images), runs attacked at another eps left unpaired,
and deterministic JSON.

The "seeds" are copies of the session's digits run (`digits_run`, which is at chance after its two quick epochs):
each copy's weights get seeded noise and its last layer is then solved in closed form (ridge regression of one-hot
labels on the penultimate features: one linear solve, no training loop), giving models at 80-87 % clean accuracy
that differ by seed. A group is a recipe (``objective.beta`` relabelled); each copy is evaluated with FGSM on 200
test images (20 a class), which stores the per-image predictions that pair by image.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from helpers import invoke

import fairadv
from fairadv.build import build_dataset, build_model
from fairadv.checkpoint import save_atomic
from fairadv.evaluation.compare import compare_runs
from fairadv.evaluation.compare_statistics import FINAL, Settings
from fairadv.evaluation.metrics import CLEAN_AVG, FAIRNESS_METRICS, METRICS, ROBUST_AVG, ROBUST_WORST
from fairadv.statistics.paired import holm

EVAL = ("--attack", "fgsm", "--n", "200", "--eps", "0.05")


def refit(run: Path, seed: int) -> None:
    """Jitter the run's weights with ``seed``'s noise, then solve its last layer by ridge regression on the training
    images (the module docstring's closed-form fit)."""
    recipe = fairadv.Recipe.load(run / "recipe.toml")
    x, y = build_dataset(recipe, "train", augment=False).tensors
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    model = build_model(recipe, 10, tuple(x.shape[1:]))
    model.load_state_dict(state["model"])
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.parameters():
            value += 0.3 * value.std() * torch.randn(value.shape, generator=noise)
        features = torch.cat([model.eval().forward_features(x), torch.ones(len(x), 1)], 1).double()
        gram = features.T @ features + 0.1 * torch.eye(features.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(gram, features.T @ torch.nn.functional.one_hot(y, 10).double()).float()
        model.fc.weight.copy_(w[:-1].T)
        model.fc.bias.copy_(w[-1])
    state["model"] = model.state_dict()
    save_atomic(state, run / "checkpoints" / "last.pt")


def make_seed(source: Path, root: Path, name: str, seed: int, beta: float, *eval_args: str) -> Path:
    """A copy of ``source`` as seed ``seed`` of the setting ``beta``, its weights jittered by that seed's noise, and
    evaluated with FGSM (``eval_args`` added)."""
    run = Path(shutil.copytree(source, root / name))
    recipe = tomllib.loads((run / "recipe.toml").read_text())
    recipe["run"].update(seed=seed, name=name)
    recipe["objective"]["beta"] = beta
    (run / "recipe.toml").write_text(tomli_w.dumps(recipe))
    refit(run, 1000 * int(beta) + seed)
    out = invoke("eval", run, *EVAL, *eval_args)
    assert out.exit_code == 0, out.output
    return run


@pytest.fixture(scope="module")
def runs(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """base_s0/s1 (beta 6), a_s0/s1 (beta 3), b_s0/s1 (beta 1) and far_s0 (beta 3, evaluated at eps 0.1)."""
    root = tmp_path_factory.mktemp("seeds")
    found = {f"{group}_s{seed}": make_seed(digits_run, root, f"{group}_s{seed}", seed, beta)
             for group, beta in (("base", 6.0), ("a", 3.0), ("b", 1.0)) for seed in (0, 1)}
    found["far_s0"] = make_seed(digits_run, root, "far_s0", 0, 3.0, "--eps", "0.1")
    return found


def test_each_group_has_intervals_that_contain_its_mean(runs):
    result = compare_runs([runs["base_s0"], runs["base_s1"], runs["a_s0"]])
    two, one = result["groups"]
    assert result["statistics"] == {"confidence": 0.95, "alpha": 0.05, "resamples": 2000, "bootstrap_seed": 0,
                                    "notes": []}
    for group in (two, one):
        for place in (group, group["eval"]["fgsm"]):
            assert set(place["intervals"]) == {m.key for m in (*METRICS, *FAIRNESS_METRICS)}
            for key, stat in place["intervals"].items():
                # 1e-9: summary.json's run is at chance in every copy, so there low = mean = high (up to rounding).
                # The interval is centred on the bias-corrected estimate (a minimum reads low on a finite test set):
                # it holds that centre, and the mean of the linear metrics, which have no bias to correct.
                centre = stat["mean"] if key in (CLEAN_AVG.key, ROBUST_AVG.key) else stat["centre"]
                assert stat["low"] - 1e-9 <= centre <= stat["high"] + 1e-9, (group["label"], key, stat)
            if ROBUST_AVG.key in place:  # the interval's mean is the table's mean
                assert place["intervals"][ROBUST_AVG.key]["mean"] == pytest.approx(place[ROBUST_AVG.key]["mean"])
    fgsm = two["eval"]["fgsm"]["intervals"][ROBUST_WORST.key]
    assert fgsm["seeds"] == 2 and fgsm["reason"] is None and "2 seeds" in fgsm["method"]
    alone = one["eval"]["fgsm"]["intervals"][ROBUST_WORST.key]
    assert alone["seeds"] == 1 and "one seed" in alone["reason"] and alone["std"] is None

    out = invoke("compare", runs["base_s0"], runs["base_s1"], runs["a_s0"])
    assert out.exit_code == 0, out.output
    assert "95 % interval" in out.stdout and "]*" in out.stdout  # the one-run group's intervals are marked
    assert "* one seed: the interval covers test-image variation only" in " ".join(out.stdout.split())


def test_two_seeds_a_group_give_paired_p_values_holm_adjusted_over_the_groups(runs):
    paths = [runs[k] for k in ("base_s0", "base_s1", "a_s0", "a_s1", "b_s1", "b_s0")]
    result = compare_runs(paths, baseline=runs["base_s1"])
    fgsm = result["tests"]["fgsm"]
    assert set(fgsm["rows"]) == {"a_s (2 seeds)", "b_s (2 seeds)"} and not fgsm["refused"]
    uneven = compare_runs(paths[:5], baseline=runs["base_s1"], settings=Settings(resamples=200))  # b_s1 alone
    assert "different numbers of seeds: a_s (2 seeds) 2, b_s1 1" in " ".join(uneven["tests"]["fgsm"]["notes"])
    assert "paired by seed and test image, over 2 seeds" in fgsm["caption"]
    assert "Holm-adjusted over 2 methods per metric; alpha 0.05" in fgsm["caption"]
    for key in (ROBUST_AVG.key, ROBUST_WORST.key, "robust_nsd", "rho_nat"):
        rows = [fgsm["rows"][g][key] for g in ("a_s (2 seeds)", "b_s (2 seeds)")]
        assert all(d["p_value"] is not None and d["seeds"] == 2 and d["low"] <= d["centre"] <= d["high"]
                   for d in rows), rows
        assert [d["p_adjusted"] for d in rows] == pytest.approx(list(holm([d["p_value"] for d in rows])))
    # The difference pairs seed s with seed s: the mean over seeds of (method - baseline).
    a = fgsm["rows"]["a_s (2 seeds)"][ROBUST_AVG.key]
    per_seed = [json.loads((runs[f"{g}_s{s}"] / "eval.json").read_text())["attacks"]["fgsm"][ROBUST_AVG.key]
                for g in ("a", "base") for s in (0, 1)]
    assert a["difference"] == pytest.approx(np.mean(per_seed[:2]) - np.mean(per_seed[2:]))
    # summary.json's final evaluation: 5 test images a class (eval.n = 50), counts only: no test, and it says why.
    final = result["tests"][FINAL]
    assert all(d["p_value"] is None for row in final["rows"].values() for d in row.values())
    assert any("too few test images" in n for n in final["notes"]) and "paired by seed only" in final["notes"][-1]
    assert all(d["paired_by"] == "seed (per-class counts only, not paired by image)"
               for row in final["rows"].values() for d in row.values())

    out = invoke("compare", *paths, "--baseline", runs["base_s1"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "Difference from base_s (2 seeds), eval.json fgsm" in text and "Holm-adjusted over 2 methods" in text
    assert " p 0." in text and "† Holm-adjusted p < 0.05" in text and "no test" in text


def test_one_seed_each_says_it_cannot_test(runs):
    result = compare_runs([runs["a_s0"]], baseline=runs["base_s0"])
    fgsm = result["tests"]["fgsm"]
    row = fgsm["rows"]["a_s0"]
    assert all(d["p_value"] is None and d["p_adjusted"] is None and d["reason"].startswith("one seed")
               for d in row.values())
    assert row[ROBUST_WORST.key]["low"] < row[ROBUST_WORST.key]["high"]  # an interval, over test images only
    assert "no test: one seed" in fgsm["caption"]
    out = invoke("compare", runs["a_s0"], "--baseline", runs["base_s0"])
    assert out.exit_code == 0 and "no test" in out.stdout and " p 0." not in out.stdout
    # Pairing is by run.seed: a seed the baseline does not have pairs with nothing.
    alone = compare_runs([runs["a_s1"]], baseline=runs["base_s0"], settings=Settings(resamples=200))
    assert "no seed in common with the baseline (seeds 1 and 0)" in alone["tests"]["fgsm"]["refused"]["a_s1"]


def test_runs_attacked_at_another_eps_are_not_paired(runs):
    refused = invoke("compare", runs["far_s0"], "--baseline", runs["base_s0"])
    assert refused.exit_code == 2 and "fgsm (eval.json) figures" in refused.output  # issue 29: not without a flag
    result = compare_runs([runs["far_s0"]], baseline=runs["base_s0"], allow_mixed=True)
    fgsm = result["tests"]["fgsm"]
    assert fgsm["rows"] == {} and "different threat models" in fgsm["refused"]["far_s0"]
    assert "eps 0.1" in fgsm["refused"]["far_s0"]
    assert set(result["tests"][FINAL]["rows"]) == {"far_s0"}  # their final evaluations share one threat model
    out = invoke("compare", runs["far_s0"], "--baseline", runs["base_s0"], "--allow-mixed")
    text = " ".join(out.stdout.split())
    assert "not paired" in text and "fgsm, far_s0: not paired: the runs were attacked under different" in text
    assert "fgsm results rest on different setups" in text  # the setup note stays


def test_runs_on_other_images_pair_by_seed_only(runs, tmp_path):
    other = Path(shutil.copytree(runs["a_s1"], tmp_path / "a_s1"))
    (other / "eval.json").unlink()
    assert invoke("eval", other, *EVAL, "--seed", "7").exit_code == 0  # another subset of 200 images
    paths = [runs["base_s0"], runs["base_s1"], runs["a_s0"], other]
    result = compare_runs(paths, baseline=runs["base_s0"], settings=Settings(resamples=200))
    row = result["tests"]["fgsm"]["rows"]["a_s (2 seeds)"]
    assert all(d["paired_by"] == "seed (the runs saw different test images)" and d["seeds"] == 2
               for d in row.values())
    assert not result["groups"][1]["eval"]["fgsm"]["intervals"][ROBUST_AVG.key]["shared_images"]


def test_json_is_the_same_on_every_call_and_stores_the_bootstrap(runs):
    args = ["compare", runs["base_s0"], runs["base_s1"], runs["a_s0"], runs["a_s1"], "--baseline", runs["base_s0"],
            "--json", "--resamples", "500", "--bootstrap-seed", "3"]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert doc["statistics"]["resamples"] == 500 and doc["statistics"]["bootstrap_seed"] == 3
    assert doc["tests"]["fgsm"]["caption"].startswith("differences from base_s (2 seeds)")
    other_seed = json.loads(invoke(*args[:-1], "4").stdout)
    assert other_seed["groups"][0]["eval"]["fgsm"]["intervals"] != doc["groups"][0]["eval"]["fgsm"]["intervals"]
