"""``fairadv compare``: the paper's fairness score rho, seeds pooled into mean ± sample std, per-class deltas,
eval.json results, JSON output and one-line errors, all on run folders written by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w
from helpers import ROOT, invoke

from fairadv.evaluation.compare import compare_runs, group_key, mean_std
from fairadv.evaluation.metrics import (CLEAN_AVG, CLEAN_WORST, FAIRNESS_METRICS, METRICS, ROBUST_AVG, ROBUST_WORST,
                                        rho, rho_scores)

NAMES = ["a", "b", "c"]


def recipe(seed: int = 0, name: str = "run", lam: float = 1.0, out: str = "runs") -> dict:
    return {"run": {"name": name, "seed": seed, "out": out, "device": "auto"},
            "data": {"name": "digits"}, "model": {"name": "small_cnn", "width": 8},
            "strategy": {"name": "dafa", "lam": lam, "warmup_epochs": 2},
            "train": {"epochs": 3, "batch_size": 64}}


def write_run(root: Path, name: str, clean: list[float], robust: list[float], seed: int = 0, lam: float = 1.0,
              evaluation: dict | None = None) -> Path:
    """A finished run folder: recipe.toml and a summary.json computed from per-class clean / robust fractions."""
    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.toml").write_text(tomli_w.dumps(recipe(seed, name, lam)))
    worst = min(range(len(robust)), key=robust.__getitem__)
    summary = {
        "clean_accuracy": sum(clean) / len(clean), "robust_accuracy": sum(robust) / len(robust),
        "worst_class_clean_accuracy": min(clean), "worst_class_robust_accuracy": robust[worst],
        "worst_class": worst, "worst_class_name": NAMES[worst], "robust_accuracy_std": 0.0,
        "worst_class_confusions": [],
        "per_class": [{"class": i, "name": n, "clean": c, "robust": r, "count": 10}
                      for i, (n, c, r) in enumerate(zip(NAMES, clean, robust))],
        "attack": {"name": "pgd", "eps": 0.1, "steps": 20},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    if evaluation is not None:
        (run / "eval.json").write_text(json.dumps(evaluation))
    return run


def eval_doc(**attacks: tuple[float, float, list[float]]) -> dict:
    """An eval.json with, per attack, (robust avg, worst robust, per-class robust)."""
    return {"format": 1, "images": 30, "attacks": {
        name: {"clean_accuracy": 0.9, "worst_class_clean_accuracy": 0.8, "robust_accuracy": avg,
               "worst_class_robust_accuracy": worst,
               "per_class": [{"class": i, "name": n, "clean": 0.9, "robust": r} for i, (n, r) in
                             enumerate(zip(NAMES, per_class))]}
        for name, (avg, worst, per_class) in attacks.items()}}


# --- rho: the paper's table ---------------------------------------------------------------------------------------

def paper_rows() -> list[tuple[str, float, float, float, float, float]]:
    """(label, baseline avg, baseline worst, method avg, method worst, printed rho) for every rho in docs/papers.md:
    each data set's table, clean and robust, against its TRADES row."""
    rows, table, baseline = [], None, None
    for line in (ROOT / "docs" / "papers.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0].startswith("---"):
            continue
        if cells[1] == "clean avg":
            table = cells[0]
            continue
        value = [float(c.split("±")[0].replace("−", "-")) for c in cells[1:]]
        baseline = value if cells[0] == "TRADES" else baseline
        for kind, at in (("clean", 0), ("robust", 3)):
            rows.append((f"{table} {cells[0]} {kind}", baseline[at], baseline[at + 1], value[at], value[at + 1],
                         value[at + 2]))
    return rows


PAPER = paper_rows()


def test_the_papers_page_has_every_table():
    assert len(PAPER) == 3 * 6 * 2


@pytest.mark.parametrize("row", PAPER, ids=[p[0] for p in PAPER])
def test_rho_reproduces_the_papers_table(row):
    _, base_avg, base_worst, avg, worst, printed = row
    assert round(rho(avg, worst, base_avg, base_worst), 2) == printed


def test_rho_by_hand_for_dafa_cifar10():
    # (30.53 - 21.31) / 21.31 - (49.80 - 49.05) / 49.80 = 0.43266 - 0.01506 = 0.41760
    assert rho(49.05, 30.53, 49.80, 21.31) == pytest.approx(9.22 / 21.31 - 0.75 / 49.80, abs=1e-12)
    assert rho(49.05, 30.53, 49.80, 21.31) == pytest.approx(0.4176, abs=1e-4)
    assert rho(0.5, 0.2, 0.5, 0.0) is None  # a baseline worst class at 0: undefined, not infinite
    assert rho(0.5, 0.2, 0.5, 0.2) == 0.0


def test_rho_scores_pair_each_average_with_its_worst_class():
    base = {CLEAN_AVG: 0.8, CLEAN_WORST: 0.6, ROBUST_AVG: 49.80, ROBUST_WORST: 21.31}
    row = {**base, ROBUST_AVG: 49.05, ROBUST_WORST: 30.53}
    assert rho_scores(row, base) == {"rho_nat": 0.0, "rho_rob": rho(49.05, 30.53, 49.80, 21.31)}
    every = (*METRICS, *FAIRNESS_METRICS)  # no two metrics share a spelling (key, column, label or header)
    for spelling in ("key", "column", "label", "header"):
        assert len({getattr(m, spelling) for m in every}) == len(every)


def test_compare_computes_rho_nat_and_rho_rob_from_run_folders(tmp_path):
    # Three classes whose means and worst classes are the paper's CIFAR-10 TRADES and DAFA numbers.
    trades = write_run(tmp_path, "trades", clean=[0.6570, 0.9000, 0.9042], robust=[0.2131, 0.6100, 0.6709], lam=0)
    dafa = write_run(tmp_path, "dafa", clean=[0.6790, 0.8800, 0.8899], robust=[0.3053, 0.5800, 0.5862])
    result = compare_runs([dafa], baseline=trades)
    base, method = result["groups"]
    assert result["baseline"] == "trades" and base["label"] == "trades"  # the baseline joins, first
    assert method["clean_accuracy"]["mean"] == pytest.approx(0.8163, abs=1e-6)
    assert method["robust_accuracy"]["mean"] == pytest.approx(0.4905, abs=1e-6)
    assert base["robust_accuracy"]["mean"] == pytest.approx(0.4980, abs=1e-6)
    assert round(method["rho_rob"], 2) == 0.42 and round(method["rho_nat"], 2) == 0.03
    assert base["rho_rob"] == 0.0 and base["rho_nat"] == 0.0
    assert method["per_class_robust_delta"] == pytest.approx([0.0922, -0.03, -0.0847], abs=1e-9)


# --- grouping seeds -------------------------------------------------------------------------------------------------


def test_group_key_ignores_only_seed_name_out_and_device():
    assert group_key(recipe(0, "x")) == group_key(recipe(5, "y", out="elsewhere"))
    assert group_key(recipe(0, "x")) != group_key(recipe(0, "x", lam=1.5))


def test_runs_reading_seeds_of_one_source_setting_pool_and_other_sources_do_not(tmp_path):
    """A study's distilling (teacher.path) or fine-tuning (model.init_from) cells each read their own seed's source
    cell: they are seeds of one setting; a source of another setting, or a file outside any run, keeps them apart."""
    teachers = [write_run(tmp_path, f"teacher-s{seed}", [1, 1, 1], [0.5, 0.5, 0.5], seed=seed) for seed in (0, 1)]
    other = write_run(tmp_path, "teacher_lam2-s0", [1, 1, 1], [0.5, 0.5, 0.5], lam=2.0)

    def student(seed: int, source: Path | str, table: str, key: str) -> dict:
        base = recipe(seed, f"student-s{seed}")
        return {**base, table: {**base.get(table, {}), key: str(source)}}

    for table, key in (("teacher", "path"), ("model", "init_from")):
        assert group_key(student(0, teachers[0], table, key)) == group_key(student(1, teachers[1], table, key))
        assert group_key(student(0, teachers[0], table, key)) != group_key(student(0, other, table, key))
        assert group_key(student(0, teachers[0] / "checkpoints" / "last.pt", table, key)) == group_key(
            student(1, teachers[1] / "checkpoints" / "last.pt", table, key))
        assert group_key(student(0, teachers[0] / "checkpoints" / "best.pt", table, key)) != group_key(
            student(1, teachers[1] / "checkpoints" / "last.pt", table, key))
        assert group_key(student(0, tmp_path / "a.pt", table, key)) != group_key(student(1, tmp_path / "b.pt", table,
                                                                                       key))


def test_seeds_are_pooled_into_mean_and_sample_std(tmp_path):
    a = [write_run(tmp_path, f"dafa_s{s}", clean=[0.9, 0.9, 0.9], robust=r, seed=s)
         for s, r in enumerate([[0.2, 0.5, 0.8], [0.3, 0.5, 0.7], [0.4, 0.5, 0.6]])]
    b = [write_run(tmp_path, f"trades_s{s}", clean=[0.9, 0.9, 0.9], robust=r, seed=s, lam=0.0)
         for s, r in enumerate([[0.1, 0.6, 0.8], [0.3, 0.6, 0.6]])]
    result = compare_runs([*a, *b])
    assert result["std"] == "sample (n - 1)"
    ga, gb = result["groups"]
    assert ga["label"] == "dafa_s (3 seeds)" and ga["seeds"] == [0, 1, 2]
    assert gb["label"] == "trades_s (2 seeds)"
    # Worst-class robust accuracy per seed: 0.2, 0.3, 0.4 -> mean 0.3, sample std 0.1 (population std: 0.0816).
    assert ga["worst_class_robust_accuracy"]["mean"] == pytest.approx(0.3)
    assert ga["worst_class_robust_accuracy"]["std"] == pytest.approx(0.1)
    assert ga["robust_accuracy"]["std"] == pytest.approx(0.0, abs=1e-12)  # every seed averages 0.5
    # Two seeds, worst 0.1 and 0.3: sample std = |0.3 - 0.1| / sqrt(2).
    assert gb["worst_class_robust_accuracy"]["std"] == pytest.approx(0.2 / math.sqrt(2))
    assert ga["per_class_robust"]["mean"] == pytest.approx([0.3, 0.5, 0.7])
    assert gb["per_class_robust_delta"] == pytest.approx([0.2 - 0.3, 0.6 - 0.5, 0.7 - 0.7])  # against group a
    assert "rho_rob" not in ga  # only with a baseline

    # A baseline inside a group pools that group's seeds.
    with_base = compare_runs([*a, *b], baseline=b[1])
    assert with_base["baseline"] == "trades_s (2 seeds)"
    ga, gb = with_base["groups"]
    assert gb["rho_rob"] == 0.0
    # Baseline group: averages 0.5 and 0.5, worst 0.1 and 0.3 -> (0.5, 0.2); group a: (0.5, 0.3).
    assert ga["rho_rob"] == pytest.approx((0.3 - 0.2) / 0.2 - 0.0)
    assert ga["per_class_robust_delta"] == pytest.approx([0.1, -0.1, 0.0])


def test_mean_std_single_value_has_no_spread():
    assert mean_std([0.4]) == {"mean": 0.4, "std": None, "n": 1}


# --- eval.json, output formats --------------------------------------------------------------------------------------


def test_eval_results_get_their_own_columns_and_rho(tmp_path):
    base = write_run(tmp_path, "base", [0.9] * 3, [0.4, 0.5, 0.6], lam=0.0,
                     evaluation=eval_doc(pgd20=(0.5, 0.4, [0.4, 0.5, 0.6]), autoattack=(0.45, 0.3, [0.3, 0.5, 0.55])))
    other = write_run(tmp_path, "other", [0.9] * 3, [0.5, 0.5, 0.5],
                      evaluation=eval_doc(autoattack=(0.44, 0.4, [0.4, 0.42, 0.5])))
    result = compare_runs([base, other], baseline=base)
    g_base, g_other = result["groups"]
    assert list(g_base["eval"]) == ["pgd20", "autoattack"] and list(g_other["eval"]) == ["autoattack"]
    assert g_other["eval"]["autoattack"]["rho_rob"] == pytest.approx(rho(0.44, 0.4, 0.45, 0.3))
    assert g_other["eval"]["autoattack"]["per_class_robust"]["mean"] == pytest.approx([0.4, 0.42, 0.5])

    out = invoke("compare", str(base), str(other), "--baseline", str(base))
    assert out.exit_code == 0, out.output
    for text in ("autoattack avg", "autoattack ρ_rob", "pgd20 worst class", "ρ_nat", "base (baseline)", "+0.00"):
        assert text in out.output
    assert f"{rho(0.44, 0.4, 0.45, 0.3):+.2f}" in out.output

    out = invoke("compare", str(base), str(other), "--json")
    assert out.exit_code == 0
    parsed = json.loads(out.output)
    assert parsed["baseline"] is None and parsed["reference"] == "base"
    assert parsed["groups"][1]["per_class_robust_delta"] == pytest.approx([0.1, 0.0, -0.1])


@pytest.mark.parametrize("case", ["missing", "no_summary", "corrupt", "classes"])
def test_bad_runs_exit_2_with_one_line(tmp_path, case):
    good = write_run(tmp_path, "good", [0.9] * 3, [0.5] * 3)
    bad = tmp_path / "bad"
    if case != "missing":
        bad.mkdir()
        (bad / "recipe.toml").write_text(tomli_w.dumps(recipe()))
    if case == "corrupt":
        (bad / "summary.json").write_text("{not json")
    if case == "classes":
        summary = json.loads((good / "summary.json").read_text())
        summary["per_class"] = summary["per_class"][:2]
        (bad / "summary.json").write_text(json.dumps(summary))
    out = invoke("compare", str(good), str(bad))
    assert out.exit_code == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "bad" in lines[0], out.stderr
    assert "Traceback" not in out.output
