"""Throughput of TRADES-10 training steps for each precision / memory-layout mode, against the compute floor.

    python benchmarks/train_step.py [--model resnet18] [--batch-size 32] [--steps 3] [--device auto] [--compile]

For each mode it prints images/s of fairadv's real training step (attack + TRADES loss + optimizer step) and the
ratio of that step's time to the compute floor: the same model's passes that a TRADES-10 step needs (one no-grad
forward for the clean target, ten forward + input-gradient passes, two forwards + one parameter backward), timed
alone without any of fairadv's code around them. A ratio near 1.0 means the step adds no avoidable work.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fairadv.attacks import PGD
from fairadv.build import select_device
from fairadv.models import create_model
from fairadv.objectives import TRADES
from fairadv.policy import ClassPolicy
from fairadv.precision import resolve_speed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - tic) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    parser.add_argument("--modes", default="fp32,bf16" + (",fp16" if torch.cuda.is_available() else ""))
    args = parser.parse_args()
    device = select_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    attack = PGD(eps=0.031, step_size=0.007, steps=10, random_start="normal")
    objective = TRADES(beta=6.0)
    policy = ClassPolicy.uniform(10).to(device)
    print(f"{args.model}, batch {args.batch_size}, TRADES-10, {device}, {torch.get_num_threads()} threads")
    print(f"{'precision':>9} {'layout':>13} {'compile':>7} {'images/s':>9} {'floor img/s':>11} {'step/floor':>10}")
    baseline = None
    for precision in args.modes.split(","):
        for channels_last in (False, True):
            for compiled in ((False, True) if args.compile else (False,)):
                speed = resolve_speed(device, precision, channels_last, compiled)
                model = create_model(args.model, num_classes=10, in_channels=3, input_size=(32, 32)).to(device)
                train_model = speed.prepare_model(model)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                xin = speed.prepare_input(x)

                def step() -> None:
                    with speed.autocast():
                        out = objective(train_model, xin, y, attack, policy)
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()

                def floor() -> None:
                    with speed.autocast():
                        train_model.eval()
                        with torch.no_grad():
                            train_model(xin)
                        for _ in range(10):
                            xa = xin.detach().requires_grad_(True)
                            torch.autograd.grad(train_model(xa).float().logsumexp(1).sum(), xa)
                        train_model.train()
                        loss = F.cross_entropy(train_model(xin), y) + train_model(xin).float().square().mean()
                    loss.backward()

                step_s = timed(step, args.steps, device)
                floor_s = timed(floor, args.steps, device)
                ips = args.batch_size / step_s
                baseline = baseline or ips
                layout = "channels_last" if channels_last else "NCHW"
                print(f"{precision:>9} {layout:>13} {'on' if compiled else 'off':>7} {ips:9.1f} "
                      f"{args.batch_size / floor_s:11.1f} {step_s / floor_s:10.2f}   ({ips / baseline:.2f}x fp32 NCHW)")


if __name__ == "__main__":
    main()
