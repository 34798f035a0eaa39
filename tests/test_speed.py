"""Speed settings: automatic choices, BatchNorm folding for attacks, and oneDNN-packed convolutions.

Folding and packing must not change what the attack computes: the folded model is checked against the plain one
(outputs and input gradients), across every registered model with BatchNorm, after parameter and running-statistic
updates, and inside a real bf16 training run that resumes exactly.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fairadv
import fairadv.train.folding
from fairadv.attacks import PGD
from fairadv.errors import FairadvError
from fairadv.train.folding import BatchNormFolded, FoldedConvBatchNorm, try_fold
from fairadv.models import create_model
from fairadv.train.packed_conv import pack_conv, packed_conv2d, packing_works
from fairadv.train.precision import cpu_bf16_native, resolve_speed
from helpers import full_and_resumed, metrics
from test_engine import FAST, ROOT
from test_models import NAMES, build

CPU = torch.device("cpu")


# --- automatic choices -----------------------------------------------------------------------------------------------


def test_cpu_defaults_keep_the_reference_computation():
    speed = resolve_speed(CPU)
    assert (speed.precision, speed.channels_last, speed.compile, speed.fold_bn) == ("fp32", False, False, False)
    assert "fold_bn off" in speed.describe()


def test_reduced_precision_folds_by_default_unless_compiled():
    assert resolve_speed(CPU, "bf16").fold_bn
    assert not resolve_speed(CPU, "bf16", compile=True).fold_bn
    assert resolve_speed(CPU, "fp32", fold_bn=True).fold_bn


def test_impossible_combinations_are_named():
    with pytest.raises(FairadvError, match="fp16 training needs a CUDA GPU"):
        resolve_speed(CPU, "fp16")
    with pytest.raises(FairadvError, match="train.fold_bn = true and train.compile = true"):
        resolve_speed(CPU, "bf16", compile=True, fold_bn=True)


def test_describe_reports_whether_folding_took():
    speed = resolve_speed(CPU, "bf16")
    assert "fold_bn on (20 conv+BatchNorm pairs)" in speed.describe(speed.prepare_model(build("resnet18")))
    assert "fold_bn off (no conv+BatchNorm pair" in speed.describe(speed.prepare_model(build("small_cnn")))


# --- folding ---------------------------------------------------------------------------------------------------------


def with_running_statistics(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, as after some training."""
    torch.manual_seed(seed)
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.rand(8, 3, 32, 32) * 2)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def input_gradient(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    return logits.detach(), torch.autograd.grad(logits.float().log_softmax(1)[:, 0].sum(), x)[0]


FOLDABLE = [name for name in NAMES if name not in ("mlp", "small_cnn")]


@pytest.mark.parametrize("name", FOLDABLE)
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_model_is_the_same_function_in_eval_mode(name, channels_last):
    model = with_running_statistics(build(name))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    folded = try_fold(model)
    assert isinstance(folded, BatchNormFolded) and folded.pairs > 0
    folded.eval()
    x = torch.rand(4, 3, 32, 32)
    logits, grad = input_gradient(model, x)
    folded_logits, folded_grad = input_gradient(folded, x)
    torch.testing.assert_close(folded_logits, logits, rtol=1e-4, atol=1e-4)
    # 5e-5: fp32 reassociation; FRL's PreAct variant (no final BatchNorm) reached 1.7e-5 on 8 of 12,288 entries
    torch.testing.assert_close(folded_grad, grad, rtol=1e-3, atol=5e-5)


def test_without_packing_folding_uses_conv2d_and_is_the_same_function(monkeypatch):
    """The path GPUs take (and CPUs whose oneDNN ops are missing)."""
    monkeypatch.setattr(fairadv.train.folding, "packing_works", lambda dtype, channels_last: False)
    model = with_running_statistics(build("resnet18"))
    folded = try_fold(model).eval()
    x = torch.rand(4, 3, 32, 32)
    logits, grad = input_gradient(model, x)
    folded_logits, folded_grad = input_gradient(folded, x)
    torch.testing.assert_close(folded_logits, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(folded_grad, grad, rtol=1e-3, atol=1e-5)


def test_train_mode_is_the_model_itself_and_parameters_are_not_duplicated():
    model = build("resnet18")
    folded = try_fold(model)
    assert all(module.training for module in model.modules())  # traced in eval mode, modes restored
    assert len(list(folded.parameters())) == len(list(model.parameters()))
    assert folded.state_dict().keys() == {f"model.{key}" for key in model.state_dict()}
    folded.train()
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(folded(x), model(x))  # batch statistics, running stats updated as usual


def test_folded_weights_follow_parameter_and_running_statistic_updates():
    model = with_running_statistics(build("resnet18"))
    folded = try_fold(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.rand(4, 3, 32, 32)
    for _ in range(2):
        folded.eval()
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)
        folded.train()
        F.cross_entropy(folded(x), torch.tensor([0, 1, 2, 3])).backward()  # also moves the running statistics
        optimizer.step()
    model.load_state_dict(build("resnet18", seed=5).state_dict())  # in-place copies
    folded.eval()
    torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_folding_refreshes_once_per_change_not_per_call(monkeypatch):
    folded = try_fold(with_running_statistics(build("resnet18"))).eval()
    calls = []
    original = FoldedConvBatchNorm._fold
    monkeypatch.setattr(FoldedConvBatchNorm, "_fold", lambda self, dtype: calls.append(1) or original(self, dtype))
    x = torch.rand(2, 3, 32, 32)
    for _ in range(3):
        folded(x)
    assert len(calls) == folded.pairs
    with torch.no_grad():
        folded.model.conv1.weight.mul_(2)
    folded(x)
    assert len(calls) == folded.pairs + 1


def test_dropout_is_off_in_the_traced_eval_graph():
    model = with_running_statistics(create_model("wideresnet", 10, 3, (32, 32), depth=10, widen_factor=1, dropout=0.9))
    folded = try_fold(model).eval()
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(folded(x), folded(x))
    torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_untraceable_models_fall_back_to_the_plain_model(caplog):
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn(self.conv(x))
            return out if out.sum() > 0 else -out  # control flow on a tensor value: torch.fx cannot trace it

    model = DataDependent()
    assert try_fold(model) is model
    assert "does not trace with torch.fx" in caplog.text


def test_attack_on_the_folded_model_matches_the_plain_model():
    model = with_running_statistics(build("preact_resnet18"))
    folded = try_fold(model)
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6) % 10
    attack = PGD(eps=8 / 255, step_size=2 / 255, steps=3, random_start="none")
    folded.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x_plain, x_folded = attack.perturb(model, x, y), attack.perturb(folded, x, y)
    assert folded.training and all(module.training for module in model.modules())
    assert all(p.grad is None and torch.equal(p, before[name]) for name, p in model.named_parameters())
    # the same function up to fp32 rounding: a sign can flip only where a gradient entry is ~0
    assert (x_plain != x_folded).float().mean() < 0.01


# --- packed convolutions -------------------------------------------------------------------------------------------

needs_packing = pytest.mark.skipif(not packing_works(torch.float32, False), reason="no oneDNN weight packing here")


@needs_packing
@given(stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       size=st.integers(5, 11), kernel=st.sampled_from([1, 3]), batch=st.integers(1, 3),
       channels_last=st.booleans())
def test_packed_convolution_matches_conv2d_forward_and_input_gradient(stride, padding, dilation, groups, size, kernel,
                                                                     batch, channels_last):
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(batch, 4, size, size).contiguous(memory_format=layout)
    weight = torch.randn(6, 4 // groups, kernel, kernel).contiguous(memory_format=layout)
    bias = torch.randn(6)
    packed = pack_conv(weight, bias, x.shape, (padding,) * 2, (stride,) * 2, (dilation,) * 2, groups)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = packed_conv2d(xa, packed), F.conv2d(xb, weight, bias, stride, padding, dilation, groups)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(yb)
    torch.testing.assert_close(torch.autograd.grad(ya, xa, grad)[0], torch.autograd.grad(yb, xb, grad)[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not packing_works(torch.bfloat16, True),
                    reason="oneDNN packs no bf16 convolution weights on this CPU (it has no bf16 instructions)")
def test_packing_check_works_inside_no_grad_and_autocast():
    packing_works.cache_clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert packing_works(torch.bfloat16, True)
    packing_works.cache_clear()


# --- in the engine -------------------------------------------------------------------------------------------------

WRN = [item for item in FAST if not item.startswith("model.")] + [
    "model.name=wideresnet", "model.depth=10", "model.widen_factor=1", "train.precision=bf16"]


@pytest.mark.slow
def test_bf16_training_with_folding_resumes_exactly_and_says_so(tmp_path, monkeypatch, caplog):
    """Also where bf16 is emulated (about 7x slower: 64 s against 9 s here with oneDNN capped at AVX2), since folding
    then takes the unpacked F.conv2d path."""
    caplog.set_level(logging.INFO, logger="fairadv.train.engine")
    recipe = fairadv.Recipe.load(ROOT / "recipes" / "trades_digits.toml", WRN)
    full_dir, cut_dir = full_and_resumed(recipe, tmp_path, monkeypatch)
    assert metrics(cut_dir) == metrics(full_dir)
    assert json.loads((cut_dir / "summary.json").read_text()) == json.loads((full_dir / "summary.json").read_text())
    assert "precision bf16" in caplog.text and "fold_bn on (" in caplog.text


# --- CPUs without bf16 instructions --------------------------------------------------------------------------------

NO_BF16 = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}  # caps oneDNN below bf16: what an AVX2-only CPU gives


def test_bf16_detection_honours_a_onednn_isa_cap(monkeypatch):
    cpu_bf16_native.cache_clear()
    try:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        assert not cpu_bf16_native()
        assert "is emulated" in resolve_speed(CPU, "bf16").warning
        assert resolve_speed(CPU, "fp32").warning is None and resolve_speed(CPU).warning is None
    finally:
        cpu_bf16_native.cache_clear()


@pytest.mark.slow
def test_emulated_bf16_run_starts_with_a_one_line_warning(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fairadv", "run", str(ROOT / "recipes" / "trades_digits.toml"),
                           "--out", str(tmp_path), "--quiet", "--set", "train.precision=bf16",
                           "--set", "train.epochs=1", "--set", "attack.steps=1", "--set", "eval.n=20",
                           "--set", "eval.attack.steps=1"], capture_output=True, text=True, cwd=ROOT, env=NO_BF16)
    assert proc.returncode == 0, proc.stderr
    first, *rest = proc.stderr.splitlines()
    assert first.startswith("warning: train.precision = 'bf16': this CPU has no bf16 instructions")
    assert 'precision = "fp32"' in first and not any("bf16" in line for line in rest)


@pytest.mark.slow
def test_train_step_benchmark_leaves_out_emulated_bf16(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--model", "small_cnn",
                           "--batch-size", "4", "--rounds", "1", "--device", "cpu"],
                          capture_output=True, text=True, cwd=ROOT, env=NO_BF16)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("bf16 modes left out: this CPU has no bf16 instructions")
    rows = [line.split()[0] for line in lines[4:]]  # after the note, the title, the header and the reference
    assert rows and set(rows) == {"fp32"}, proc.stdout
