"""``fairadv eval``: per-class clean and robust accuracy of a run or a checkpoint under named attacks.

Conventions (docs/evaluation.md): the model is evaluated in fp32 and eval mode whatever precision training used;
inputs are [0, 1] images; a sample is robust under the ``counting`` convention of `fairadv.evaluation.classwise`
(the recipe's ``eval.counting`` unless ``--counting`` says otherwise). Results go to ``eval.json`` beside the run,
with a worst case over the attacks run on the same images.

The attacks are the presets of `fairadv.evaluation.presets`; ``robustbench:<name>`` targets a RobustBench zoo model
(`fairadv.evaluation.robustbench_target`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.table import Table

from fairadv.build import build_dataset, build_model, build_source, select_device
from fairadv.errors import FairadvError
from fairadv.evaluation.attack_definition import recipe_threat
from fairadv.evaluation.eval_file import (FORMAT_VERSION, WORST_CASE, attack_label, check_previous, merge_previous,
                                          setup_label)
from fairadv.evaluation.eval_options import EvalOptions
from fairadv.evaluation.metrics import CLEAN_AVG, CLEAN_WORST, ROBUST_AVG, ROBUST_STD, ROBUST_WORST
from fairadv.evaluation.presets import Preset, make_preset, parse_eps
from fairadv.evaluation.target import Target
from fairadv import files
from fairadv.files import write_atomic
from fairadv.recipe import Recipe
from fairadv.run_folder import EVAL
from fairadv.seeding import seed_everything
from fairadv.trained import Trained, load_trained

log = logging.getLogger(__name__)


def load_target(path: str | Path, recipe_path: str | None = None, model_name: str | None = None,
                device: torch.device | None = None, checkpoint_name: str = "last",
                overrides: Sequence[str] = ()) -> Target:
    """Load a run folder's last (or ``best``) checkpoint or a checkpoint file, fairadv's or a bare state dict;
    ``overrides`` (``"table.key=value"``) change the recipe as ``fairadv run --set`` does.

    A fairadv checkpoint carries its recipe; ``recipe_path`` then replaces only its ``[data]`` table. A bare state
    dict (e.g. a published CIFAR ResNet, keys ``conv1``, ``bn1``, ``layer1``..., ``linear``, with or without
    DataParallel's ``module.`` prefix) needs ``recipe_path`` for the data and the model, or ``model_name``.
    """
    trained = load_trained(path, checkpoint_name)
    recipe = _target_recipe(trained, recipe_path, model_name, overrides)
    source = build_source(recipe)
    names = tuple(str(n) for n in source.class_names)
    shape = tuple(int(s) for s in source.input_shape)
    if "model_spec" in trained.state and trained.recipe is not None:
        fitted = trained.spec[:2]
        if fitted != (len(names), shape):
            raise FairadvError(f"{trained.file}: the model was trained for {fitted[0]} classes of {fitted[1]} inputs; "
                               f"data {recipe.data.name!r} has {len(names)} classes of {shape}")
    model = trained.load_into(build_model(recipe, len(names), shape), recipe.model.name)  # type: ignore[arg-type]
    model = model.float().to(device or torch.device("cpu")).eval()
    return Target(model, recipe, trained.file, trained.eval_file, trained.epoch, names)


def _target_recipe(trained: Trained, recipe_path: str | None, model_name: str | None,
                   overrides: Sequence[str]) -> Recipe:
    """The checkpoint's recipe, its ``[data]`` from ``recipe_path`` and its model ``model_name`` if given; a bare
    state dict takes the whole recipe from ``recipe_path``."""
    saved = trained.recipe
    user = Recipe.load(recipe_path) if recipe_path else None
    if saved is None and user is None:
        raise FairadvError(f"{trained.file}: the checkpoint carries no recipe (not a fairadv run); pass --recipe "
                           "R.toml for its data set (and its [model], or --model NAME)")
    raw = saved if saved is not None else user.to_dict()  # type: ignore[union-attr]
    if saved is not None and user is not None:
        raw["data"] = user.to_dict()["data"]
    if model_name:
        keep = raw.get("model", {}).get("name") == model_name
        raw["model"] = raw["model"] if keep else {"name": model_name}
    recipe = Recipe.from_dict(raw, source=str(recipe_path or trained.file))
    return recipe.override(*overrides) if overrides else recipe


def evaluate_target(target: Target, presets: Sequence[Preset], n: int = 0, batch_size: int | None = None,
                    seed: int = 0, device: torch.device | None = None, console: Console | None = None,
                    counting: str = "any_iterate") -> dict[str, Any]:
    """Evaluate ``target`` on its test split (a class-stratified ``n``-image subset if ``n``) under each preset.

    Every attack starts from the same seeded state, so its numbers do not depend on which other attacks ran.
    Returns the ``eval.json`` document (one setup; `merge_previous` adds the worst case over attacks).
    """
    from fairadv.data.base import TransformedDataset
    from fairadv.data.loader import make_loader, stratified_subset
    from fairadv.evaluation.classwise import predict
    from fairadv.evaluation.eval_file import encode
    from fairadv.evaluation.summary import summarize

    device = device or torch.device("cpu")
    recipe = target.recipe
    if target.test_transform is not None:
        full = TransformedDataset(build_source(recipe).test, None, target.test_transform)
    else:
        full = build_dataset(recipe, "test")
    if n >= len(full):  # said, not silently clamped: the setup is then the whole split
        if console is not None:
            console.print(f"--n {n} is not below the {len(full)} test images: evaluating all of them", highlight=False)
        n = 0
    dataset = stratified_subset(full, n, seed)
    if n and len(dataset) != n and console is not None:
        console.print(f"--n {n}: a class-stratified subset of {len(dataset)} images (as many per class as n allows)",
                      highlight=False)
    loader = make_loader(dataset, batch_size or recipe.eval.batch_size, device, shuffle=False,
                         num_workers=recipe.data.num_workers)
    c = len(target.class_names)
    results: dict[str, Any] = {}
    labels = clean = None
    show = None if console is None else (lambda line: console.print(line, highlight=False))
    for preset in presets:
        if show is not None:
            show(f"evaluating {preset.name} on {len(dataset)} images ...")
        seed_everything(seed)
        tic = time.perf_counter()
        with torch.autocast(device.type, enabled=False):  # fp32, whatever the caller's autocast state
            predictions = predict(target.model, loader, preset.attack, device, counting,  # type: ignore[arg-type]
                                  progress=show)
        seconds = time.perf_counter() - tic
        result = predictions.classwise(c, counting)  # type: ignore[arg-type]
        labels, clean = encode(predictions.labels), encode(predictions.clean)
        summary = summarize(result, target.class_names, preset.info)
        summary["clean_accuracy_std"] = float(result.clean_accuracy.std(unbiased=False))
        summary["confusion"] = result.confusion.tolist()
        summary["seconds"] = round(seconds, 3)
        summary["images_per_s"] = round(len(dataset) / max(seconds, 1e-9), 1)
        summary["predictions"] = encode(predictions.attacked)
        results[preset.name] = summary
    eps = next((float(p.info["eps"]) for p in presets if "eps" in p.info), None)
    return {
        "format": FORMAT_VERSION,
        "checkpoint": os.path.relpath(target.checkpoint.resolve(), target.out.parent.resolve()),
        "epoch": target.epoch,
        "model": recipe.model.name,
        "data": {"name": recipe.data.name, **recipe.data.params},
        "split": "test",
        "n": n,
        "images": len(dataset),
        "seed": seed,
        "eps": eps,
        "norm": next((str(p.info["norm"]) for p in presets if "norm" in p.info), "linf"),
        "counting": counting,
        "precision": "fp32",
        "class_names": list(target.class_names),
        "robustbench": dict(target.robustbench or {}),
        "labels": labels,
        "clean_predictions": clean,
        "attacks": results,
    }


def eval_table(doc: Mapping[str, Any], names: Sequence[str] | None = None) -> Table:
    """Per-class clean accuracy and robust accuracy under each attack, then average, worst class and spread, each
    with its 95 % interval (the caption says which; compact, whole points, beyond three columns of numbers)."""
    from fairadv.evaluation.run_statistics import result_intervals
    from fairadv.evaluation.summary import class_cell, intervals_caption, metric_cell

    attacks = doc["attacks"] if names is None else {k: doc["attacks"][k] for k in names if k in doc["attacks"]}
    first = next(iter(attacks.values()))
    intervals = {name: result_intervals(a) for name, a in attacks.items()}
    compact = len(attacks) > 2  # three columns of numbers fit 100 characters with full intervals, five compact
    counting = str(doc.get("counting", "any_iterate")).replace("_", " ")
    title = (f"{doc['model']} on {doc['data']['name']} ({doc['images']} test images, eps {doc['eps']:g}, "
             f"{doc['norm']}, {counting}, fp32)" if doc.get("eps") is not None
             else f"{doc['model']} on {doc['data']['name']}")
    table = Table(title=title, title_justify="left", caption=intervals_caption(next(iter(intervals.values())), True),
                  caption_justify="left")
    table.add_column("class", no_wrap=True)  # index and name in one column: a column less to fit
    table.add_column("clean %", justify="right")
    for name in attacks:
        table.add_column(f"{attack_label(name)} %", justify="right")
    base = intervals[next(iter(attacks))]
    worst = {name: a["worst_class"] for name, a in attacks.items()}
    for i, row in enumerate(first["per_class"]):
        cells = [class_cell(a["per_class"][i]["robust"], intervals[name], "robust", i, compact)
                 for name, a in attacks.items()]
        cells = [f"[bold red]{cell}[/]" if worst[name] == i else cell for cell, name in zip(cells, attacks)]
        label = str(row["name"]) if str(row["name"]) == str(row["class"]) else f"{row['class']} {row['name']}"
        table.add_row(label, class_cell(row["clean"], base, "clean", i, compact), *cells)
    table.add_section()
    for label, statistic, clean_key, robust_key in SUMMARY_ROWS:
        robust = [metric_cell(float(a.get(robust_key, 0.0)), intervals[name], "robust", statistic, compact)
                  for name, a in attacks.items()]
        if statistic == "worst_class" and not compact:  # compact: the red cells and the lines below name it
            robust = [f"{cell} ({a['worst_class_name']})" for cell, a in zip(robust, attacks.values())]
        table.add_row(label, metric_cell(float(first.get(clean_key, 0.0)), base, "clean", statistic, compact),
                      *robust, style="bold" if statistic == "worst_class" else None)
    return table


# The rows under the classes: label, statistic (`fairadv.statistics.METRIC_FUNCTIONS`), clean key, robust key.
SUMMARY_ROWS = (("average", "average", CLEAN_AVG.key, ROBUST_AVG.key),
                ("worst class", "worst_class", CLEAN_WORST.key, ROBUST_WORST.key),
                ("std across classes", "class_std", "clean_accuracy_std", ROBUST_STD.key))


def print_eval(doc: Mapping[str, Any], console: Console, names: Sequence[str] | None = None) -> None:
    """The table, how often each class is the worst one where that is not clear-cut, then each attack's worst class
    and what it is mistaken for, then RobustBench's figures."""
    from fairadv.evaluation.summary import worst_class_lines

    shown = None if names is None else [*names, WORST_CASE]
    console.print(eval_table(doc, shown))
    first = True
    for name, result in doc["attacks"].items():
        if shown is not None and name not in shown:
            continue
        for line in worst_class_lines(result, ("clean", "robust") if first else ("robust",)):
            console.print(line if line.startswith("clean") else f"{attack_label(name)}: {line}", highlight=False)
        first = False
    for name, result in doc["attacks"].items():
        if shown is not None and name not in shown:
            continue
        confusions = result.get("worst_class_confusions") or []
        text = ", ".join(f"{c['name']} ({100 * c['rate']:.1f}%)" for c in confusions) or "nothing (never fooled)"
        of = f" (robust only if {', '.join(result['attack']['of'])} all failed)" if name == WORST_CASE else ""
        console.print(f"{attack_label(name)}{of}: worst class [bold]{result['worst_class_name']}[/] is mistaken for "
                      f"{text}; {result['seconds']:.1f}s ({result['images_per_s']:.0f} img/s)", highlight=False)
    bench = doc.get("robustbench") or {}
    if bench.get("model"):
        ours = f"clean {bench.get('clean_acc')} %" + (f", AutoAttack {bench['autoattack_acc']} %"
                                                       if "autoattack_acc" in bench else "")
        listed = bench.get("listed")
        theirs = (f"; RobustBench lists clean {listed['clean_acc']} %, AutoAttack {listed['autoattack_acc']} % "
                  f"(on its full test set)" if listed else "; RobustBench's own figures: none found (--model-info)")
        console.print(f"RobustBench {bench['model']} ({bench.get('dataset')}, {bench.get('threat_model')}, eps "
                      f"{bench.get('eps')}), per image: {ours}{theirs}", highlight=False)


def eval_radius(given: float | str | None, target: Target) -> tuple[float, str]:
    """The attack radius and its text as written: ``--eps`` if given, else RobustBench's for a zoo model (e.g.
    ``8/255``), else the recipe's ``eval.attack`` eps (`DEFAULT_EPS` when it sets none)."""
    if given is not None:
        return parse_eps(given)
    if target.robustbench and "eps" in target.robustbench:
        return parse_eps(target.robustbench["eps"])
    radius = recipe_threat(target.recipe)[0]
    return radius, f"{radius:g}"


def run_eval(options: EvalOptions, console: Console | None = None, progress: Console | None = None) -> dict[str, Any]:
    """What ``fairadv eval`` does: load the target, evaluate, print, write ``eval.json`` (atomically).

    ``options`` were checked when they were made; the target, its data and where the results go are checked here,
    before the first attack runs. Nothing is written unless evaluation succeeds.
    """
    device = select_device(options.device)
    if options.is_zoo:
        from fairadv.evaluation.robustbench_target import load_zoo_target

        target = load_zoo_target(options.zoo_name, device, overrides=options.overrides, **options.zoo)
    else:
        target = load_target(options.target, options.recipe_path, options.model_name, device, options.checkpoint,
                             options.overrides)
    radius, eps_text = eval_radius(options.eps, target)
    norm = recipe_threat(target.recipe)[1]
    counting = options.counting or target.recipe.eval.counting
    threat = {"split": "test", "eps": radius, "norm": norm, "counting": counting}
    base = _checked_baseline(options.baseline, target, threat)
    presets = [make_preset(name, radius, norm, options.seed, target.recipe, counting) for name in options.attacks]
    if base is not None:
        from fairadv.evaluation.report_baseline import check_baseline_attacks

        check_baseline_attacks(base, threat, presets, str(target.out))
    target = attrs.evolve(target, robustbench={**(target.robustbench or {}), "eps": eps_text},
                          out=Path(options.out) if options.out else target.out)
    check_writable(target.out)
    check_previous(target.out)
    doc = evaluate_target(target, presets, n=options.n, batch_size=options.batch_size, seed=options.seed,
                          device=device, console=progress, counting=counting)
    doc = merge_previous(doc, target.out)
    try:
        write_atomic(target.out, json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise FairadvError(f"{target.out}: cannot write: {exc.strerror or exc}") from None
    if console is not None:
        print_eval(doc, console, options.attacks)
    if base is not None and console is not None:
        from fairadv.evaluation.report_baseline import evaluation_rows, rho_table

        rows = evaluation_rows(doc["evaluations"][-1], target.out, base)
        console.print(rho_table(rows, base.path) if rows else
                      f"no rho against {base.path}: its {EVAL} has none of these attacks under this threat model",
                      highlight=False)
    if progress is not None:
        others = len(doc["evaluations"]) - 1
        kept = f" (and {others} earlier setup{'s' * (others != 1)})" if others else ""
        progress.print(f"wrote {target.out}: {setup_label(doc)}{kept}", highlight=False)
    return doc


def _checked_baseline(path: str | None, target: Target, threat: Mapping[str, Any]) -> Any:
    """The ``--baseline`` run's results, refused before any attack runs when its classes or threat model differ."""
    if path is None:
        return None
    from fairadv.evaluation.report_baseline import check_baseline_has, check_classes
    from fairadv.evaluation.run_results import load_run

    base = load_run(path)
    check_classes(list(target.class_names), target.out, base)
    check_baseline_has(base, threat, str(target.out))
    return base


def check_writable(out: Path) -> None:
    """Can ``out`` be written? Found out before any attack runs, not after every one has."""
    if out.is_dir():
        raise FairadvError(f"{out}: is a folder; expected the path of the JSON file to write the results to")
    if not out.parent.is_dir():
        raise FairadvError(f"{out}: its folder does not exist")
    files.check_writable(out.parent)
