"""The compiled training model (`fairadv.train.compiled`): every pass compiles once and agrees with eager mode.

Graphs are counted with a torch.compile backend that records each graph Dynamo hands it (one per compilation or
recompilation) and then runs it through AOTAutograd, as inductor does, so the guards are the real ones.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model, synthetic_batch
from helpers import DIGITS, invoke, sets, stderr_lines
from torch._dynamo.backends.registry import lookup_backend

import fairadv
from fairadv.attacks import PGD
from fairadv.objectives import TRADES
from fairadv.policy import ClassPolicy
from fairadv.train.compiled import CompiledModel, cuda_graphs_note
from fairadv.train.precision import resolve_speed


class GraphCounter:
    """A torch.compile backend that records each graph it compiles (name of the compiled function, example inputs)."""

    def __init__(self) -> None:
        self.graphs: list[tuple[str, list[torch.Tensor]]] = []
        self._aot_eager = lookup_backend("aot_eager")

    def __call__(self, gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> object:
        self.graphs.append((gm.meta.get("dynamo_compile_id", ""), list(inputs)))
        return self._aot_eager(gm, inputs)


def train_epoch(train_model: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                policy: ClassPolicy, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """TRADES steps with a 3-step PGD, as the engine takes them (the engine sets the plain model to train mode)."""
    attack, objective = PGD(eps=0.1, step_size=0.03, steps=3, random_start="normal"), TRADES(beta=6.0)
    model.train()
    for x, y in batches:
        out = objective(train_model, x, y, attack, policy)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()


def test_each_pass_compiles_once_across_steps_epochs_policies_and_modes():
    torch._dynamo.reset()
    counter, model = GraphCounter(), make_tiny_model()
    train_model = CompiledModel(model, backend=counter)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = synthetic_batch(30)
    # fresh tensors, as a data loader yields them; a short last batch, as without drop_last
    batches = [(x[i:i + 12].clone(), y[i:i + 12].clone()) for i in (0, 12, 24)]
    uniform = ClassPolicy.uniform(3)

    train_epoch(train_model, model, optimizer, uniform, batches)
    warm = len(counter.graphs)
    # per batch shape (12, then 6): the attack's clean no-grad pass, its gradient pass and the training pass
    assert warm == 6
    # the end of an epoch: the plain model evaluated in eval mode, a new learning rate, a new per-class policy
    model.eval()
    with torch.no_grad():
        model(x)
    optimizer.param_groups[0]["lr"] = 0.01
    policy = ClassPolicy(ce_weight=[1.0, 2.0, 0.5], kl_weight=[1.0] * 3, eps_scale=[0.5, 1.0, 1.5],
                         beta_scale=[1.0] * 3)
    train_epoch(train_model, model, optimizer, policy, batches)
    # an eval-mode switch of the training model itself (a strategy's measurement pass), then training again
    train_model.eval()
    with torch.no_grad():
        train_model(x[:12])
    train_model.train()
    train_epoch(train_model, model, optimizer, uniform, batches)
    assert len(counter.graphs) == warm, "recompiled after warm-up"


def test_the_attack_pass_sees_every_optimizer_step_and_batchnorm_update():
    """The compiled eval-mode function takes the parameters as detached views and the BatchNorm statistics from the
    module: after training steps (in-place updates of both) it must give what the eager model gives, not what the
    model was when it compiled."""
    torch._dynamo.reset()
    model = make_tiny_model()
    compiled = CompiledModel(model, backend=GraphCounter())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = synthetic_batch(12)
    first = None
    for _ in range(3):
        model.eval()
        with torch.no_grad():
            got, want = compiled(x), model(x)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        first = got if first is None else first
        model.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(compiled(x), y).backward()
        optimizer.step()
    assert not torch.allclose(got, first)  # the steps did move the model


def test_the_attack_gradient_pass_differentiates_the_input_only():
    torch._dynamo.reset()
    counter, model = GraphCounter(), make_tiny_model()
    train_model = CompiledModel(model, backend=counter).eval()
    x = synthetic_batch(8)[0].requires_grad_(True)
    torch.autograd.grad(train_model(x).sum(), x)
    (_, inputs), = counter.graphs
    needing_grad = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    assert [tuple(t.shape) for t in needing_grad] == [tuple(x.shape)]  # the images, not the parameters
    assert all(p.grad is None for p in model.parameters())


def test_compile_setting_builds_the_compiled_model():
    model = make_tiny_model()
    prepared = resolve_speed(torch.device("cpu"), "fp32", compile=True).prepare_model(model)
    assert isinstance(prepared, CompiledModel) and prepared.model is model
    assert sum(1 for _ in prepared.parameters()) == sum(1 for _ in model.parameters())  # not registered twice


def test_cuda_graphs_are_picked_on_cuda_only_and_the_cpu_says_why():
    cpu = resolve_speed(torch.device("cpu"), "fp32", False, True)
    assert not cpu.cuda_graphs and cuda_graphs_note(cpu.device) is not None
    assert "compile on (CUDA graphs off: they need a CUDA device, this run is on cpu)" in cpu.describe()
    assert not cpu.prepare_model(make_tiny_model()).cuda_graphs
    cuda = resolve_speed(torch.device("cuda"), "fp32", False, True)  # resolving needs no GPU
    assert cuda.cuda_graphs and "compile on (attack in CUDA graphs)" in cuda.describe()
    assert not resolve_speed(torch.device("cuda"), "fp32", False, False).cuda_graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU; this machine has none")
def test_cuda_graph_training_steps_agree_with_eager():
    torch._dynamo.reset()
    eager, model = make_tiny_model().cuda(), make_tiny_model().cuda()
    compiled = CompiledModel(model, cuda_graphs=True)
    x, y = (t.cuda() for t in synthetic_batch(16))
    attack, objective = PGD(eps=0.1, step_size=0.03, steps=5), TRADES(beta=6.0)
    policy = ClassPolicy.uniform(3).to("cuda")
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, model)]
    for _ in range(3):  # steps after capture replay the graphs with the updated parameters
        losses = []
        for net, optimizer in zip((eager, compiled), optimizers, strict=True):
            net.train()
            torch.manual_seed(0)
            out = objective(net, x, y, attack, policy)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            losses.append(out.loss.detach())
        torch.testing.assert_close(losses[1], losses[0], atol=1e-4, rtol=1e-4)
    for got, want in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_inductor_agrees_with_eager_in_fp32():
    """Logits, input gradients, the TRADES loss and parameter gradients of a step with inductor: equal to eager."""
    torch._dynamo.reset()
    eager, model = make_tiny_model(), make_tiny_model()
    compiled = CompiledModel(model)
    x, y = synthetic_batch(16)
    for mode in ("eval", "train"):
        for net in (eager, compiled):
            getattr(net, mode)()
        gradients, logits = [], []
        for net in (eager, compiled):
            xg = x.clone().requires_grad_(True)
            out = net(xg)
            logits.append(out.detach())
            gradients.append(torch.autograd.grad(torch.log_softmax(out, 1)[:, 0].sum(), xg)[0])
        torch.testing.assert_close(logits[1], logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-5)
    attack = PGD(eps=0.1, step_size=0.03, steps=3, random_start="normal")  # at x itself the KL gradient is 0
    losses = []
    for net, params in ((eager, eager), (compiled, model)):
        net.train()
        torch.manual_seed(0)
        out = TRADES(beta=6.0)(net, x, y, attack, ClassPolicy.uniform(3))
        out.loss.backward()
        losses.append((out.loss.detach(), [p.grad for p in params.parameters()]))
    torch.testing.assert_close(losses[1][0], losses[0][0], atol=1e-5, rtol=1e-5)
    for got, want in zip(losses[1][1], losses[0][1], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# --- compile = "auto" -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "epochs", "fold_bn", "picked", "why"), [
    ("cuda", 110, None, True, "compile on (auto: on for CUDA and 110 epochs; attack in CUDA graphs)"),
    ("cuda", 3, None, False, "compile off (auto: off for 3 epochs, too few to win back its compile time)"),
    ("cpu", 110, None, False, "compile off (auto: off on the CPU, where it does not win back its compile time)"),
    ("cuda", 110, True, False, "compile off (auto: off, fold_bn = true needs the eager model)"),
])
def test_auto_compile_picks_by_device_and_run_length_and_says_why(device, epochs, fold_bn, picked, why):
    for setting in ("auto", None):  # unset is automatic
        speed = resolve_speed(torch.device(device), "fp32", False, setting, fold_bn, epochs=epochs)
        assert speed.compile is picked
        assert why in speed.describe()
    explicit = resolve_speed(torch.device(device), "fp32", False, True, epochs=epochs)
    assert explicit.compile and "auto" not in explicit.describe()  # an explicit choice needs no reason


def test_recipe_compile_takes_true_false_or_auto_and_names_a_bad_value():
    recipe = fairadv.Recipe.load(DIGITS)
    assert [recipe.override(f"train.compile={v}").train.compile for v in ("true", "false", "auto")] == [
        True, False, "auto"]
    result = invoke("validate", DIGITS, *sets("train.compile=maybe"))
    assert result.exit_code == 2
    line = f"error: {DIGITS} (--set train.compile=maybe): train.compile = 'maybe': expected true or false or one of 'auto'"
    assert stderr_lines(result) == [line]
