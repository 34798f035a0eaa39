"""Recipes: TOML files parsed into frozen attrs classes, validated before anything is built.

One attrs class per table. A component table (``[attack]``, ``[strategy]``, ...) names a registered component with
``name`` and sets that component's hyperparameters, which are the component's own attrs fields (or factory keyword
arguments): the schema is never written twice. Every problem is one line that names the file (or the ``--set``
that caused it), the ``table.key``, the bad value and what was expected.
"""

from __future__ import annotations

import math
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal

import attrs
import tomli_w

from fairadv.errors import FairadvError, closest
from fairadv.registry import (ATTACKS, DATASETS, MODELS, OBJECTIVES, OPTIMIZERS, SCHEDULES, STRATEGIES, Param,
                              Registry, signature_params)
from fairadv.validators import InvalidValue, between, ge, gt, one_of

MAX_SEED = 2**32 - 1  # NumPy's seed range; the per-epoch seed, seed * 1,000,003 + epoch, then fits torch's int64

# --- plain tables --------------------------------------------------------------------------------------------------


@attrs.frozen
class RunConfig:
    """``[run]``: where the run goes and how it is seeded.

    Attributes:
        name: run folder name under ``out``; defaults to the recipe file's stem. A name, not a path: no ``/``,
            no ``\\``, not empty, ``.`` or ``..``.
        seed: seeds model initialisation, data order, augmentation and attack starts; an integer in
            [0, 2**32 - 1].
        out: output root folder (``--out`` overrides it).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    """

    name: str | None = attrs.field(default=None)
    seed: int = attrs.field(default=0, validator=between(0, MAX_SEED))
    out: str = "runs"
    device: str = attrs.field(default="auto")

    @name.validator
    def _check_name(self, attribute: attrs.Attribute, value: str | None) -> None:
        # The name becomes one folder inside --out: never a path that leaves it.
        if value is not None and (value in ("", ".", "..") or any(c in value for c in "/\\\0")):
            raise InvalidValue("name", value, "a folder name: not empty, not '.' or '..', without / or \\")

    @device.validator
    def _check_device(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in ("auto", "cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
            raise InvalidValue("device", value, "'auto', 'cpu', 'cuda' or 'cuda:N'")


@attrs.frozen
class TrainConfig:
    """``[train]``: the training loop.

    Attributes:
        epochs: number of epochs.
        batch_size: training batch size (global, over all processes).
        eval_every: also evaluate per-class robustness on the test split every N epochs (0: only at the end).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 with a gradient scaler on CUDA).
            Training attacks follow it; evaluation always runs in fp32. ``"auto"``: bf16 on CUDA GPUs that support
            it, else fp16 on CUDA, fp32 on the CPU.
        channels_last: NHWC memory layout for 4-D inputs and the model; unset (automatic) = on for CUDA, off on CPU.
        compile: wrap the training forward passes in ``torch.compile``; unset (automatic) = off, since compiling
            costs minutes that short runs never win back.
        fold_bn: in the training attack's eval-mode passes, fold each BatchNorm into the convolution before it
            (`fairadv.train.folding`): the same function, with no BatchNorm to run forward or backward in those K
            passes. Unset (automatic) = on with bf16/fp16, off in fp32 (which then stays the reference computation op
            for op) and with compile.
        sync_batchnorm: under torchrun with several processes, compute BatchNorm statistics over the global batch
            (SyncBatchNorm) instead of each process's share; ignored in a single process.
        best_by: with a validation split (``data.val_per_class``), ``checkpoints/best.pt`` keeps the epoch with the
            best validation robust accuracy under the evaluation attack, against robust overfitting:
            ``"average"`` (over classes, default) or ``"worst_class"``; ``"none"`` skips the validation pass.
    """

    epochs: int = attrs.field(default=10, validator=gt(0))
    batch_size: int = attrs.field(default=128, validator=gt(0))
    eval_every: int = attrs.field(default=0, validator=ge(0))
    precision: str = attrs.field(default="auto", validator=one_of(("auto", "fp32", "bf16", "fp16")))
    channels_last: bool | None = None
    compile: bool | None = None
    fold_bn: bool | None = None
    sync_batchnorm: bool = False
    best_by: str = attrs.field(default="average", validator=one_of(("average", "worst_class", "none")))

    def __attrs_post_init__(self) -> None:
        if self.fold_bn and self.compile:
            raise InvalidValue("fold_bn", self.fold_bn, "false or unset with compile = true (folding needs the eager "
                               "model; torch.compile fuses on its own)")


# --- component tables ----------------------------------------------------------------------------------------------


@attrs.frozen
class ComponentConfig:
    """A table that names a registered component and sets its hyperparameters (``params``, defaults filled in)."""

    name: str
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


@attrs.frozen
class DataConfig(ComponentConfig):
    """``[data]``: a registered data set plus how fairadv splits and loads it.

    Attributes:
        val_per_class: images per class held out of the training split for validation (FRL, CFA); 0 for none.
        holdout: which ``val_per_class`` images of each class are held out, counting in the data set's own order
            (torchvision's file order): ``"random"`` (default) a seeded draw; ``"first"`` the first ones of each
            class, as CFA's code (``generate_validation.py``, 100 per class); ``"last"`` the last ones, as FRL's and
            WAT's code (images 4,700-4,999 of each CIFAR-10 class, 300 per class).
        holdout_seed: seed of the ``"random"`` hold-out draw, fixed across runs so every run validates on the same
            images; unused by ``"first"`` and ``"last"``.
        num_workers: data-loader worker processes; -1 picks automatically (0 for in-memory sets).
    """

    val_per_class: int = attrs.field(default=0, validator=ge(0))
    holdout: str = attrs.field(default="random", validator=one_of(("random", "first", "last")))
    holdout_seed: int = attrs.field(default=0, validator=ge(0))
    num_workers: int = attrs.field(default=-1, validator=ge(-1))


@attrs.frozen
class ModelConfig(ComponentConfig):
    """``[model]``: a registered model (or ``timm:<name>``) plus where its starting weights come from.

    Attributes:
        init_from: start from these weights instead of a random initialisation: a run folder (its
            ``checkpoints/last.pt``) or a checkpoint / state-dict file. FRL fine-tunes an adversarially trained
            model this way.
    """

    init_from: str | None = None


@attrs.frozen
class EvalConfig:
    """``[eval]`` and ``[eval.attack]``: the final per-class robustness evaluation.

    Attributes:
        batch_size: evaluation batch size.
        n: evaluate a class-stratified subset of this many test images (0: the whole test split).
        counting: when a sample counts as robust: ``"any_iterate"`` (correct on the clean input and at every PGD
            iterate) or ``"last_iterate"`` (at the final iterate only: DAFA's ``eval_classwise``, FRL, CFA).
        attack: the evaluation attack; default PGD-20 at DAFA's settings (eps 0.031, step 0.003, uniform start).
    """

    batch_size: int = attrs.field(default=256, validator=gt(0))
    n: int = attrs.field(default=0, validator=ge(0))
    counting: str = attrs.field(default="any_iterate", validator=one_of(("any_iterate", "last_iterate")))
    attack: ComponentConfig = attrs.field(
        factory=lambda: ComponentConfig("pgd", {"eps": 0.031, "step_size": 0.003, "steps": 20,
                                                "random_start": "uniform", "loss": "ce"})
    )


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # [log] key -> module


@attrs.frozen
class WandbConfig:
    """``[log.wandb]``: log to Weights & Biases.

    Attributes:
        project: the W&B project.
        mode: ``"offline"`` (default: the run is written under ``<run folder>/wandb``; upload it later with
            ``wandb sync``) or ``"online"`` (needs ``wandb login`` and a network).
        entity: the W&B user or team; unset: your default entity.
        group: runs shown together; a study sets it to the study's name.
        tags: labels for filtering runs.
    """

    project: str = "fairadv"
    mode: str = attrs.field(default="offline", validator=one_of(("offline", "online")))
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


@attrs.frozen
class MlflowConfig:
    """``[log.mlflow]``: log to an MLflow tracking store.

    Attributes:
        tracking_uri: a file store (``"file:./mlruns"`` or a folder, relative to the working directory) or a
            tracking server (``"http://host:5000"``); unset: ``MLFLOW_TRACKING_URI``, else ``./mlruns``.
        experiment: the MLflow experiment the run goes into (created when missing).
        parent_run_id: the run this one is a child of; a study sets it to the study's own run.
    """

    tracking_uri: str | None = None
    experiment: str = "fairadv"
    parent_run_id: str | None = None


@attrs.frozen
class LogConfig:
    """``[log]``: experiment trackers, each optional and combinable. ``metrics.jsonl`` is always written and stays
    the source of truth; trackers receive the same values (see `fairadv.tracking`).

    Attributes:
        tensorboard: write TensorBoard event files to ``<run folder>/tensorboard``.
        wandb: a ``[log.wandb]`` table to log to Weights & Biases.
        mlflow: a ``[log.mlflow]`` table to log to MLflow.
    """

    tensorboard: bool = False
    wandb: WandbConfig | None = None
    mlflow: MlflowConfig | None = None

    def chosen(self) -> list[str]:
        """The trackers this table turns on, in the order they are opened."""
        return [key for key in TRACKER_PACKAGES if getattr(self, key) not in (None, False)]

    def missing_package(self) -> str | None:
        """The first chosen tracker whose package is not installed, as ``"log.<key>: ... pip install ..."``."""
        import importlib.util

        for key in self.chosen():
            if importlib.util.find_spec(TRACKER_PACKAGES[key]) is None:
                return f"log.{key}: the {TRACKER_PACKAGES[key]} package is not installed; pip install 'fairadv[{key}]'"
        return None


def component_registries() -> dict[str, Registry]:
    """Which registry each component table draws from (each imports its built-in components on first use)."""
    return {"data": DATASETS, "model": MODELS, "objective": OBJECTIVES, "attack": ATTACKS, "strategy": STRATEGIES,
            "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "eval.attack": ATTACKS}


_COMPONENT_DEFAULTS = {"objective": "trades", "attack": "pgd", "strategy": "uniform", "optimizer": "sgd",
                       "schedule": "bag_of_tricks"}


@attrs.frozen
class Recipe:
    """A whole experiment. Load with `Recipe.load`; every field is validated and resolved (defaults filled in)."""

    run: RunConfig
    data: DataConfig
    model: ModelConfig
    objective: ComponentConfig
    attack: ComponentConfig
    strategy: ComponentConfig
    optimizer: ComponentConfig
    schedule: ComponentConfig
    train: TrainConfig
    eval: EvalConfig
    log: LogConfig = attrs.field(factory=LogConfig)
    source: str = attrs.field(default="<recipe>", eq=False)

    @classmethod
    def load(cls, path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
        """Read, override (``"table.key=value"`` strings, values in TOML syntax) and validate a recipe file."""
        path = Path(path)
        raw = read_toml(path, "recipe")
        origins: dict[str, str] = {}
        for override in overrides:
            key = apply_override(raw, override)
            origins[key] = f"--set {override}"
        if "run" not in raw or "name" not in raw.get("run", {}):
            raw.setdefault("run", {})
            if isinstance(raw["run"], dict):
                raw["run"]["name"] = path.stem
        recipe = cls.from_dict(raw, source=str(path), origins=origins)
        missing = recipe.log.missing_package()
        if missing:  # checked when a recipe is read to run, not when a finished run's stored recipe is re-read
            raise _Loader(str(path), origins).fail(missing.split(":")[0], missing)
        return recipe

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<recipe>",
                  origins: Mapping[str, str] | None = None) -> Recipe:
        """Validate a nested dict (the parsed TOML) into a Recipe. ``origins`` maps ``table.key`` to what set it."""
        return _Loader(source, origins or {}).recipe(raw)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as nested dicts, ready for TOML (None values left out: TOML has no null)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(Recipe):
            if field.name != "source":
                out[field.name] = _table(getattr(self, field.name))
        return out

    def dump(self, path: str | Path) -> None:
        """Write the resolved recipe as TOML; `Recipe.load` of that file gives an equal recipe."""
        Path(path).write_text(self.to_toml())

    def to_toml(self) -> str:
        """The resolved recipe as TOML text (what `dump` writes)."""
        return tomli_w.dumps(self.to_dict())

    def override(self, *overrides: str) -> Recipe:
        """A copy with ``"table.key=value"`` overrides applied and validated again."""
        raw = self.to_dict()
        origins = {apply_override(raw, o): f"--set {o}" for o in overrides}
        return Recipe.from_dict(raw, source=self.source, origins=origins)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse the TOML file ``path`` (a ``what``: "recipe", "study"); any problem is one line naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FairadvError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FairadvError(f"{path}: cannot read {what} file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FairadvError(f"{path}: not valid TOML: {exc}") from None


def _table(value: Any) -> Any:
    if isinstance(value, ComponentConfig):
        extra = {f.name: getattr(value, f.name) for f in attrs.fields(type(value)) if f.name not in ("name", "params")}
        return _plain({"name": value.name, **extra, **value.params})
    if attrs.has(type(value)):
        return _plain({f.name: _table(getattr(value, f.name)) for f in attrs.fields(type(value))})
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def apply_override(raw: dict[str, Any], override: str) -> str:
    """Set ``a.b.c=value`` in ``raw`` (value parsed as TOML, else taken as a string); return ``"a.b.c"``."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(parts) or len(parts) < 2:
        raise FairadvError(f"--set {override!r}: expected table.key=value, e.g. --set train.epochs=5")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FairadvError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is a value, not a table")
    node[parts[-1]] = value
    return key


# --- validation ----------------------------------------------------------------------------------------------------


class _Loader:
    """Structures the parsed TOML into a Recipe, raising one-line FairadvErrors."""

    def __init__(self, source: str, origins: Mapping[str, str]):
        self.source = source
        self.origins = origins

    def fail(self, key: str, message: str) -> FairadvError:
        where = self.origins.get(key) or next(
            (o for k, o in self.origins.items() if key.startswith((k + ".", k + "["))), None)
        prefix = f"{self.source} ({where})" if where else self.source
        return FairadvError(f"{prefix}: {message}")

    def recipe(self, raw: Mapping[str, Any]) -> Recipe:
        tables = [f.name for f in attrs.fields(Recipe) if f.name != "source"]
        self.reject_unknown("", raw, tables)
        for key, value in _leaves(raw):  # everywhere, untyped keys (e.g. a timm model's) included
            if isinstance(value, float) and not math.isfinite(value):
                raise self.fail(key, f"{key} = {value!r}: expected a finite number")
        registries = component_registries()
        for required in ("data", "model"):
            if required not in raw:
                raise self.fail(required, f"missing table [{required}]; it needs at least name = \"...\"")
        built: dict[str, Any] = {
            "run": self.plain("run", raw.get("run", {}), RunConfig),
            "train": self.plain("train", raw.get("train", {}), TrainConfig),
        }
        for table in ("data", "model", "objective", "attack", "strategy", "optimizer", "schedule"):
            section_cls = {"data": DataConfig, "model": ModelConfig}.get(table, ComponentConfig)
            body = dict(self.as_table(table, raw.get(table, {})))
            body.setdefault("name", _COMPONENT_DEFAULTS.get(table))
            built[table] = self.component(table, body, registries[table], section_cls)
        eval_raw = dict(self.as_table("eval", raw.get("eval", {})))
        if "attack" in eval_raw and not isinstance(eval_raw["attack"], Mapping):
            raise self.fail("eval.attack", f"eval.attack = {eval_raw['attack']!r}: expected a table [eval.attack]")
        attack_raw = dict(self.as_table("eval.attack", eval_raw.pop("attack", None)
                                        or _table(EvalConfig().attack)))
        attack_raw.setdefault("name", "pgd")
        if attack_raw.get("stop_on_success") is True and eval_raw.get("counting") == "last_iterate":
            raise self.fail("eval.attack.stop_on_success", "eval.attack.stop_on_success = true stops at the first "
                            "fooling iterate, which eval.counting = 'last_iterate' does not count; remove it (the "
                            "counting convention sets it)")
        eval_attack = self.component("eval.attack", attack_raw, registries["eval.attack"], ComponentConfig)
        eval_config = self.plain("eval", eval_raw, EvalConfig, skip=("attack",))
        if "stop_on_success" in eval_attack.params:  # the counting convention decides it (see evaluation.classwise)
            eval_attack = attrs.evolve(eval_attack, params={**eval_attack.params,
                                                            "stop_on_success": eval_config.counting == "any_iterate"})
        built["eval"] = attrs.evolve(eval_config, attack=eval_attack)
        built["log"] = self.log_table(raw.get("log", {}))
        recipe = Recipe(**built, source=self.source)
        self.cross_check(recipe, registries)
        return recipe

    def log_table(self, body: Any) -> LogConfig:
        body = self.as_table("log", body)
        trackers = {key: self.plain(f"log.{key}", body[key], cls)
                    for key, cls in (("wandb", WandbConfig), ("mlflow", MlflowConfig)) if key in body}
        return attrs.evolve(self.plain("log", body, LogConfig, skip=tuple(trackers)), **trackers)

    def as_table(self, key: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"{key} = {value!r}: expected a table [{key}]")
        return value

    def reject_unknown(self, table: str, body: Mapping[str, Any], known: Iterable[str],
                       accepts_any: bool = False) -> None:
        known = list(known)
        for key in body:
            if key not in known and not accepts_any:
                dotted = f"{table}.{key}" if table else key
                what = "key" if table else "table"
                raise self.fail(dotted, f"unknown {what} {dotted}{closest(key, known)}; expected one of: "
                                        f"{', '.join(sorted(known))}")

    def plain(self, table: str, body: Any, cls: type, skip: tuple[str, ...] = ()) -> Any:
        body = self.as_table(table, body)
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in attrs.fields(cls) if f.name not in skip]
        self.reject_unknown(table, body, fields + list(skip))
        values = {k: self.typed(f"{table}.{k}", v, hints[k]) for k, v in body.items() if k not in skip}
        return self.construct(table, cls, values)

    def component(self, table: str, body: dict[str, Any], registry: Registry, section_cls: type) -> ComponentConfig:
        name = body.pop("name")
        if not isinstance(name, str):
            raise self.fail(f"{table}.name", f"{table}.name = {name!r}: expected a string naming a {registry.kind}")
        try:
            target = registry.get(name)
        except FairadvError as exc:
            raise self.fail(f"{table}.name", f"{table}.name = {name!r}: {exc}") from None
        section_hints = typing.get_type_hints(section_cls)
        section_keys = [f.name for f in attrs.fields(section_cls) if f.name not in ("name", "params")]
        section_values = {k: self.typed(f"{table}.{k}", body.pop(k), section_hints[k])
                          for k in section_keys if k in body}
        params = [p for p in signature_params(target) if p.name not in registry.injected]
        known = [p.name for p in params] + section_keys
        if f"{table}.name" in self.origins:
            # `--set strategy.name=uniform` switches the component: the file's settings for the one it replaces
            # do not apply. Keys given with --set are still checked.
            body = {k: v for k, v in body.items() if k in known or f"{table}.{k}" in self.origins}
        self.reject_unknown(table, body, known, accepts_any=_takes_var_kwargs(target))
        hints = _type_hints(target)
        resolved: dict[str, Any] = {}
        for p in params:
            if p.name in body:
                resolved[p.name] = self.typed(f"{table}.{p.name}", body.pop(p.name), hints.get(p.name, Any))
            elif p.default is Param.REQUIRED:
                raise self.fail(f"{table}.{p.name}", f"missing key {table}.{p.name} (required by {registry.kind} "
                                                     f"{name!r})")
            else:
                resolved[p.name] = p.default
        resolved.update(body)  # only reaches here for factories taking **kwargs (e.g. timm models)
        if attrs.has(target):
            self.construct(table, target, resolved)  # run the component's own validators now
        return self.construct(table, section_cls, {"name": name, "params": resolved, **section_values})

    def construct(self, table: str, cls: type, values: dict[str, Any]) -> Any:
        try:
            return cls(**values)
        except InvalidValue as exc:
            raise self.fail(f"{table}.{exc.key}", f"{table}.{exc}") from None
        except (ValueError, TypeError) as exc:
            raise self.fail(table, f"[{table}]: {exc}") from None

    def typed(self, key: str, value: Any, hint: Any) -> Any:
        try:
            return coerce(value, hint)
        except TypeError as exc:
            raise self.fail(key, f"{key} = {value!r}: expected {exc}") from None

    def cross_check(self, recipe: Recipe, registries: Mapping[str, Registry]) -> None:
        strategy = registries["strategy"].create(recipe.strategy.name, **recipe.strategy.params)
        try:
            strategy.check_recipe(recipe)
        except InvalidValue as exc:
            raise self.fail(f"strategy.{exc.key}", f"strategy.{exc}") from None
        except ValueError as exc:
            raise self.fail("strategy", f"[strategy]: {exc}") from None


def _leaves(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every value in nested tables and lists."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _takes_var_kwargs(target: Any) -> bool:
    import inspect

    if attrs.has(target):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


def _type_hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations are then not type-checked
        return {}


def coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` as type ``hint`` (int -> float, list -> tuple), or raise TypeError describing ``hint``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (UnionType, typing.Union):
        if value is None and NoneType in args:
            return None
        for arg in args:
            if arg is NoneType:
                continue
            try:
                return coerce(value, arg)
            except TypeError:
                pass
        raise TypeError(" or ".join(describe(a) for a in args if a is not NoneType))
    if origin is Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return value
        raise TypeError(describe(hint))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(describe(hint))
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TypeError(describe(hint))
            items = [coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [coerce(v, args[0]) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError("a table")
        return dict(value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise TypeError("a finite number")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("an integer")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if isinstance(hint, type) and hint.__module__ == "builtins" and not isinstance(value, hint):
        raise TypeError(describe(hint))
    return value


def describe(hint: Any) -> str:
    """A readable name for a type hint, for error messages."""
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string", NoneType: "nothing"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if args and args[-1] is not Ellipsis and origin is tuple:
            return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0]) if args else 'values'}"
    if origin in (UnionType, typing.Union):
        return " or ".join(describe(a) for a in args if a is not NoneType)
    return getattr(hint, "__name__", str(hint))


__all__ = ["ComponentConfig", "DataConfig", "EvalConfig", "LogConfig", "MlflowConfig", "ModelConfig", "Recipe", "RunConfig",
           "TrainConfig", "WandbConfig", "apply_override", "coerce", "describe"]
