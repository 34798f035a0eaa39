"""RobustBench's model zoo (https://robustbench.github.io) as ``model = "robustbench:<name>"``.

``[model] name = "robustbench:Carmon2019Unlabeled"`` (keys ``dataset``, ``threat_model``, ``model_dir``) builds the
zoo model through robustbench's own ``load_model``, so every special case robustbench handles stays robustbench's:
weights from ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` (robustbench's layout), downloaded there when missing
and online. Zoo models take [0, 1] images and normalise inside themselves.

One shim: robustbench 1.1.1 imports the module ``autoattack`` (the name of the GitHub install of the original
AutoAttack), while PyPI's ``pyautoattack``, the dependency robustbench declares, installs it as ``pyautoattack``; the
one is aliased to the other before robustbench is imported. robustbench is an optional extra
(``pip install 'fairadv[robustbench]'``), imported on first use.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from fairadv.checkpoint import load_failure
from fairadv.errors import FairadvError, closest
from fairadv.models.base import MODELS
from fairadv.models.timm_adapter import import_timm

MISSING_EXTRA = "RobustBench models need the optional extra: pip install 'fairadv[robustbench]'"
# RobustBench's leaderboard radii (its README and eval.py): 8/255 L-inf and 0.5 L2 on CIFAR, 4/255 L-inf on ImageNet.
DEFAULT_EPS = {("cifar10", "Linf"): "8/255", ("cifar100", "Linf"): "8/255", ("imagenet", "Linf"): "4/255",
               ("cifar10", "L2"): "0.5", ("cifar100", "L2"): "0.5"}


def import_robustbench() -> Any:
    """The robustbench package (after the ``autoattack`` alias), or a one-line `FairadvError`."""
    try:
        import pyautoattack
        import pyautoattack.state
    except ImportError:
        raise FairadvError(MISSING_EXTRA) from None
    sys.modules.setdefault("autoattack", pyautoattack)
    sys.modules.setdefault("autoattack.state", pyautoattack.state)
    try:
        with warnings.catch_warnings():  # its own import-time notices (pkg_resources, timm's old module paths)
            warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"Importing from timm\.", category=DeprecationWarning)
            import_timm()
            import robustbench
            import robustbench.data
            import robustbench.utils
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise FairadvError("robustbench 1.1.1 needs pkg_resources, which setuptools 81 removed: "
                               "pip install 'setuptools<81'") from None
        if exc.name == "robustbench":
            raise FairadvError(MISSING_EXTRA) from None
        raise
    return robustbench


def weights_path(name: str, dataset: str, threat_model: str, model_dir: str | Path) -> Path:
    """Where robustbench keeps (and looks for) the weights of zoo model ``name``."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def _enums(dataset: str, threat_model: str) -> tuple[Any, Any]:
    import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return _member(BenchmarkDataset, dataset, "data set"), _member(ThreatModel, threat_model, "threat model")


def _member(enum: Any, value: str, what: str) -> Any:
    """``enum(value)``, or a one-line error listing the values RobustBench knows."""
    try:
        return enum(value)
    except ValueError:
        names = [m.value for m in enum]
        raise FairadvError(f"RobustBench has no {what} {value!r}{closest(value, names)}; expected one of "
                           f"{', '.join(names)}") from None


def zoo_entry(name: str, dataset: str = "cifar10", threat_model: str = "Linf") -> dict[str, Any]:
    """The zoo's entry for ``name`` (``model``: its constructor); an unknown name is a one-line error."""
    data, threat = _enums(dataset, threat_model)
    from robustbench.model_zoo.models import model_dicts

    models = model_dicts.get(data, {}).get(threat, {})
    if name not in models:
        raise FairadvError(f"RobustBench's zoo has no {dataset} {threat_model} model {name!r}"
                           f"{closest(name, list(models))}; it has {len(models)} for that data set and threat model")
    return models[name]


def zoo_names(dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
    """Every zoo model of ``dataset`` and ``threat_model``, in robustbench's order (a leaderboard's ``all``)."""
    data, threat = _enums(dataset, threat_model)
    from robustbench.model_zoo.models import model_dicts

    return list(model_dicts.get(data, {}).get(threat, {}))


def load_zoo_model(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                   model_dir: str | Path = "models") -> nn.Module:
    """Zoo model ``name`` with its weights, in eval mode on the CPU, through robustbench's ``load_model``."""
    entry = zoo_entry(name, dataset, threat_model)
    robustbench = import_robustbench()
    path = weights_path(name, dataset, threat_model, model_dir)
    parts = [Path(f"{path}_m{i}.pt") for i in range(len(entry["gdrive_id"]))] if isinstance(
        entry.get("gdrive_id"), list) else [path]
    missing = next((p for p in parts if not p.is_file()), None)
    try:
        return robustbench.utils.load_model(name, model_dir=str(model_dir), dataset=dataset,
                                            threat_model=threat_model).eval()
    except FairadvError:
        raise
    except Exception as exc:  # noqa: BLE001 - download, unpickling and state-dict errors are all the user's to fix
        raise zoo_load_error(name, parts, missing, exc) from None


def zoo_load_error(name: str, parts: list[Path], missing: Path | None, exc: Exception) -> FairadvError:
    """Why robustbench could not load ``name``'s weights ``parts``, in one line that never passes on torch's advice
    to load with ``weights_only=False`` (which would run whatever a damaged or hostile file holds)."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    if missing is not None:
        return FairadvError(
            f"robustbench:{name}: weights not in {missing} and the download failed ({type(exc).__name__}: "
            f"{first}); on a machine without internet put the file there (robustbench's layout: "
            f"<model_dir>/<dataset>/<threat_model>/<name>.pt)")
    if "weights_only" in str(exc):  # torch's unpickler refused the file: say why, in fairadv's words
        reasons = {load_failure(part, exc) for part in parts}
        return FairadvError(f"robustbench:{name}: {', '.join(map(str, parts))} does not load: "
                            f"{'; '.join(sorted(reasons))}; delete it to download it again")
    return FairadvError(f"robustbench:{name}: {', '.join(map(str, parts))} does not load ({type(exc).__name__}: "
                        f"{first})")


def input_transform(name: str, dataset: str = "cifar10", threat_model: str = "Linf") -> Callable[[Any], Any]:
    """The zoo's preprocessing for ``name`` (``ToTensor`` for CIFAR; a resize and crop for ImageNet)."""
    data, threat = _enums(dataset, threat_model)
    from robustbench.data import get_preprocessing

    return get_preprocessing(data, threat, name, None)


def listed_accuracy(name: str, dataset: str, threat_model: str,
                    model_info_dir: str | Path = "model_info") -> dict[str, Any] | None:
    """RobustBench's leaderboard figures for ``name`` from ``<model_info_dir>/<dataset>/<threat_model>/<name>.json``
    (the RobustBench repository's ``model_info`` folder, which the PyPI wheel does not ship); None when absent."""
    path = Path(model_info_dir) / dataset / threat_model / f"{name}.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        clean = float(info["clean_acc"])
        robust = info.get("autoattack_acc")
        return {"clean_acc": clean, "autoattack_acc": None if robust in (None, "") else float(robust),
                "eps": None if info.get("eps") is None else str(info["eps"]), "source": str(path)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FairadvError(f"{path}: not a RobustBench model_info file ({type(exc).__name__}: {exc})") from None


def make_robustbench_factory(name: str) -> Callable[..., nn.Module]:
    """The model factory for zoo model ``name``."""

    def factory(num_classes: int, in_channels: int, input_size: tuple[int, int], dataset: str = "cifar10",
                threat_model: str = "Linf", model_dir: str = "models") -> nn.Module:
        model = load_zoo_model(name, dataset, threat_model, model_dir)
        import torch

        with torch.no_grad():
            classes = model(torch.zeros(1, in_channels, *input_size)).shape[1]
        if classes != num_classes:
            raise FairadvError(f"robustbench:{name} ({dataset}) predicts {classes} classes; the data have "
                               f"{num_classes}")
        return model

    factory.__name__ = factory.__qualname__ = f"robustbench_{name.replace('-', '_')}"
    factory.__doc__ = (f"RobustBench's zoo model {name!r} with its weights (dataset, threat_model: the zoo's; "
                       "model_dir: robustbench's layout).")
    return factory


MODELS.register_prefix("robustbench", make_robustbench_factory)
