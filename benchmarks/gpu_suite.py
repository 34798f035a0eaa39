"""The GPU story in one command: the official DAFA TRADES-10 step against fairadv's speed modes, evaluation
throughput, peak memory and the compute floor, written as JSON and printed as a Markdown table.

    python benchmarks/gpu_suite.py --out gpu_suite.json [--rounds 5] [--device auto]

On CUDA it times ResNet-18 at batch 128 and 512 and WRN-34-10 at batch 128, each in every mode: fp32, bf16,
bf16 + channels-last, + BatchNorm folding, + torch.compile, + CUDA graphs for the attack. Then PGD-20 (every image,
all 20 steps) and AutoAttack (standard version, when the ``autoattack`` extra is installed) on ResNet-18 at batch
512. On the CPU it runs a reduced set (the small CNN at batch 4, fp32 modes, PGD-20; no AutoAttack) in under a
minute, so that CI can check that the suite works; those figures say nothing about GPUs.

The training steps, the reference step and the compute floor are `benchmarks/train_step.py`'s. The step/floor
column is the step's time over the time of the passes a TRADES-10 step needs, timed alone in eager mode at the same
precision and layout. Peak memory is the CUDA allocator's peak during one step of that mode. The models are freshly
initialised; for the evaluation, labels are the model's own clean predictions, so that every image is attacked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import attrs
import torch
from train_step import fairadv_step, floor_passes, fresh_model, interleaved_medians, reference_step, sgd, sync

from fairadv.attacks import PGD
from fairadv.attacks.autoattack import MISSING_EXTRA, AutoAttack, import_pyautoattack
from fairadv.build import select_device
from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.train.precision import SpeedSettings, resolve_speed

# mode -> (precision, channels_last, fold_bn, compile, CUDA graphs)
GPU_MODES = {
    "fp32": ("fp32", False, False, False, False),
    "bf16": ("bf16", False, False, False, False),
    "bf16 channels-last": ("bf16", True, False, False, False),
    "bf16 channels-last fold": ("bf16", True, True, False, False),
    "bf16 channels-last compile": ("bf16", True, False, True, False),
    "bf16 channels-last compile CUDA-graphs": ("bf16", True, False, True, True),
}
CPU_MODES = {"fp32": ("fp32", False, False, False, False), "fp32 channels-last": ("fp32", True, False, False, False)}
GPU_CONFIGS = [("resnet18", 128), ("resnet18", 512), ("wideresnet", 128)]  # wideresnet's default is WRN-34-10
CPU_CONFIGS = [("small_cnn", 4)]
EPS = 8 / 255


def speed_for(device: torch.device, mode: tuple[str, bool, bool, bool, bool]) -> SpeedSettings:
    precision, channels_last, fold_bn, compiled, graphs = mode
    speed = resolve_speed(device, precision, channels_last, compiled, fold_bn)
    return attrs.evolve(speed, cuda_graphs=graphs)


def peak_mib(fn: Any, device: torch.device) -> float | None:
    """The CUDA allocator's peak during one call of ``fn``, in MiB; None on the CPU."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_config(name: str, batch: int, modes: dict, rounds: int, device: torch.device) -> dict[str, Any]:
    """Every mode's TRADES-10 step on ``name`` at ``batch``, the reference step and the compute floor."""
    torch.manual_seed(0)
    x, y = torch.rand(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
    policy = ClassPolicy.uniform(10).to(device)
    reference_model = fresh_model(name, device)
    reference_optimizer, weights = sgd(reference_model), torch.ones(10)
    calls = {"reference": lambda: reference_step(reference_model, reference_optimizer, x, y, weights)}
    floors: dict[str, str] = {}
    for mode, spec in modes.items():
        speed = speed_for(device, spec)
        calls[mode] = fairadv_step(speed, fresh_model(name, device), x, y, policy)
        floor_key = f"floor {spec[0]} {spec[1]}"
        if floor_key not in calls:
            plain = resolve_speed(device, spec[0], spec[1], False, False)
            floor_model, xin = plain.prepare_model(fresh_model(name, device)), plain.prepare_input(x)
            calls[floor_key] = lambda s=plain, m=floor_model, xi=xin: floor_passes(s, m, xi, y)
        floors[mode] = floor_key
    # compiled modes compile on their first call and record their CUDA graphs on the next two
    seconds = interleaved_medians(calls, rounds, device, warmup=3 if device.type == "cuda" else 1)
    reference = batch / seconds["reference"]
    rows = [{"mode": mode, "images_per_s": batch / seconds[mode], "vs_reference": seconds["reference"] / seconds[mode],
             "step_over_floor": seconds[mode] / seconds[floors[mode]], "peak_mib": peak_mib(calls[mode], device)}
            for mode in modes]
    return {"model": name, "batch": batch, "reference_images_per_s": reference,
            "reference_peak_mib": peak_mib(calls["reference"], device),
            "floor_images_per_s": {key: batch / seconds[key] for key in sorted(set(floors.values()))}, "modes": rows}


def time_eval(name: str, batch: int, rounds: int, device: torch.device) -> tuple[list[dict[str, Any]], list[str]]:
    """PGD-20 and AutoAttack throughput in fp32 on a fresh ``name``; notes for what could not run."""
    model = fresh_model(name, device).eval()
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts classified correctly, so every image is attacked
    pgd = PGD(eps=EPS, step_size=2 / 255, steps=20)
    seconds = interleaved_medians({"pgd": lambda: pgd.perturb(model, x, y)}, rounds, device)["pgd"]
    rows = [{"attack": "PGD-20 (every image, all 20 steps)", "model": name, "batch": batch,
             "images_per_s": batch / seconds}]
    if device.type != "cuda":
        return rows, ["AutoAttack timed on CUDA only: on the CPU it takes minutes"]
    try:
        import_pyautoattack()
    except FairadvError:
        return rows, [f"AutoAttack not timed: {MISSING_EXTRA}"]
    autoattack = AutoAttack(eps=EPS)
    sync(device)
    tic = time.perf_counter()
    autoattack.run(model, x, y, batch_size=batch)
    sync(device)
    rows.append({"attack": "AutoAttack standard (an untrained model: APGD-CE breaks nearly every image)",
                 "model": name, "batch": batch, "images_per_s": batch / (time.perf_counter() - tic)})
    return rows, []


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def markdown(result: dict[str, Any]) -> str:
    """The tables docs/performance.md takes as they are."""
    lines = [(f"{result['device_name']}, torch {result['torch']}, {result['date']}, median of {result['rounds']} "
             "interleaved rounds"), "",
             "| model | batch | mode | images/s | vs reference | step / compute floor | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    mib = lambda v: "—" if v is None else f"{v:,.0f}"
    for config in result["configs"]:
        head = f"| {config['model']} | {config['batch']} "
        lines.append(f"{head}| reference (official DAFA step) | {config['reference_images_per_s']:,.1f} | 1.00× | — "
                     f"| {mib(config['reference_peak_mib'])} |")
        lines += [f"{head}| {row['mode']} | {row['images_per_s']:,.1f} | {row['vs_reference']:.2f}× "
                  f"| {row['step_over_floor']:.2f} | {mib(row['peak_mib'])} |" for row in config["modes"]]
    lines += ["", "| evaluation | model | batch | images/s |", "|---|---|---|---|"]
    lines += [f"| {row['attack']} | {row['model']} | {row['batch']} | {row['images_per_s']:,.1f} |"
              for row in result["eval"]]
    return "\n".join(lines + [""] + [f"- {note}" for note in result["notes"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = select_device(args.device)
    cuda = device.type == "cuda"
    configs, modes = (GPU_CONFIGS, GPU_MODES) if cuda else (CPU_CONFIGS, CPU_MODES)
    notes = [] if cuda else [("CPU: the reduced set (small CNN, fp32 modes), a check that the suite works; peak memory "
                             "is measured on CUDA only")]
    timed = [time_config(name, batch, modes, args.rounds, device) for name, batch in configs]
    evals, eval_notes = time_eval(configs[0][0], 512 if cuda else 4, args.rounds, device)
    result = {"device_name": torch.cuda.get_device_name(device) if cuda else f"CPU ({cpu_name()}, "
              f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "rounds": args.rounds,
              "date": datetime.datetime.now(datetime.UTC).date().isoformat(), "configs": timed, "eval": evals,
              "notes": notes + eval_notes}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
