"""The recipe's tables: one frozen attrs class per TOML table, with its keys' defaults and validators.

A component table (``[attack]``, ``[strategy]``, ...) is a `fairadv.schema.ComponentConfig`: it names the registry
it draws from and its default component; the component's hyperparameters are that component's own attrs fields (or
factory keyword arguments). `fairadv.schema.Loader` reads a recipe file into these classes; `fairadv.recipe.Recipe`
is the whole file.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from fairadv.registry import ATTACKS, DATASETS, MODELS, OBJECTIVES, OPTIMIZERS, SCHEDULES, STRATEGIES, Registry
from fairadv.schema import ComponentConfig
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
        compile: ``torch.compile`` the training passes and the training attack's passes, each compiled once
            (`fairadv.train.compiled`); on CUDA the attack's passes also run as CUDA graphs. ``true``, ``false``, or
            ``"auto"`` / unset: on for a CUDA run of at least 10 epochs; off on the CPU and for shorter runs, where
            compiling costs more than it saves.
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
    compile: bool | Literal["auto"] | None = None
    fold_bn: bool | None = None
    sync_batchnorm: bool = False
    best_by: str = attrs.field(default="average", validator=one_of(("average", "worst_class", "none")))

    def __attrs_post_init__(self) -> None:
        if self.fold_bn and self.compile is True:
            raise InvalidValue("fold_bn", self.fold_bn, "false or unset with compile = true (folding needs the eager "
                               "model; torch.compile fuses on its own)")


# --- component tables ----------------------------------------------------------------------------------------------


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

    registry: ClassVar[Registry] = DATASETS
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

    registry: ClassVar[Registry] = MODELS
    init_from: str | None = None


@attrs.frozen
class TeacherConfig:
    """``[teacher]``: the frozen model a distillation objective (``rslad``) trains the model towards.

    Give either ``path`` or a ``[teacher.model]`` table.

    Attributes:
        path: a fairadv run folder or checkpoint file; its architecture comes from the recipe stored in it.
        checkpoint: which checkpoint of a run folder ``path``: ``"last"`` or ``"best"``.
        model: the teacher as a model table: a registered name, ``timm:<name>`` or ``robustbench:<name>`` (which
            loads its own weights), with its keys, and ``init_from`` for weights from a state-dict file.
    """

    path: str | None = None
    checkpoint: str = attrs.field(default="last", validator=one_of(("last", "best")))
    model: ModelConfig | None = None

    def __attrs_post_init__(self) -> None:
        if (self.path is None) == (self.model is None):
            raise InvalidValue("path", self.path, "either path (a run folder or checkpoint) or a [teacher.model] "
                               "table, not both and not neither")


@attrs.frozen
class ObjectiveConfig(ComponentConfig):
    """``[objective]``: the training loss (default TRADES)."""

    registry: ClassVar[Registry] = OBJECTIVES
    name: str = "trades"


@attrs.frozen
class AttackConfig(ComponentConfig):
    """``[attack]`` and ``[eval.attack]``: an attack (default PGD)."""

    registry: ClassVar[Registry] = ATTACKS
    name: str = "pgd"


@attrs.frozen
class StrategyConfig(ComponentConfig):
    """``[strategy]``: the fairness strategy (default ``uniform``: plain adversarial training)."""

    registry: ClassVar[Registry] = STRATEGIES
    name: str = "uniform"


@attrs.frozen
class OptimizerConfig(ComponentConfig):
    """``[optimizer]``: the optimizer (default SGD)."""

    registry: ClassVar[Registry] = OPTIMIZERS
    name: str = "sgd"


@attrs.frozen
class ScheduleConfig(ComponentConfig):
    """``[schedule]``: the learning-rate schedule (default DAFA's code default)."""

    registry: ClassVar[Registry] = SCHEDULES
    name: str = "bag_of_tricks"


@attrs.frozen
class EvalConfig:
    """``[eval]`` and ``[eval.attack]``: the final per-class robustness evaluation.

    Attributes:
        batch_size: evaluation batch size.
        n: evaluate a class-stratified subset of this many test images (0: the whole test split).
        counting: when a sample counts as robust: ``"any_iterate"`` (correct on the clean input and at every PGD
            iterate) or ``"last_iterate"`` (at the final iterate only: DAFA's ``eval_classwise``, FRL, CFA).
        attack: the evaluation attack; default PGD-20 at DAFA's settings (eps 0.031, step 0.003, uniform start).
            ``counting`` decides its ``stop_on_success`` where it has one (true under ``any_iterate``: the same
            counts, less work), as `fairadv.evaluation.classwise.counted` does for every evaluation attack; the
            resolved recipe records the value that runs.
    """

    batch_size: int = attrs.field(default=256, validator=gt(0))
    n: int = attrs.field(default=0, validator=ge(0))
    counting: str = attrs.field(default="any_iterate", validator=one_of(("any_iterate", "last_iterate")))
    attack: AttackConfig = attrs.field(
        factory=lambda: AttackConfig(name="pgd", params={"eps": 0.031, "step_size": 0.003, "steps": 20,
                                                         "random_start": "uniform", "loss": "ce"})
    )

    def __attrs_post_init__(self) -> None:
        if "stop_on_success" not in self.attack.params:
            return
        if self.attack.params["stop_on_success"] is True and self.counting == "last_iterate":
            raise InvalidValue("attack.stop_on_success", True,
                               "false or unset with eval.counting = 'last_iterate', which counts the last iterate that "
                               "stopping at the first fooling one skips (the counting convention sets it)")
        stops = self.counting == "any_iterate"
        # attrs' documented way to set a field of a frozen instance while it is being initialised
        object.__setattr__(self, "attack", attrs.evolve(self.attack, params={**self.attack.params,
                                                                             "stop_on_success": stops}))


@attrs.frozen
class TrackerSpec:
    """A tracker ``[log]`` can choose: the package it needs (the extra ``fairadv[<key>]`` installs it) and the class
    that logs to it, ``"module:Class"``, which `fairadv.tracking` imports only when the tracker is chosen."""

    package: str
    implementation: str


# The one list of trackers: [log] key -> spec, in the order they are opened; LogConfig has a field for each.
TRACKERS = {
    "tensorboard": TrackerSpec("tensorboard", "fairadv.tracking.tensorboard_tracker:TensorBoardTracker"),
    "wandb": TrackerSpec("wandb", "fairadv.tracking.wandb_tracker:WandbTracker"),
    "mlflow": TrackerSpec("mlflow", "fairadv.tracking.mlflow_tracker:MlflowTracker"),
}


def _a_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    """A tracker's project or experiment: a blank one fails inside the tracker's client, in the client's words."""
    if isinstance(value, str) and not value.strip():
        raise InvalidValue(attribute.name, value, "a non-empty name")


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

    project: str = attrs.field(default="fairadv", validator=_a_name)
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
    experiment: str = attrs.field(default="fairadv", validator=_a_name)
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
        return [key for key in TRACKERS if getattr(self, key) not in (None, False)]

    def missing_tracker(self) -> str | None:
        """The first chosen tracker (its ``[log]`` key) whose package is not installed."""
        import importlib.util

        return next((key for key in self.chosen() if importlib.util.find_spec(TRACKERS[key].package) is None), None)

    def missing_package(self) -> str | None:
        """The first chosen tracker whose package is not installed, as ``"log.<key>: ... pip install ..."``."""
        key = self.missing_tracker()
        if key is None:
            return None
        return f"log.{key}: the {TRACKERS[key].package} package is not installed; pip install 'fairadv[{key}]'"
