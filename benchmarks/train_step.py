"""Throughput of TRADES-10 training steps for each precision / layout / BatchNorm-folding mode, against the reference.

    python benchmarks/train_step.py [--model resnet18] [--batch-size 32] [--rounds 3] [--device auto] [--compile]

The first row is the reference: the official DAFA code's TRADES step (fp32, NCHW), restated in plain PyTorch below.
Then, for each mode, it prints images/s of fairadv's real training step (attack + TRADES loss + optimizer step), the
speed-up over the reference and over fairadv's own fp32 NCHW step, and the ratio of the step's time to the compute
floor: the same model's passes that a TRADES-10 step needs (one no-grad forward for the clean target, ten forward +
input-gradient passes, two forwards + one parameter backward), timed alone without any of fairadv's code around them.
A ratio near 1.0 means the step adds no avoidable work; below 1.0 (BatchNorm folding) it does less work than the
unfolded passes.

Every mode is timed once per round, round after round, and each figure is the median over rounds: a busy moment
on a shared machine then slows one step of every mode instead of all steps of one mode.

On a CPU without bf16 instructions the bf16 modes are left out (bf16 is emulated there and would take longer than
all other modes together); ``--modes fp32,bf16`` times them anyway.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fairadv.attacks import PGD
from fairadv.build import select_device
from fairadv.models import create_model
from fairadv.objectives import TRADES
from fairadv.policy import ClassPolicy
from fairadv.train.precision import SpeedSettings, cpu_bf16_native, resolve_speed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(calls: dict[str, Callable[[], None]], rounds: int, device: torch.device,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, timing one call of each per round after ``warmup`` calls of each
    (compiling, and recording CUDA graphs, happen there)."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            sync(device)
            tic = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(values) for name, values in times.items()}


def reference_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                   class_weights: torch.Tensor, eps: float = 0.031, step_size: float = 0.007, steps: int = 10,
                   beta: float = 6.0) -> None:
    """One training step as the official DAFA code (rucy74/DAFA, losses.py ``trades_loss``) computes it.

    Kept as it is there, extra work included: the clean eval-mode forward builds an autograd graph it never uses,
    and the per-sample weights come from a Python loop over classes through NumPy.
    """
    labels = y.cpu().numpy()
    weights = torch.zeros(len(y), device=x.device)
    for c in range(len(class_weights)):
        weights[torch.as_tensor(np.where(labels == c)[0], device=x.device)] = class_weights[c]
    radius, step = (weights * eps).view(-1, 1, 1, 1), (weights * step_size).view(-1, 1, 1, 1)
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    logits_nat = model(x)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits_nat, dim=1), reduction="sum")
        grad = torch.autograd.grad(kl, [x_adv])[0]
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - radius), x + radius).clamp(0.0, 1.0)
    model.train()
    optimizer.zero_grad()
    logits_adv, logits_nat = model(x_adv), model(x)
    loss = (F.cross_entropy(logits_nat, y, reduction="none") * weights).mean() + beta * F.kl_div(
        F.log_softmax(logits_adv, dim=1), F.softmax(logits_nat, dim=1), reduction="sum") / len(x)
    loss.backward()
    optimizer.step()


def floor_passes(speed: SpeedSettings, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The passes a TRADES-10 step needs, with nothing around them (the compute floor)."""
    with speed.autocast():
        model.eval()
        with torch.no_grad():
            model(x)
        for _ in range(10):
            xa = x.detach().requires_grad_(True)
            torch.autograd.grad(model(xa).float().logsumexp(1).sum(), xa)
        model.train()
        loss = F.cross_entropy(model(x), y) + model(x).float().square().mean()
    loss.backward()


def fairadv_step(speed: SpeedSettings, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 policy: ClassPolicy) -> Callable[[], None]:
    """fairadv's real TRADES-10 training step (PGD-10 attack, TRADES loss, SGD step) for ``model`` under ``speed``."""
    attack = PGD(eps=0.031, step_size=0.007, steps=10, random_start="normal")
    objective = TRADES(beta=6.0)
    train_model, xin = speed.prepare_model(model), speed.prepare_input(x)
    optimizer = sgd(model)

    def step() -> None:
        with speed.autocast():
            out = objective(train_model, xin, y, attack, policy)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    return step


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def fresh_model(name: str, device: torch.device) -> torch.nn.Module:
    """The benchmark's model, the same initial weights every time: CIFAR-10's shape, 10 classes."""
    torch.manual_seed(0)
    return create_model(name, num_classes=10, in_channels=3, input_size=(32, 32)).to(device)


def choose_modes(requested: str | None, device: torch.device) -> tuple[list[str], str | None]:
    """The precisions to time, and a note when bf16 was left out of the default list because it is emulated here."""
    if requested is not None:
        return requested.split(","), None
    modes = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    if device.type == "cpu" and not cpu_bf16_native():
        return [m for m in modes if m != "bf16"], ("bf16 modes left out: this CPU has no bf16 instructions "
                                                   "(avx512_bf16, amx_bf16 or Arm bf16), so bf16 is emulated and very "
                                                   "slow; --modes fp32,bf16 times them anyway")
    return modes, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    parser.add_argument("--modes", default=None, help="comma-separated precisions (default: fp32,bf16, plus fp16 on "
                        "CUDA; bf16 only where the CPU has bf16 instructions)")
    args = parser.parse_args()
    device = select_device(args.device)
    modes, note = choose_modes(args.modes, device)
    if note:
        print(note)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    policy = ClassPolicy.uniform(10).to(device)

    def floor(speed: SpeedSettings) -> Callable[[], None]:
        model, xin = speed.prepare_model(fresh_model(args.model, device)), speed.prepare_input(x)
        return lambda: floor_passes(speed, model, xin, y)

    reference_model = fresh_model(args.model, device)
    reference_optimizer, class_weights = sgd(reference_model), torch.ones(10)
    calls = {"reference": lambda: reference_step(reference_model, reference_optimizer, x, y, class_weights)}
    rows = []
    for precision in modes:
        for channels_last in (False, True):
            plain = resolve_speed(device, precision, channels_last, compile=False, fold_bn=False)
            calls[f"floor {precision} {channels_last}"] = floor(plain)
            for fold_bn, compiled in [(False, False), (True, False)] + ([(False, True)] if args.compile else []):
                row = (precision, channels_last, fold_bn, compiled)
                speed = resolve_speed(device, precision, channels_last, compiled, fold_bn)
                calls[str(row)] = fairadv_step(speed, fresh_model(args.model, device), x, y, policy)
                rows.append(row)
    # compiled modes compile on their first call; on CUDA they record their CUDA graphs on the next ones
    seconds = interleaved_medians(calls, args.rounds, device, warmup=3 if args.compile and device.type == "cuda" else 1)

    print(f"{args.model}, batch {args.batch_size}, TRADES-10, {device}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'precision':>9} {'layout':>13} {'fold_bn':>7} {'compile':>7} {'images/s':>9} {'vs reference':>12} "
          f"{'vs fp32 NCHW':>12} {'step/floor':>10}")
    reference = args.batch_size / seconds["reference"]
    print(f"{'reference (official DAFA step)':>41} {reference:9.1f} {1:12.2f}")
    baseline = args.batch_size / seconds[str(rows[0])]
    for row in rows:
        precision, channels_last, fold_bn, compiled = row
        ips = args.batch_size / seconds[str(row)]
        print(f"{precision:>9} {'channels_last' if channels_last else 'NCHW':>13} {'on' if fold_bn else 'off':>7} "
              f"{'on' if compiled else 'off':>7} {ips:9.1f} {ips / reference:12.2f} {ips / baseline:12.2f} "
              f"{seconds[str(row)] / seconds[f'floor {precision} {channels_last}']:10.2f}")


if __name__ == "__main__":
    main()
