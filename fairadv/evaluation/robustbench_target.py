"""``fairadv eval robustbench:<name>``: a RobustBench zoo model as an evaluation target, audited per class.

The model is the zoo's (`fairadv.models.robustbench_adapter`: robustbench's own loader, weights from ``--model-dir``
in robustbench's layout, downloaded there when missing and online). Its inputs go through the zoo's preprocessing
(for CIFAR: ``ToTensor``, [0, 1] images; the models normalise inside). The radius is RobustBench's for the threat
model (8/255 L-inf, 0.5 L2) unless ``--eps`` is given, and RobustBench's own figures are shown beside fairadv's when
a leaderboard file for the model is found (``--model-info``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fairadv.errors import FairadvError
from fairadv.evaluation.presets import STEP_RATIO, parse_eps

# The zoo's data sets fairadv reads (in torchvision's layout under --data-root); RobustBench's ImageNet is a fixed
# 5,000-image subset of the validation set that fairadv does not build.
ZOO_DATA = ("cifar10", "cifar100")
NORMS = {"Linf": "linf", "L2": "l2"}


def load_zoo_target(name: str, device: torch.device, dataset: str = "cifar10", threat_model: str = "Linf",
                    model_dir: str = "models", data_root: str = "data", model_info: str = "model_info",
                    overrides: Sequence[str] = ()) -> Any:
    """The `Target` for zoo model ``name``: model, a recipe for its data, and RobustBench's fields for eval.json."""
    from fairadv.build import build_model, build_source
    from fairadv.evaluation.target import Target
    from fairadv.models.robustbench_adapter import (
        DEFAULT_EPS,
        input_transform,
        listed_accuracy,
        weights_path,
        zoo_entry,
    )
    from fairadv.recipe import Recipe
    from fairadv.run_folder import eval_file_for

    if dataset not in ZOO_DATA:
        raise FairadvError(f"--dataset {dataset!r}: fairadv audits RobustBench models on {', '.join(ZOO_DATA)}")
    if threat_model not in NORMS:
        raise FairadvError(f"--threat-model {threat_model!r}: expected one of {', '.join(NORMS)}")
    zoo_entry(name, dataset, threat_model)  # an unknown name fails before any data or weights are read
    eps_text = DEFAULT_EPS[(dataset, threat_model)]
    radius, _ = parse_eps(eps_text)
    raw = {
        "run": {"name": f"robustbench-{name}"},
        "data": {"name": dataset, "root": data_root, "augment": False},
        "model": {"name": f"robustbench:{name}", "dataset": dataset, "threat_model": threat_model,
                  "model_dir": model_dir},
        "eval": {"attack": {"name": "pgd", "eps": radius, "step_size": radius * STEP_RATIO, "steps": 20,
                            "norm": NORMS[threat_model], "random_start": "uniform", "loss": "ce"}},
    }
    recipe = Recipe.from_dict(raw, source=f"robustbench:{name}")
    if overrides:
        recipe = recipe.override(*overrides)
    source = build_source(recipe)
    names = tuple(str(c) for c in source.class_names)
    model = build_model(recipe, len(names), tuple(int(s) for s in source.input_shape))  # type: ignore[arg-type]
    weights = weights_path(name, dataset, threat_model, model_dir)
    fields = {"model": name, "dataset": dataset, "threat_model": threat_model, "eps": eps_text,
              "listed": listed_accuracy(name, dataset, threat_model, model_info)}
    return Target(model.float().to(device).eval(), recipe, weights, eval_file_for(weights), None, names,
                  test_transform=input_transform(name, dataset, threat_model), robustbench=fields)
