"""Every registered model, plus one timm model, through the same contract checks (timm's registry-wide tests)."""

from __future__ import annotations

import typing

import pytest
import torch
import torch.nn.functional as F

from fairadv.errors import FairadvError
from fairadv.models import MODELS, TimmModel, create_model

# Hyperparameters that keep the big defaults fast on a CPU (WRN-34-10 has 46M parameters). timm zero-initialises
# each block's last BN scale, which blocks the gradient of the block's convs at step 0; turn that off here.
FAST = {"wideresnet": {"depth": 10, "widen_factor": 1}, "timm:resnet18": {"zero_init_last": False}}
NAMES = MODELS.names() + ["timm:resnet18"]


def build(name: str, num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes, in_channels, input_size, **FAST.get(name, {}))


@pytest.mark.parametrize("name", MODELS.names())
def test_factory_hints_resolve(name):
    hints = typing.get_type_hints(MODELS.get(name))
    assert {"num_classes", "in_channels", "input_size"} <= set(hints)
    assert all(p.name in hints for p in MODELS.params(name))


@pytest.mark.parametrize("name", NAMES)
def test_logits_shape_and_feature_split(name):
    model = build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert logits.shape == (2, 10)
        assert features.shape == (2, model.classifier.in_features)
        torch.testing.assert_close(model.forward_head(features), logits)
    assert isinstance(model.classifier, torch.nn.Linear)
    assert model.classifier.out_features == 10


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    model = build(name).train()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 7])
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "in_channels", "input_size", "features"), [
    ("small_cnn", 1, (8, 8), 128),  # scikit-learn digits
    ("small_cnn", 3, (32, 32), 128),
    ("mlp", 1, (1, 16), 128),  # the Gaussian set: (1, 1, d)
    ("resnet18", 3, (64, 64), 2048),  # STL-10 at 64x64 keeps avg_pool2d(4): a 2x2 map
    ("preact_resnet18", 3, (64, 64), 2048),
    ("preact_resnet18_frl", 3, (64, 64), 2048),
    ("resnet18", 1, (25, 40), 512),  # the smallest size with a 1x1 pooled map in height
    ("wideresnet", 1, (8, 8), 64),
])
def test_other_input_shapes(name, in_channels, input_size, features):
    model = build(name, num_classes=7, in_channels=in_channels, input_size=input_size).eval()
    assert model.classifier.in_features == features
    with torch.no_grad():
        assert model(torch.rand(2, in_channels, *input_size)).shape == (2, 7)


def test_small_cnn_batchnorm_adds_a_norm_per_conv_and_keeps_the_plain_layout():
    plain = create_model("small_cnn", 10, 1, (8, 8))
    normed = create_model("small_cnn", 10, 1, (8, 8), batchnorm=True)
    assert [n for n, m in normed.named_modules() if isinstance(m, torch.nn.BatchNorm2d)] == ["bn1", "bn2", "bn3"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert set(plain.state_dict()) < set(normed.state_dict())  # plain checkpoints keep their keys
    assert [(n, p.shape) for n, p in plain.named_parameters()] == [
        (n, p.shape) for n, p in normed.named_parameters() if not n.startswith("bn")]


def test_mlp_depth_zero_is_linear():
    model = create_model("mlp", 3, 1, (1, 5), depth=0)
    assert [n for n, _ in model.named_parameters()] == ["fc.weight", "fc.bias"]
    x = torch.rand(4, 1, 1, 5)
    torch.testing.assert_close(model.forward_features(x), x.flatten(1))


def test_resnet_too_small_input_raises():
    with pytest.raises(FairadvError, match="at least 25x25"):
        create_model("resnet18", 10, 1, (8, 8))


def cifar_resnet18_layout(num_classes: int = 10) -> dict[str, tuple[int, ...]]:
    """{key: shape} of the ResNet-18 that the TRADES / DAFA code (kuangliu's pytorch-cifar) saves."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3)}

    def bn(prefix: str, c: int) -> None:
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{stat}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    in_planes = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p, cin = f"layer{i}.{b}", in_planes if b == 0 else planes
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if b == 0 and i > 1:
                shapes[f"{p}.shortcut.0.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.shortcut.1", planes)
        in_planes = planes
    shapes["linear.weight"] = (num_classes, 512)
    shapes["linear.bias"] = (num_classes,)
    return shapes


def test_resnet18_state_dict_is_the_cifar_layout():
    layout = cifar_resnet18_layout()
    assert len(layout) == 122
    state = build("resnet18").state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == layout


def test_resnet18_loads_a_dataparallel_checkpoint_strictly():
    gen = torch.Generator().manual_seed(3)
    checkpoint = {}  # as saved from nn.DataParallel: every key under "module."
    for key, shape in cifar_resnet18_layout().items():
        if key.endswith("num_batches_tracked"):
            checkpoint["module." + key] = torch.tensor(5)
        else:
            checkpoint["module." + key] = torch.rand(shape, generator=gen) + 0.5  # positive: valid running_var
    model = build("resnet18")
    model.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint.items()}, strict=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint["module." + key])


def test_preact_and_wideresnet_key_names():
    preact = build("preact_resnet18").state_dict()
    assert {"conv1.weight", "layer2.0.shortcut.0.weight", "layer1.0.bn1.weight", "bn.weight", "linear.weight"} <= set(
        preact)
    assert "layer1.0.shortcut.0.weight" not in preact
    wrn = create_model("wideresnet", 10, 3, (32, 32), depth=10, widen_factor=2).state_dict()
    assert {"conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.0.bn2.running_var", "bn1.weight",
            "fc.weight"} <= set(wrn)


def frl_preact_resnet18_layout(num_classes: int = 10) -> dict[str, tuple[int, ...]]:
    """{key: shape} of the PreAct ResNet-18 that FRL's code (hannxu123/fair_robust, pre_resnet.py) saves: no final
    ``bn``, the shortcut a bare 1x1 conv (``shortcut.0``) in the first block of stages 2-4."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3)}

    def bn(prefix: str, c: int) -> None:
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{stat}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    in_planes = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p, cin = f"layer{i}.{b}", in_planes if b == 0 else planes
            bn(f"{p}.bn1", cin)
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            if b == 0 and i > 1:
                shapes[f"{p}.shortcut.0.weight"] = (planes, cin, 1, 1)
        in_planes = planes
    shapes["linear.weight"] = (num_classes, 512)
    shapes["linear.bias"] = (num_classes,)
    return shapes


def test_frl_preact_variant_has_frls_layout_and_loads_its_checkpoint_strictly():
    model = build("preact_resnet18_frl")
    state = model.state_dict()
    assert not [k for k in state if k.startswith("bn.")]
    assert {k: tuple(v.shape) for k, v in state.items()} == frl_preact_resnet18_layout()
    # The only difference from CFA's / DAFA's PreAct ResNet-18 is the final bn.
    assert set(build("preact_resnet18").state_dict()) - set(state) == {
        f"bn.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    gen = torch.Generator().manual_seed(4)
    checkpoint = {k: torch.tensor(3) if k.endswith("num_batches_tracked") else torch.rand(s, generator=gen) + 0.5
                  for k, s in frl_preact_resnet18_layout().items()}
    model.load_state_dict(checkpoint, strict=True)
    model.eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (3, 10)
        # No BN-ReLU before the pool: the features are the pooled last block's output, sign and all.
        last = model.layer4(model.layer3(model.layer2(model.layer1(model.conv1(x)))))
        torch.testing.assert_close(model.forward_features(x), F.avg_pool2d(last, 4).flatten(1))


@pytest.mark.parametrize("params", [{"depth": 12}, {"depth": 4}, {"widen_factor": 0}, {"dropout": 1.0}])
def test_wideresnet_invalid_params_raise(params):
    with pytest.raises(FairadvError, match=next(iter(params))):
        create_model("wideresnet", 10, 3, (32, 32), **params)


def test_unknown_parameter_raises():
    with pytest.raises(FairadvError, match="widht.*width"):
        create_model("small_cnn", 10, 1, (8, 8), widht=16)


def test_unknown_timm_name_suggests_the_closest():
    with pytest.raises(FairadvError, match="did you mean 'resnet18'"):
        MODELS.get("timm:resnet181")


def test_timm_wrapper_and_extra_arguments():
    model = create_model("timm:resnet18", 5, 1, (32, 32), drop_rate=0.1)
    assert isinstance(model, TimmModel)
    assert model.model.drop_rate == 0.1
    assert MODELS.params("timm:resnet18")[0].name == "pretrained"
    with pytest.raises(FairadvError, match="rejected its arguments"):
        create_model("timm:resnet18", 5, 1, (32, 32), not_a_timm_argument=1)


def test_timm_failed_weight_download_raises(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")  # what huggingface_hub raises offline (an OSError subclass)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(FairadvError, match="set pretrained = false"):
        create_model("timm:resnet18", 10, 3, (32, 32), pretrained=True)
