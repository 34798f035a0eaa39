"""The study's evidence: intervals over seeds, paired differences from the baseline with Holm's correction, power, and
``--plan-seeds``, on study folders whose cells are written from known per-image outcomes (no training)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import RECIPES, invoke

from fairadv.evaluation.classwise import Predictions
from fairadv.evaluation.eval_file import encode, merge_previous
from fairadv.evaluation.summary import summarize
from fairadv.statistics import worst_k
from fairadv.statistics.paired import compare
from fairadv.statistics.power import minimum_detectable_difference, seeds_needed
from fairadv.study.evidence import Settings, design_power
from fairadv.study.latex import latex, tex_text
from fairadv.study.render import csv_text, markdown, write_tables
from fairadv.study.spec import load_study
from fairadv.study.text import p_text
from fairadv.study.table import aggregate

FAST = Settings(resamples=200)  # the tables' wiring, not the intervals' coverage (tests/test_statistics_*.py)
CLASSES, PER_CLASS = 10, 40
BASE = np.linspace(0.3, 0.7, CLASSES)  # robust accuracy of each class; clean is 0.25 higher


def write_study(folder: Path, methods: tuple[str, ...] = ("trades", "dafa", "frl"), seeds: str = "[0, 1, 2]",
                evaluate: str = '["pgd20"]') -> Path:
    tables = "".join(f'\n[methods.{m}]\nrecipe = "{RECIPES / "trades_gaussian.toml"}"\n' for m in methods)
    path = folder / "study.toml"
    path.write_text(f'[study]\nseeds = {seeds}\nbaseline = "trades"\nevaluate = {evaluate}\nn = 0\n{tables}')
    return path


def write_cell(run_dir: Path, labels: np.ndarray, clean: np.ndarray, attacked: dict[str, np.ndarray],
               eval_seed: int = 0, with_eval: bool = True) -> None:
    """A finished cell: ``summary.json`` and an ``eval.json`` with per-image predictions, as `fairadv eval` writes."""
    run_dir.mkdir(parents=True)
    names = [str(c) for c in range(CLASSES)]
    results = {}
    for name, pred in attacked.items():
        predictions = Predictions(*(torch.as_tensor(a) for a in (labels, clean, pred)))
        results[name] = {**summarize(predictions.classwise(CLASSES), names, {"name": name, "eps": 0.1}),
                         "predictions": encode(torch.as_tensor(pred))}
    (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in next(iter(results.values())).items()
                                                      if k != "predictions"}))
    if not with_eval:  # the final evaluation's counting is the cell's recipe's (a cell with eval.json records it)
        (run_dir / "recipe.toml").write_text('[eval]\ncounting = "any_iterate"\n')
    if with_eval:
        doc = {"format": 2, "checkpoint": "checkpoints/last.pt", "epoch": 1, "model": "m", "data": {"name": "d"},
               "split": "test", "n": 0, "images": len(labels), "seed": eval_seed, "eps": 0.1, "norm": "linf",
               "counting": "any_iterate", "precision": "fp32", "class_names": names, "robustbench": {},
               "labels": encode(torch.as_tensor(labels)), "clean_predictions": encode(torch.as_tensor(clean)),
               "attacks": results}
        (run_dir / "eval.json").write_text(json.dumps(merge_previous(doc, run_dir / "eval.json")))


def fill(study_dir: Path, effects: dict[str, float], seeds: list[int], attacks: tuple[str, ...] = ("pgd20",),
         eval_seed: dict[str, int] | None = None, with_eval: bool = True, rng_seed: int = 0) -> dict:
    """Write every cell: method m's robust accuracy is BASE + effects[m] on every class, with a seed shift
    and images hard for every model; returns {method: [robust correctness of each seed]} under the first attack."""
    rng = np.random.default_rng(rng_seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    hard = rng.normal(0, 0.8, labels.size)
    robust = {}
    for method, effect in effects.items():
        for seed in seeds:
            p = BASE + effect
            shift = rng.normal(0, 0.15)

            def draw(q: np.ndarray) -> np.ndarray:
                z = np.log(q / (1 - q))[labels] + shift - hard
                return rng.random(labels.size) < 1 / (1 + np.exp(-z))

            ok_clean = draw(np.minimum(p + 0.25, 0.95))
            clean = np.where(ok_clean, labels, (labels + 1) % CLASSES)
            attacked = {a: np.where(draw(p) & ok_clean, labels, (labels + 2) % CLASSES) for a in attacks}
            robust.setdefault(method, []).append(attacked[attacks[0]] == labels)
            write_cell(study_dir / "runs" / f"{method}-s{seed}", labels, clean, attacked,
                       (eval_seed or {}).get(method, 0), with_eval)
    return robust


def table_of(doc: dict, attack: str = "pgd20") -> dict:
    return doc["blocks"][0]["attacks"][attack]


def test_rows_get_intervals_fairness_metrics_and_paired_differences(tmp_path):
    study = load_study(write_study(tmp_path, seeds="[0, 1, 2, 3, 4]"))
    robust = fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.15, "frl": 0.0}, [0, 1, 2, 3, 4])
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    assert doc["format"] == 2 and doc["statistics"]["seed"] == FAST.seed and doc["statistics"]["alpha"] == 0.05
    assert "Holm" in doc["statistics"]["correction"] and "paired t test" in doc["statistics"]["test"]
    table = table_of(doc)
    trades, dafa, frl = table["rows"]
    for row in table["rows"]:
        for column in ("clean_avg", "clean_worst", "robust_avg", "robust_worst", "robust_worst_k", "robust_std",
                       "robust_nsd"):
            cell = row[column]
            assert cell["low"] <= cell["high"] and cell["n"] == 5 and cell["reason"] is None, (column, cell)
        assert row["robust_avg"]["low"] < row["robust_avg"]["mean"] < row["robust_avg"]["high"]
        assert all(c["robust"]["low"] <= c["robust"]["mean"] <= c["robust"]["high"] for c in row["per_class"])
    # the worst-k of each seed, averaged: the statistics package's definition, in percent
    acc = np.array([[r[np.repeat(np.arange(CLASSES), PER_CLASS) == c].mean() for c in range(CLASSES)]
                    for r in robust["dafa"]])
    assert dafa["robust_worst_k"]["mean"] == pytest.approx(100 * worst_k(acc, 3).mean())
    assert trades["versus_baseline"] is None
    # the same numbers as the statistics package on the same arrays, paired by seed and by image
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    direct = compare(robust, labels, "trades", resamples=FAST.resamples, seed=FAST.seed)
    for method, row in (("dafa", dafa), ("frl", frl)):
        versus = row["versus_baseline"]
        d = direct.rows[method]["worst_class"]
        assert versus["robust_worst"]["p_adjusted"] == pytest.approx(d.p_adjusted)
        assert versus["robust_worst"]["difference"] == pytest.approx(100 * d.difference)
        assert versus["robust_avg"]["difference"] == pytest.approx(
            row["robust_avg"]["mean"] - trades["robust_avg"]["mean"], abs=1e-4)  # summary.json is float32
        assert versus["rho_rob"]["difference"] == pytest.approx(row["rho_rob"])
        for cell in versus.values():
            assert cell["significant"] == (cell["p_adjusted"] is not None and cell["p_adjusted"] < 0.05)
            assert cell["p_adjusted"] >= cell["p_value"] and cell["seeds"] == 5
    assert dafa["versus_baseline"]["robust_worst"]["significant"]  # +15 points on every class, 5 seeds
    assert not frl["versus_baseline"]["robust_worst"]["significant"]  # the baseline's own distribution
    assert "paired by seed and test image" in table["caption"] and "Holm" in table["caption"]
    power = table["power"]
    assert power["sd"] == pytest.approx(trades["robust_worst"]["std"] / 100) and power["seeds"] == 5
    assert power["images_per_class"] == PER_CLASS and "80% power" in power["sentence"]


def test_the_tables_mark_significant_differences_and_name_the_test(tmp_path):
    study = load_study(write_study(tmp_path, seeds="[0, 1, 2, 3, 4]"))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.15, "frl": 0.0}, [0, 1, 2, 3, 4])
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    text = markdown(doc)
    dafa_row = next(line for line in text.splitlines() if line.startswith("| dafa |"))
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d \[\d+\.\d, \d+\.\d\] †", dafa_row), dafa_row
    assert "### Differences from trades" in text and "α = 0.05" in text and "Holm" in text
    diff_row = [line for line in text.splitlines() if line.startswith("| dafa |")][1]
    assert re.search(r"[+-]\d+\.\d\d \[[+-]\d+\.\d, [+-]\d+\.\d\] p([=<])0\.\d+ †", diff_row), diff_row
    assert "Power: with 5 seeds" in text
    tex = latex(doc)
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 2
    assert tex.count("{") == tex.count("}") and "\\textbf{" in tex and "$^\\dagger$" in tex
    assert "$\\alpha$ = 0.05" in tex and "Holm" in tex and "±" not in tex and "†" not in tex
    rows = csv_text(doc).splitlines()
    header = rows[0].split(",")
    assert header[:6] == ["block", "attack", "method", "seeds", "images", "clean_avg_mean"]
    dafa = dict(zip(header, rows[2].split(",")))
    assert dafa["robust_worst_significant"] == "true" and float(dafa["robust_worst_p_adjusted"]) < 0.05
    assert float(dafa["robust_worst_low"]) <= float(dafa["robust_worst_high"])
    assert dict(zip(header, rows[1].split(",")))["robust_worst_p"] == ""  # the baseline is not tested


def test_one_seed_says_it_cannot_test_instead_of_printing_a_p_value(tmp_path):
    study = load_study(write_study(tmp_path, seeds="[0]"))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.15, "frl": 0.0}, [0])
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    table = table_of(doc)
    dafa = table["rows"][1]
    assert dafa["robust_worst"]["std"] is None and dafa["robust_worst"]["reason"].startswith("one seed")
    assert dafa["robust_worst"]["low"] is not None  # the test images' interval, flagged
    versus = dafa["versus_baseline"]["robust_worst"]
    assert versus["p_value"] is None and not versus["significant"] and versus["reason"].startswith("one seed")
    assert "no test" in table["caption"]
    assert "no difference can be detected (one seed)" in table["power"]["sentence"]
    text = markdown(doc)
    differences = text[text.index("### Differences"):]
    assert "one seed: no test" in differences and "p=" not in differences and "†" not in text.split("###")[0][-800:]


def test_study_json_is_the_same_text_between_reruns(tmp_path):
    study = load_study(write_study(tmp_path, evaluate='["pgd20", "fgsm"]'))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.1, "frl": 0.0}, [0, 1, 2], attacks=("pgd20", "fgsm"))
    write_tables(aggregate(study, tmp_path / "out", settings=FAST), tmp_path / "out")
    first = (tmp_path / "out" / "study.json").read_text()
    write_tables(aggregate(study, tmp_path / "out", settings=FAST), tmp_path / "out")
    assert (tmp_path / "out" / "study.json").read_text() == first
    doc = json.loads(first)
    assert list(doc["blocks"][0]["attacks"]) == ["pgd20", "fgsm", "worst_case"]
    assert table_of(doc, "worst_case")["rows"][1]["versus_baseline"]["robust_worst"]["p_value"] is not None


def test_cells_on_other_images_pair_by_seed_and_unfinished_cells_by_common_seeds(tmp_path):
    study = load_study(write_study(tmp_path))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.1, "frl": 0.0}, [0, 1, 2], eval_seed={"dafa": 1})
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    assert "paired by seed (the runs saw different test images)" in table_of(doc)["caption"]

    (tmp_path / "out" / "runs" / "frl-s2" / "summary.json").unlink()  # frl-s2 unfinished
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    frl = table_of(doc)["rows"][2]
    assert frl["seeds"] == [0, 1] and frl["versus_baseline"]["robust_worst"]["seeds"] == 2
    assert table_of(doc)["rows"][1]["versus_baseline"]["robust_worst"]["seeds"] == 3
    assert "on the seeds both have" in table_of(doc)["caption"]

    for seed in range(3):  # no finished baseline: intervals, but nothing to compare with and no power
        (tmp_path / "out" / "runs" / f"trades-s{seed}" / "summary.json").unlink()
    table = table_of(aggregate(study, tmp_path / "out", settings=FAST))
    assert table["caption"] == "no test: the baseline trades has no finished cell to compare with"
    assert table["power"] is None and table["rows"][1]["robust_worst"]["low"] is not None
    assert all(row["versus_baseline"] is None for row in table["rows"])


def test_a_study_without_evaluate_pairs_its_summary_counts_by_seed(tmp_path):
    study = load_study(write_study(tmp_path, evaluate="[]"))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.1, "frl": 0.0}, [0, 1, 2], with_eval=False)
    table = table_of(aggregate(study, tmp_path / "out", settings=FAST), "final")
    assert "per-class counts only" in table["caption"] and "different test images" not in table["caption"]
    assert table["rows"][1]["versus_baseline"]["robust_avg"]["p_value"] is not None


def test_plan_seeds_sizes_the_study_from_its_baseline_cells(tmp_path):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    result = invoke("study", path, "--plan-seeds", "2.0", "--out", out)
    assert result.exit_code == 0 and "--plan-sd POINTS" in result.stdout and not out.exists()

    fill(out / "study", {"trades": 0.0}, [0, 1, 2])
    worst = [json.loads((out / "study" / "runs" / f"trades-s{s}" / "eval.json").read_text())["attacks"]["pgd20"]
             ["worst_class_robust_accuracy"] for s in range(3)]
    sd = float(np.std(worst, ddof=1))
    result = invoke("study", path, "--plan-seeds", "2.0", "--out", out)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("- pgd20"))
    assert f"difference of {100 * minimum_detectable_difference(3, sd):.1f} points" in line
    assert f"2.0 points would need {seeds_needed(0.02, sd)} seeds" in line and "3 finished trades cells" in line
    assert not (out / "study" / "study.json").exists()  # runs nothing, writes nothing

    result = invoke("study", path, "--plan-seeds", "2", "--plan-sd", "1.19", "--out", out)
    assert f"2.0 points would need {seeds_needed(0.02, 0.0119)} seeds" in result.stdout
    for args, fragment in ((["--plan-seeds", "0"], "--plan-seeds 0: expected a positive"),
                           (["--plan-seeds", "-1"], "--plan-seeds -1: expected a positive"),
                           (["--plan-sd", "1"], "--plan-sd needs --plan-seeds")):
        result = invoke("study", path, *args, "--out", out)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and fragment in lines[0], result.output


def test_a_p_value_just_under_alpha_does_not_print_as_alpha():
    assert [p_text(p) for p in (0.93, 0.0496, 0.00455, 0.0004)] == ["p=0.93", "p=0.0496", "p=0.0046", "p<0.001"]


def test_tex_text_escapes_what_a_name_may_hold():
    assert tex_text("a_b & 50% #1 {x} ~ ^ \\") == ("a\\_b \\& 50\\% \\#1 \\{x\\} \\textasciitilde{} "
                                                    "\\textasciicircum{} \\textbackslash{}")
    assert tex_text("1.0 ± 0.5, α = 0.05, p<0.001 †") == "1.0 $\\pm$ 0.5, $\\alpha$ = 0.05, p$<$0.001 $^\\dagger$"
    assert tex_text("[-6.9, +2.2] -0.004 CIFAR-10 seed-to-seed") == "[$-$6.9, +2.2] $-$0.004 CIFAR-10 seed-to-seed"


def test_a_baseline_worst_class_stuck_at_zero_gives_no_power_estimate_instead_of_an_error():
    """A real study after a few epochs: every seed's worst class at 0 % (no spread to size a test from)."""
    power = design_power(3, 20, 10, worst=0.0, std=0.0)
    assert power == {"sentence": power["sentence"]} and power["sentence"].startswith("no power estimate")
    assert design_power(3, 20, 10, worst=0.2, std=0.0)["sd_source"].startswith("a binomial model")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
def test_table_tex_compiles_with_booktabs(tmp_path):
    study = load_study(write_study(tmp_path, methods=("trades", "dafa", "frl_v2")))
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.15, "frl_v2": -0.05}, [0, 1, 2])
    (tmp_path / "table.tex").write_text(latex(aggregate(study, tmp_path / "out", settings=FAST)))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage[margin=2cm]{geometry}"
                                      "\\usepackage{booktabs}\\begin{document}\\input{table.tex}\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_tables_use_labels_the_attack_s_name_and_flag_cells_at_chance(tmp_path):
    study_file = write_study(tmp_path, methods=("trades", "dafa", "frl"))
    study_file.write_text(study_file.read_text().replace("[methods.dafa]\n", '[methods.dafa]\nlabel = "+ DAFA"\n'))
    study = load_study(study_file)
    fill(tmp_path / "out", {"trades": 0.0, "dafa": 0.15}, [0, 1, 2])  # frl has no finished cell: undefined values
    summary = tmp_path / "out" / "runs" / "dafa-s1" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "at_chance": True}))
    doc = aggregate(study, tmp_path / "out", settings=FAST)
    dafa = table_of(doc)["rows"][1]
    assert (dafa["label"], dafa["at_chance"], doc["labels"]["trades"]) == ("+ DAFA", [1], "trades")
    text = markdown(doc)
    assert "## PGD-20," in text and "| + DAFA ‡ |" in text and "| frl | – |" in text
    assert "‡: at chance level" in text and "+ DAFA (seed 1)" in text
    tex = latex(doc)
    assert "\\label{tab:study-pgd20}" in tex and "\\label{tab:study-pgd20-differences}" in tex
    assert "\\caption{PGD-20," in tex and "from trades (PGD-20)" in tex
    assert "pgd20" not in re.sub(r"\\label{[^}]*}", "", tex)
    assert "$\\rho_{\\mathrm{nat}}$ & $\\rho_{\\mathrm{rob}}$" in tex and "\\rho_{nat}" not in tex
    assert "+ DAFA $^\\ddagger$ &" in tex and "frl & -- & -- &" in tex and "–" not in tex
    header, _, row = csv_text(doc).splitlines()[:3]
    assert header.endswith(",label,at_chance_seeds") and row.endswith(",+ DAFA,1")
