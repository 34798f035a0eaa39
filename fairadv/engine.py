"""The training engine: one `Trainer` that fits a recipe, checkpoints every epoch and evaluates per class.

The loop, top to bottom (nanoGPT-sized on purpose):

    for epoch:
        strategy.on_epoch_start        -> maybe a new ClassPolicy
        for batch: objective(model, x, y, attack, policy) -> loss; step; stats.update(logits already computed)
        strategy.on_epoch_end(stats)   -> maybe a new ClassPolicy (applies from the next epoch)
        metrics.jsonl, policy.jsonl, checkpoints/last.pt (atomic)
    final per-class evaluation -> summary.json

Reproducibility: every epoch reseeds the global RNGs and the shuffling generator from (seed, epoch), so an
interrupted run resumed from its last checkpoint replays the remaining epochs exactly as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fairadv.attacks.base import eval_mode
from fairadv.build import (build_component, build_dataset, build_model, build_source, dataset_labels, make_loader,
                           named_errors,
                           select_device, subset_per_class)
from fairadv.checkpoint import FORMAT_VERSION, load_checkpoint, load_state_dict_file, save_atomic, write_text_atomic
from fairadv.distributed import all_reduce_sum, barrier, init_from_env, local_batch_size, wrap_model
from fairadv.errors import FairadvError
from fairadv.evaluation import ClasswiseResult, evaluate
from fairadv.optim import OPTIMIZERS
from fairadv.policy import ClassPolicy
from fairadv.precision import resolve_speed
from fairadv.recipe import Recipe
from fairadv.report import print_summary, summarize
from fairadv.stats import ClassStats, EpochStats
from fairadv.strategies.base import EpochContext

log = logging.getLogger(__name__)

TIMING_KEY = "timing"  # wall-clock figures in metrics.jsonl: the only values that differ between identical runs


class NumericalError(FairadvError):
    """Training produced a non-finite loss or policy; the last good checkpoint is kept."""

    exit_code = 3


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return seed * 1_000_003 + epoch


class Trainer:
    """Fits ``recipe`` into ``out/<run.name>``; `fit` returns the summary dict.

    Everything that can be wrong with the input (data, components, run folder, checkpoint) is checked in the
    constructor, before any file is written.
    """

    def __init__(self, recipe: Recipe, out: str | Path | None = None, resume: bool = False,
                 progress: bool = True, console: Console | None = None):
        self.recipe = recipe
        self.console = console or Console(stderr=True)
        self.dist = init_from_env(recipe.run.device)
        self.show_progress = progress and self.dist.is_main
        self.device = select_device(recipe.run.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        source = build_source(recipe)
        self.class_names = tuple(source.class_names)
        self.num_classes = len(self.class_names)
        self.input_shape = tuple(source.input_shape)
        self.train_set = build_dataset(recipe, "train")
        self.test_set = build_dataset(recipe, "test")
        self.val_set = build_dataset(recipe, "val") if recipe.data.val_per_class else None

        seed_everything(recipe.run.seed)
        self.model = build_model(recipe, self.num_classes, self.input_shape)
        if recipe.model.init_from and not resume:
            self._load_initial_weights(recipe.model.init_from)
        if self.dist.enabled and recipe.train.sync_batchnorm:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.speed = resolve_speed(self.device, recipe.train.precision, recipe.train.channels_last,
                                   recipe.train.compile, recipe.train.fold_bn)
        if self.speed.warning and self.dist.is_main:
            log.warning(self.speed.warning)
        # What the training step calls: maybe compiled, maybe wrapped in DDP; it shares self.model's parameters.
        self.train_model = wrap_model(self.speed.prepare_model(self.model), self.dist, self.device)
        self.local_batch = local_batch_size(recipe.train.batch_size, self.dist)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.speed.needs_scaler)
        self.attack = build_component("attack", recipe.attack)
        self.objective = build_component("objective", recipe.objective)
        self.strategy = build_component("strategy", recipe.strategy)
        self.eval_attack = build_component("eval.attack", recipe.eval.attack)
        with named_errors(recipe, "optimizer"):
            self.optimizer = OPTIMIZERS.create(recipe.optimizer.name, params=self.model.parameters(),
                                               **recipe.optimizer.params)
        self.schedule = build_component("schedule", recipe.schedule)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.stats = ClassStats(self.num_classes, self.device)
        self.policy = self._checked_policy(lambda: self.strategy.on_fit_start(self.num_classes), epoch=0)
        self.start_epoch = 1

        self.run_dir = Path(out if out is not None else recipe.run.out) / str(recipe.run.name)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        if resume:
            self._restore()
        elif self.run_dir.exists() and any(p.is_file() and not _is_temporary(p) for p in self.run_dir.rglob("*")):
            raise FairadvError(f"{self.run_dir}: run folder already exists; continue it with --resume, or choose "
                               "another name with --set run.name=... or another --out")
        barrier()  # every process has checked the run folder before rank 0 writes to it

    # --- the loop ---------------------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluate on the test split, write ``summary.json``; return the summary."""
        self._prepare_run_dir()
        epochs = self.recipe.train.epochs
        speed = self.speed.describe(self.train_model)
        log.info("training: %s", speed)
        if self.show_progress:
            self.console.print(f"fairadv: {speed}; run folder {self.run_dir}", highlight=False,
                               soft_wrap=True)
        with self._progress() as progress:
            for epoch in range(self.start_epoch, epochs + 1):
                self._run_epoch(epoch, progress)
        summary = self.final_evaluation()
        if self.dist.is_main:
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            self._write_plots(summary)
        if self.show_progress:
            print_summary(summary, self.console)
            self.console.print(f"run folder: {self.run_dir}")
        return summary

    def _run_epoch(self, epoch: int, progress: Progress | None) -> None:
        recipe = self.recipe
        seed_everything(epoch_seed(recipe.run.seed, epoch))
        factor = self.schedule.factor(epoch, recipe.train.epochs)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        ctx = EpochContext(epoch=epoch, num_epochs=recipe.train.epochs, num_classes=self.num_classes,
                           policy=self.policy, model=self.model, evaluate=self.evaluate_validation,
                           measure=self.measure_train_stats, batches=self.batches)
        started = self._checked_policy(lambda: self.strategy.on_epoch_start(ctx), epoch)
        if started is not None:
            self._set_policy(started, epoch, applies_from=epoch)

        tic = time.perf_counter()
        loss, seen = self._train_epoch(epoch, progress)
        seconds = time.perf_counter() - tic
        all_reduce_sum(*self.stats.sums())  # every rank's strategy sees the whole epoch
        stats = self.stats.compute()
        ended = self._checked_policy(
            lambda: self.strategy.on_epoch_end(attrs.evolve(ctx, stats=stats, policy=self.policy)), epoch)

        metrics: dict[str, Any] = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": loss,
            "train_clean_accuracy": None if stats.clean_accuracy is None else float(stats.clean_accuracy.mean()),
            "train_robust_accuracy": float(stats.robust_accuracy.mean()),
        }
        every = recipe.train.eval_every
        if every and epoch % every == 0 and epoch < recipe.train.epochs:
            summary = summarize(self.evaluate_test(), self.class_names, self._attack_info())
            metrics.update(test_clean_accuracy=summary["clean_accuracy"],
                           test_robust_accuracy=summary["robust_accuracy"],
                           test_worst_class_robust_accuracy=summary["worst_class_robust_accuracy"])
        metrics[TIMING_KEY] = {"seconds": round(seconds, 3), "images_per_s": round(seen / max(seconds, 1e-9), 1)}
        if ended is not None:
            self._set_policy(ended, epoch, applies_from=epoch + 1)
        self._append_jsonl("metrics.jsonl", metrics)
        self._save_checkpoint(epoch)
        if self.show_progress:
            self.console.print(_epoch_line(metrics, recipe.train.epochs), highlight=False, soft_wrap=True)

    def _train_epoch(self, epoch: int, progress: Progress | None) -> tuple[float, int]:
        """One pass over the training data; returns (mean loss, images seen)."""
        recipe, device = self.recipe, self.device
        generator = torch.Generator().manual_seed(epoch_seed(recipe.run.seed, epoch))
        loader = make_loader(self.train_set, self.local_batch, device, shuffle=True,
                             num_workers=recipe.data.num_workers, generator=generator, rank=self.dist.rank,
                             world_size=self.dist.world_size)
        policy = self.policy.to(device)
        self.model.train()
        self.stats.reset()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        seen, tic, last_refresh = 0, time.perf_counter(), 0.0
        task = progress.add_task("train", total=len(loader), epoch=f"{epoch}/{recipe.train.epochs}", loss="-",
                                 ips="-") if progress is not None else None
        for batch, (x, y) in enumerate(loader):
            x, y = self.speed.prepare_input(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with self.speed.autocast():
                out = self.objective(self.train_model, x, y, self.attack, policy)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.stats.update(y, out.logits_adv, out.logits_clean)
            loss = out.loss.detach()
            # Remember the first non-finite batch on the device: no host sync in the step.
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), batch, first_bad)
            loss_sum += loss.double() * len(y)
            seen += len(y)
            now = time.perf_counter()
            if now - last_refresh > 0.5 or batch == len(loader) - 1:
                last_refresh = now
                self._check_finite(first_bad, epoch)
                if progress is not None:
                    progress.update(task, completed=batch + 1, loss=f"{float(loss_sum) / seen:.4f}",
                                    ips=f"{seen / (now - tic):.0f}")
        if progress is not None:
            progress.remove_task(task)
        self._check_finite(first_bad, epoch)
        totals = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=device)])
        all_reduce_sum(totals)
        return float(totals[0] / totals[1].clamp_min(1)), int(totals[1])

    def _check_finite(self, first_bad: torch.Tensor, epoch: int) -> None:
        bad = int(first_bad)
        if bad >= 0:
            kept = f"the last good checkpoint is {self.ckpt_path}" if self.ckpt_path.exists() else "no checkpoint yet"
            raise NumericalError(f"non-finite training loss at epoch {epoch}, batch {bad + 1}; stopping ({kept}); "
                                 "lower optimizer.lr or check the data")

    # --- evaluation -------------------------------------------------------------------------------------------------

    def _eval_loader(self, dataset: Any, n: int = 0) -> Any:
        if n:
            indices = subset_per_class(dataset_labels(dataset), n, seed=self.recipe.run.seed)
            dataset = torch.utils.data.Subset(dataset, indices.tolist()) if not isinstance(
                dataset, torch.utils.data.TensorDataset) else torch.utils.data.TensorDataset(
                *(t[indices] for t in dataset.tensors))
        return make_loader(dataset, self.recipe.eval.batch_size, self.device, shuffle=False,
                           num_workers=self.recipe.data.num_workers, rank=self.dist.rank,
                           world_size=self.dist.world_size)

    def _evaluate(self, model: torch.nn.Module, loader: Any, attack: Any) -> ClasswiseResult:
        """`evaluate` on this rank's shard, summed over ranks."""
        result = evaluate(model, loader, attack, self.num_classes, self.device)
        parts = [t.to(self.device) for t in attrs.astuple(result, recurse=False)]
        all_reduce_sum(*parts)
        return ClasswiseResult(*(t.cpu() for t in parts))

    def evaluated_model(self) -> torch.nn.Module:
        """The model that evaluations and reports use: the strategy's (e.g. a weight average) or the trained one."""
        return self.strategy.evaluation_model(self.model) or self.model

    def evaluate_test(self, attack: Any = None) -> ClasswiseResult:
        """Per-class clean and robust accuracy on the test split (``eval.n`` images, stratified, if set)."""
        seed_everything(self.recipe.run.seed)
        loader = self._eval_loader(self.test_set, self.recipe.eval.n)
        return self._evaluate(self.evaluated_model(), loader, attack or self.eval_attack)

    def evaluate_validation(self, attack: Any = None) -> ClasswiseResult:
        """Per-class clean and robust accuracy on the validation hold-out (strategies call this)."""
        if self.val_set is None:
            raise FairadvError(f"{self.recipe.source}: strategy {self.recipe.strategy.name!r} needs a validation "
                               "hold-out; set data.val_per_class")
        return self._evaluate(self.model, self._eval_loader(self.val_set), attack or self.eval_attack)

    def batches(self, split: str = "val", shard: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of a split on the device: ``"train"`` (un-augmented, hold-out excluded), ``"val"`` or
        ``"test"``, in a fixed order; every process sees the whole split unless ``shard``."""
        dataset = {"train": lambda: build_dataset(self.recipe, "train", augment=False),
                   "val": lambda: self.val_set if self.val_set is not None else build_dataset(self.recipe, "val"),
                   "test": lambda: self.test_set}[split]()
        ranks = (self.dist.rank, self.dist.world_size) if shard else (0, 1)
        loader = make_loader(dataset, self.recipe.eval.batch_size, self.device, shuffle=False,
                             num_workers=self.recipe.data.num_workers, rank=ranks[0], world_size=ranks[1])
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def measure_train_stats(self, features: bool = False) -> EpochStats:
        """Class statistics from an eval-mode pass over the un-augmented training split (for strategies).

        The adversarial examples are the objective's, under the current policy; ``features`` also collects the class
        means of ``model.forward_features`` on them.
        """
        if features and not hasattr(self.model, "forward_features"):
            raise FairadvError(f"model {self.recipe.model.name!r} has no forward_features(); the chosen distance "
                               "needs penultimate features")
        stats = ClassStats(self.num_classes, self.device)
        policy = self.policy.to(self.device)
        with eval_mode(self.model):
            for x, y in self.batches("train", shard=True):
                x_adv = self.objective.adversarial(self.model, x, y, self.attack, policy)
                with torch.no_grad():
                    feats = self.model.forward_features(x_adv) if features else None
                    logits_adv = self.model.forward_head(feats) if features else self.model(x_adv)
                    stats.update(y, logits_adv, self.model(x), feats)
        if features:
            all_reduce_sum(*stats.sums()[:5])
            all_reduce_sum(stats.feature_sum)  # allocated on every rank: each shard is non-empty
        else:
            all_reduce_sum(*stats.sums())
        return stats.compute()

    def final_evaluation(self) -> dict[str, Any]:
        return summarize(self.evaluate_test(), self.class_names, self._attack_info())

    def _write_plots(self, summary: dict[str, Any]) -> None:
        """Per-class accuracy bars, the confusion under attack, and the last epoch's class similarity (p_i(j))."""
        from fairadv.plots import plot_class_accuracy, plot_confusion, plot_similarity

        names = list(self.class_names)
        plot_class_accuracy(summary, self.run_dir / "class_accuracy.png")
        plot_confusion(summary["confusion_under_attack"], names, self.run_dir / "confusion_under_attack.png")
        plot_similarity(self.stats.compute().prob_matrix, names, self.run_dir / "class_similarity.png",
                        title="Class similarity p_i(j), last epoch")

    def _attack_info(self) -> dict[str, Any]:
        return {"name": self.recipe.eval.attack.name, **self.recipe.eval.attack.params}

    # --- policy -----------------------------------------------------------------------------------------------------

    def _checked_policy(self, hook: Any, epoch: int) -> ClassPolicy | None:
        """Run a strategy hook; validate a returned policy again on a private copy, so a strategy that mutates its
        tensors afterwards can never put a NaN into training, policy.jsonl or a checkpoint."""
        try:
            policy = hook()
            if policy is not None:
                policy = ClassPolicy.from_dict(policy.to_dict())
        except ValueError as exc:
            raise NumericalError(f"strategy {self.recipe.strategy.name!r} produced an invalid policy at epoch "
                                 f"{epoch}: {exc}") from None
        if policy is not None and policy.num_classes != self.num_classes:
            raise NumericalError(f"strategy {self.recipe.strategy.name!r} returned a policy for "
                                 f"{policy.num_classes} classes; the data has {self.num_classes}")
        return policy

    def _set_policy(self, policy: ClassPolicy, epoch: int, applies_from: int) -> None:
        self.policy = policy
        self._append_jsonl("policy.jsonl", {"epoch": epoch, "applies_from": applies_from, **policy.to_dict()})
        log.info("new class policy from epoch %d: %s", applies_from, policy.to_dict())
        if self.show_progress:
            self.console.print(self.policy_table(policy, applies_from))

    def policy_table(self, policy: ClassPolicy, applies_from: int) -> Table:
        """The per-class weights and radii of ``policy`` as a rich table."""
        table = Table(title=f"class policy from epoch {applies_from}", title_justify="left")
        for column in ("class", "CE weight", "KL weight", "eps", "beta scale"):
            table.add_column(column, justify="right")
        eps = self.attack.eps * policy.eps_scale
        for i, name in enumerate(self.class_names):
            table.add_row(name, f"{policy.ce_weight[i]:.4f}", f"{policy.kl_weight[i]:.4f}", f"{eps[i]:.4f}",
                          f"{policy.beta_scale[i]:.4f}")
        return table

    # --- files ------------------------------------------------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        if self.start_epoch > 1 or not self.dist.is_main:
            return
        try:
            # recipe.toml first: a run killed right after this is a folder that --resume can start over in.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "recipe.toml", self.recipe.to_toml())
            (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise FairadvError(f"{self.run_dir}: cannot write the run folder: {exc.strerror or exc}") from None
        self._append_jsonl("policy.jsonl", {"epoch": 0, "applies_from": 1, **self.policy.to_dict()})

    def _append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / name, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _save_checkpoint(self, epoch: int) -> None:
        if not self.dist.is_main:
            return
        state = {
            "format": FORMAT_VERSION,
            "epoch": epoch,
            "recipe": self.recipe.to_toml(),
            "model_spec": {"num_classes": self.num_classes, "input_shape": list(self.input_shape),
                           "class_names": list(self.class_names)},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "policy": self.policy.to_dict(),
            "stats": self.stats.state_dict(),
        }
        reported = self.strategy.evaluation_model(self.model)
        if reported is not None:  # only strategies that keep a separate model (weight averaging) pay for a copy
            state["eval_model"] = reported.state_dict()
        save_atomic(state, self.ckpt_path)

    def _load_initial_weights(self, source: str) -> None:
        path = Path(source)
        ckpt = path / "checkpoints" / "last.pt" if path.is_dir() else path
        state = load_state_dict_file(ckpt)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise FairadvError(f"{self.recipe.source}: model.init_from = {source!r}: weights do not fit model "
                               f"{self.recipe.model.name!r}: {first}") from None

    def _restore(self) -> None:
        """Load the last checkpoint of an existing run and trim logs written after it."""
        recipe_file = self.run_dir / "recipe.toml"
        if self.dist.is_main and self.run_dir.exists():  # an atomic write cut short by a kill leaves a temporary file
            for stale in filter(_is_temporary, self.run_dir.rglob("*")):
                stale.unlink(missing_ok=True)
        if not self.ckpt_path.exists():
            if not recipe_file.exists():
                raise FairadvError(f"{self.run_dir}: nothing to resume (no run folder with a recipe.toml); run "
                                   "without --resume to start it")
            # Stopped before the first checkpoint: start over in the same folder.
            self._check_same_recipe(tomllib_loads(recipe_file.read_text(), recipe_file), recipe_file)
            for name in ("metrics.jsonl", "policy.jsonl"):
                self._truncate_jsonl(name, keep_through=-1)
            return
        state = load_checkpoint(self.ckpt_path)
        self._check_same_recipe(tomllib_loads(state.get("recipe", ""), self.ckpt_path), self.ckpt_path)
        try:
            epoch = state["epoch"]
            if not isinstance(epoch, int) or not 1 <= epoch <= self.recipe.train.epochs:
                raise ValueError(f"its epoch {epoch!r} is not in 1..{self.recipe.train.epochs}")
            spec_classes = state.get("model_spec", {}).get("num_classes", self.num_classes)
            if spec_classes != self.num_classes:
                raise ValueError(f"its model has {spec_classes} classes, the data {self.num_classes}")
            policy = ClassPolicy.from_dict(state["policy"])
            if policy.num_classes != self.num_classes:
                raise ValueError(f"its policy has {policy.num_classes} classes, the data {self.num_classes}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state.get("scaler", {}))
            self.strategy.load_state_dict(state.get("strategy", {}))
            self.stats.load_state_dict(state.get("stats", {}))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong inside, the file does not fit this run
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FairadvError(f"{self.ckpt_path}: checkpoint does not match this recipe: {reason}") from None
        self.policy = policy
        self.start_epoch = epoch + 1
        for name in ("metrics.jsonl", "policy.jsonl"):
            self._truncate_jsonl(name, keep_through=self.start_epoch - 1)

    def _check_same_recipe(self, saved: dict[str, Any], where: Path) -> None:
        current = self.recipe.to_dict()
        for recipe_dict in (saved, current):
            recipe_dict.get("run", {}).pop("out", None)  # the same run may be resumed from another --out path
        if saved != current:
            # A changed component name explains the rest of the differences: list it first.
            changes = sorted(_differences(saved, current), key=lambda d: not d.split(":")[0].endswith(".name"))
            diff = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
            raise FairadvError(f"{where}: --resume with a changed recipe ({diff}); resume with the original recipe "
                               "or start a new run")

    def _truncate_jsonl(self, name: str, keep_through: int) -> None:
        path = self.run_dir / name
        if path.exists() and self.dist.is_main:
            kept = []
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a crash mid-append: it belongs to no finished epoch
                    continue
                if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= keep_through:
                    kept.append(line)
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    def _progress(self) -> Any:
        if not self.show_progress:
            return _NoProgress()
        return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
                        TimeElapsedColumn(), console=self.console, transient=False)


def _epoch_line(metrics: dict[str, Any], epochs: int) -> str:
    """One line per finished epoch for people: loss, training accuracies, test figures when measured, speed."""
    parts = [f"epoch {metrics['epoch']}/{epochs}", f"lr {metrics['lr']:.4g}", f"loss {metrics['loss']:.4f}"]
    for key, label in (("train_clean_accuracy", "train clean"), ("train_robust_accuracy", "train robust"),
                       ("test_robust_accuracy", "test robust"),
                       ("test_worst_class_robust_accuracy", "test worst class")):
        if metrics.get(key) is not None:
            parts.append(f"{label} {100 * metrics[key]:.1f}%")
    timing = metrics[TIMING_KEY]
    parts.append(f"{timing['seconds']:.1f}s ({timing['images_per_s']:.0f} img/s)")
    return "  ".join(parts)


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _is_temporary(path: Path) -> bool:
    """A temporary file of `write_text_atomic` / `save_atomic` (``.<name>.<random>.tmp``)."""
    return path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")


def tomllib_loads(text: Any, origin: Path) -> dict[str, Any]:
    """Parse the recipe TOML stored in a checkpoint or run folder; a problem names ``origin``."""
    import tomllib

    if not isinstance(text, str):
        raise FairadvError(f"{origin}: the stored recipe is not text (got {type(text).__name__})")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FairadvError(f"{origin}: the recipe stored in the checkpoint is not valid TOML: {exc}") from None


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def run(recipe: Recipe, out: str | Path | None = None, resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train and evaluate ``recipe``; return the summary (also written to ``summary.json`` in the run folder)."""
    return Trainer(recipe, out=out, resume=resume, progress=progress).fit()
