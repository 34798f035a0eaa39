"""The training loop: one `Trainer` that fits a recipe, checkpoints every epoch and evaluates per class.

Top to bottom:

    for epoch:
        strategy.on_epoch_start        -> maybe a new ClassPolicy
        for batch: objective(model, x, y, attack, policy) -> loss; step; stats.update(logits already computed)
        strategy.on_epoch_end(stats)   -> maybe a new ClassPolicy (applies from the next epoch)
        validation robust accuracy -> checkpoints/best.pt when it is the best so far (with a validation split)
        metrics.jsonl, policy.jsonl, checkpoints/last.pt (atomic), then the trackers of [log]
    final per-class evaluation -> summary.json and figures (and to the trackers)

The objects come from `fairadv.train.components.build_components`, the files go through `RunFolder`, and the per-class
evaluations through `SplitEvaluator`. Reproducibility: every epoch reseeds the global RNGs and the shuffling
generator from (seed, epoch), so a run resumed from its last checkpoint replays the remaining epochs exactly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.progress import Progress

from fairadv.checkpoint import FORMAT_VERSION, resumable_epoch_and_policy
from fairadv.data.loader import make_loader
from fairadv.distributed import all_reduce_sum, barrier, init_from_env, local_batch_size
from fairadv.errors import FairadvError, one_line
from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.evaluation.summary import print_summary, summarize
from fairadv.policy import ClassPolicy
from fairadv.provenance import CHECKPOINT_KEY, session, with_session
from fairadv.recipe import Recipe
from fairadv.run_folder import RunFolder
from fairadv.seeding import epoch_seed, seed_everything
from fairadv.stats import ClassStats, EpochStats
from fairadv.strategies.base import EpochContext
from fairadv.tracking import TrackingSession
from fairadv.train.best import BestEpoch
from fairadv.train.components import build_components, training_device
from fairadv.train.display import epoch_line, policy_table, training_progress
from fairadv.train.epoch_metrics import test_metrics, timing, training_metrics
from fairadv.train.evaluator import SplitEvaluator
from fairadv.train.policy_guard import ChanceWatch, NumericalError, checked_policy
from fairadv.train.preemption import StopRequest
from fairadv.train.results import write_results

log = logging.getLogger(__name__)

TIMING_KEY = "timing"  # wall-clock figures in metrics.jsonl: the only values that differ between identical runs


class Trainer:
    """Fits ``recipe`` into ``out/<run.name>``; `fit` returns the summary dict.

    Everything that can be wrong with the input (data, components, run folder, checkpoint) is checked in the
    constructor, before any file is written.
    With ``preemptible`` (``fairadv run``), SIGTERM and SIGUSR1 stop the run after the current epoch's checkpoint
    (`fairadv.train.preemption`).
    """

    def __init__(self, recipe: Recipe, out: str | Path | None = None, resume: bool = False,
                 progress: bool = True, console: Console | None = None, results: Console | None = None,
                 preemptible: bool = False):
        self.recipe = recipe
        self.stop = StopRequest(preemptible)  # SIGTERM, SIGUSR1: stop after an epoch's checkpoint
        self.console = console or Console(stderr=True)  # progress, epoch lines, policy tables
        self.results = results  # the final per-class table (the command line's stdout)
        self.dist = init_from_env(recipe.run.device)
        self.show_progress = progress and self.dist.is_main
        self.device = training_device(recipe.run.device, self.dist)
        self.parts = parts = build_components(recipe, self.device, self.dist, initial_weights=not resume)
        self.model, self.strategy, self.class_names = parts.model, parts.strategy, parts.data.class_names
        self.num_classes = parts.data.num_classes
        self.evaluator = SplitEvaluator(recipe, parts.data, self.device, self.dist)
        self.local_batch = local_batch_size(recipe.train.batch_size, self.dist)
        self.base_lrs = [group["lr"] for group in parts.optimizer.param_groups]
        self.stats = ClassStats(self.num_classes, self.device)
        has_val = parts.data.val is not None and recipe.train.best_by != "none"
        self.best = BestEpoch(recipe.train.best_by) if has_val else None
        self.policy = self._checked_policy(lambda: parts.strategy.on_fit_start(self.num_classes), epoch=0)
        self.chance = ChanceWatch(recipe.strategy.name, self.num_classes)  # a policy from a model at chance: warn
        self.start_epoch = 1
        self.folder = RunFolder(Path(out if out is not None else recipe.run.out) / str(recipe.run.name),
                                is_main=self.dist.is_main)
        self.run_dir = self.folder.path
        state = self.folder.open(resume, recipe.to_dict())  # the folder is locked for this run from here on
        if state is not None:
            self._resume(state)
        self.provenance = with_session(state, session(self.device, parts.speed.record(parts.train_model),
                                                      self.dist.world_size, after_epoch=self.start_epoch - 1))
        barrier()  # every process has checked the run folder before rank 0 writes to it

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluate on the test split, write ``summary.json``; return the summary."""
        speed = self.parts.speed.describe(self.parts.train_model)
        log.info("training: %s", speed)
        if self.show_progress:
            self.console.print(f"fairadv: {speed}; run folder {self.run_dir}", highlight=False, soft_wrap=True)
        with self.folder.held(), training_progress(self.console, self.show_progress) as progress, \
                self.stop.installed():
            if self.start_epoch == 1:
                self.folder.create(self.recipe.to_toml())
                self.folder.log_policy({"epoch": 0, "applies_from": 1, **self.policy.to_dict()})
            with self._open_trackers() as self.tracking:
                self.folder.write_provenance(self.provenance)  # after the trackers: a refused resume writes nothing
                for epoch in range(self.start_epoch, self.recipe.train.epochs + 1):
                    self._run_epoch(epoch, progress)
                    self.stop.after_epoch(epoch, self.recipe.train.epochs, self.device, self.folder)
                summary = self.final_evaluation()
                if self.dist.is_main:  # summary.json (with best.pt's epoch, a chance-level warning) and the figures
                    write_results(self.folder, summary, self.class_names, self.stats.compute().prob_matrix,
                                  self.recipe.train.epochs, self.best)
                    self.tracking.finish(summary, sorted(self.run_dir.glob("*.png")) + [self.folder.summary_file],
                                         step=self.recipe.train.epochs)
        if self.results is not None and self.dist.is_main:
            print_summary(summary, self.results)
        if self.show_progress:
            self.console.print(f"run folder: {self.run_dir}", highlight=False)
        return summary

    def _run_epoch(self, epoch: int, progress: Progress | None) -> None:
        recipe, parts = self.recipe, self.parts
        seed_everything(epoch_seed(recipe.run.seed, epoch))
        factor = parts.schedule.factor(epoch, recipe.train.epochs)
        for group, base in zip(parts.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        ctx = EpochContext(epoch=epoch, num_epochs=recipe.train.epochs, num_classes=self.num_classes,
                           policy=self.policy, model=self.model, evaluate=self.evaluate_validation,
                           measure=self.measure_train_stats, batches=self.evaluator.batches)
        started = self._checked_policy(lambda: self.strategy.on_epoch_start(self.chance.watched(ctx)), epoch)
        if started is not None:
            self._set_policy(started, epoch, applies_from=epoch)
        trained_with = self.policy

        tic = time.perf_counter()
        loss, seen = self._train_epoch(epoch, progress)
        seconds = time.perf_counter() - tic
        all_reduce_sum(*self.stats.sums())  # every rank's strategy sees the whole epoch
        stats = self.stats.compute()
        end_ctx = self.chance.watched(attrs.evolve(ctx, stats=stats, policy=self.policy))  # notes what it is based on
        ended = self._checked_policy(lambda: self.strategy.on_epoch_end(end_ctx), epoch)

        metrics = training_metrics(epoch, parts.optimizer.param_groups[0]["lr"], loss, stats)
        every = recipe.train.eval_every
        if every and epoch % every == 0 and epoch < recipe.train.epochs:
            metrics.update(test_metrics(summarize(self.evaluate_test(), self.class_names, self._attack_info(),
                                                    intervals=False)))
        metrics[TIMING_KEY] = timing(seconds, seen)
        if ended is not None:
            self._set_policy(ended, epoch, applies_from=epoch + 1)
        state = self._state(epoch)
        if self.best is not None:  # scores the epoch, writes best.pt when it is the best so far
            val = self.evaluator.evaluate(self.evaluated_model(), "val", self.parts.eval_attack)
            self.best.after_epoch(epoch, val, state, metrics, self.folder)
        self.folder.log_metrics(metrics)
        self.folder.save_checkpoint(state)
        self.tracking.after_epoch(metrics, trained_with.to_dict())  # after the checkpoint: see fairadv.tracking
        if self.show_progress:
            self.console.print(epoch_line(metrics, recipe.train.epochs, TIMING_KEY), highlight=False, soft_wrap=True)

    def _train_epoch(self, epoch: int, progress: Progress | None) -> tuple[float, int]:
        """One pass over the training data; returns (mean loss, images seen)."""
        recipe, parts, device = self.recipe, self.parts, self.device
        generator = torch.Generator().manual_seed(epoch_seed(recipe.run.seed, epoch))
        loader = make_loader(parts.data.train, self.local_batch, device, shuffle=True,
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
            x, y = parts.speed.prepare_input(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with parts.speed.autocast():
                out = parts.objective(parts.train_model, x, y, parts.attack, policy)
            parts.optimizer.zero_grad(set_to_none=True)
            parts.scaler.scale(out.loss).backward()
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
            self.stats.update(y, out.logits_adv, out.logits_clean, kappa=out.kappa)
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
            raise NumericalError(f"non-finite training loss at epoch {epoch}, batch {bad + 1}; stopping "
                                 f"({self.folder.checkpoint_note()}); lower optimizer.lr or check the data")

    def _open_trackers(self) -> TrackingSession:
        """``[log]``'s trackers on rank 0, caught up to this process's first epoch; if one cannot start, a fresh
        run's folder is removed."""
        try:
            return TrackingSession.open(self.recipe, self.run_dir, self.class_names, self.parts.attack.eps,
                                        TIMING_KEY, resumed_through=self.start_epoch - 1, enabled=self.dist.is_main)
        except FairadvError:
            if self.start_epoch == 1 and not self.folder.checkpoint.exists():
                self.folder.discard()
            raise

    # --- evaluation (the strategy's hooks call the validation and measuring passes) --------------------------------

    def evaluated_model(self) -> torch.nn.Module:
        """The model that evaluations and reports use: the strategy's (e.g. a weight average) or the trained one."""
        return self.strategy.evaluation_model(self.model) or self.model

    def evaluate_test(self, attack: Any = None) -> ClasswiseResult:
        """Per-class clean and robust accuracy on the test split (``eval.n`` images, stratified, if set)."""
        seed_everything(self.recipe.run.seed)
        return self.evaluator.evaluate(self.evaluated_model(), "test", attack or self.parts.eval_attack,
                                       n=self.recipe.eval.n)

    def evaluate_validation(self, attack: Any = None, counting: str = "any_iterate") -> ClasswiseResult:
        """Per-class clean and robust accuracy on the validation hold-out (strategies call this; ``counting`` is
        theirs, not ``eval.counting``)."""
        return self.evaluator.evaluate(self.model, "val", attack or self.parts.eval_attack, counting=counting)

    def measure_train_stats(self, features: bool = False) -> EpochStats:
        """Class statistics of an eval-mode pass over the un-augmented training split, under the current policy."""
        return self.evaluator.measure(self.model, self.parts.objective, self.parts.attack, self.policy, features)

    def final_evaluation(self) -> dict[str, Any]:
        return summarize(self.evaluate_test(), self.class_names, self._attack_info())

    def _attack_info(self) -> dict[str, Any]:
        return {"name": self.recipe.eval.attack.name, **self.recipe.eval.attack.params}

    # --- policy -----------------------------------------------------------------------------------------------------

    def _checked_policy(self, hook: Any, epoch: int) -> ClassPolicy | None:
        return checked_policy(hook, self.recipe.strategy.name, self.num_classes, epoch)

    def _set_policy(self, policy: ClassPolicy, epoch: int, applies_from: int) -> None:
        self.policy = policy
        basis = {**self.strategy.policy_basis(), **self.chance.note(epoch)}  # e.g. DAFA's similarity; chance warning
        self.folder.log_policy({"epoch": epoch, "applies_from": applies_from, **policy.to_dict(), **basis})
        log.info("new class policy from epoch %d: %s", applies_from, policy.to_dict())
        if self.show_progress:
            self.console.print(policy_table(policy, self.class_names, self.parts.attack.eps, applies_from))

    def _state(self, epoch: int) -> dict[str, Any]:
        """What ``checkpoints/last.pt`` holds after ``epoch``: enough to continue exactly, and to evaluate."""
        parts = self.parts
        state = {
            "format": FORMAT_VERSION, "epoch": epoch, "recipe": self.recipe.to_toml(),
            "model_spec": {"num_classes": self.num_classes, "input_shape": list(parts.data.input_shape),
                           "class_names": list(self.class_names)},
            "model": self.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scaler": parts.scaler.state_dict(), "strategy": self.strategy.state_dict(),
            "policy": self.policy.to_dict(), "stats": self.stats.state_dict(), CHECKPOINT_KEY: self.provenance,
        }
        reported = self.strategy.evaluation_model(self.model)
        if reported is not None:  # only strategies that keep a separate model (weight averaging) pay for a copy
            state["eval_model"] = reported.state_dict()
        return state

    def _resume(self, state: dict[str, Any]) -> None:
        """Load the run folder's last checkpoint into the components."""
        try:
            epoch, policy = resumable_epoch_and_policy(state, self.recipe.train.epochs, self.num_classes)
            self.model.load_state_dict(state["model"])
            self.parts.optimizer.load_state_dict(state["optimizer"])
            self.parts.scaler.load_state_dict(state.get("scaler", {}))
            self.strategy.load_state_dict(state.get("strategy", {}))
            self.stats.load_state_dict(state.get("stats", {}))
            if self.best is not None:
                self.best.load_state_dict(state.get("best") or {})
        except Exception as exc:  # noqa: BLE001 - whatever is wrong inside, the file does not fit this run
            self.folder.unlock()
            raise FairadvError(f"{self.folder.checkpoint}: checkpoint does not match this recipe: "
                               f"{one_line(exc)}") from None
        self.policy = policy
        self.start_epoch = epoch + 1
        self.folder.truncate_logs(keep_through=epoch)
