"""Data sets: the real torchvision loaders on tiny files in torchvision's on-disk layouts, the in-memory sets, and the
shared splitting code."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import datasets

from fairadv.data import DATASETS, DataSource, TransformedDataset, stratified_holdout
from fairadv.data.digits import stratified_split
from fairadv.data.gaussian import class_means
from fairadv.errors import FairadvError


def check_source(src: DataSource, num_classes: int) -> None:
    """The DataSource contract: labels match the items, transformed items have input_shape and lie in [0, 1]."""
    assert src.num_classes == num_classes
    for split, labels, transform in ((src.train, src.train_labels, src.train_transform),
                                     (src.test, src.test_labels, src.test_transform)):
        assert labels.dtype == torch.int64 and len(labels) == len(split)
        assert 0 <= labels.min() and labels.max() < num_classes
        view = TransformedDataset(split, None, transform)
        for i in (0, len(view) - 1):
            image, label = view[i]
            assert image.dtype == torch.float32 and tuple(image.shape) == src.input_shape
            assert 0 <= image.min() and image.max() <= 1
            assert label == labels[i]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- CIFAR ---------------------------------------------------------------------------------------------------------

def write_cifar(root: Path, cls: type, counts: dict[str, int], num_classes: int, seed: int = 0) -> dict:
    """Write tiny pickles in ``cls``'s layout; return {file name: (uint8 [N, 3072] data, labels)}.

    The real files are Python 2 pickles whose str keys load as str under ``encoding="latin1"``, so str keys here.
    """
    rng = np.random.default_rng(seed)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if cls is datasets.CIFAR10 else "fine_labels"
    written = {}
    for name, n in counts.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, num_classes, n)]
        (folder / name).write_bytes(pickle.dumps({"data": data, label_key: labels, "batch_label": name}))
        written[name] = (data, labels)
    names = [f"class{i}" for i in range(num_classes)]
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps({cls.meta["key"]: names}))
    return written


def trust_files(monkeypatch: pytest.MonkeyPatch, cls: type, folder: Path) -> None:
    """Replace torchvision's pinned md5 sums by those of the files now in ``folder``.

    torchvision checks the md5 of each file against the real data set's; tiny test files cannot match, so the test
    swaps in their own checksums. torchvision's integrity check and loading code still run unchanged. A file not
    written (STL-10's unlabeled_X.bin) keeps its pinned checksum.
    """
    def trusted(files: list) -> list:
        return [[f, md5(folder / f) if (folder / f).exists() else s] for f, s in files]

    monkeypatch.setattr(cls, "train_list", trusted(cls.train_list))
    monkeypatch.setattr(cls, "test_list", trusted(cls.test_list))
    if hasattr(cls, "meta"):
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


CIFAR_CASES = [
    ("cifar10", datasets.CIFAR10, {**{f"data_batch_{i}": 4 for i in range(1, 6)}, "test_batch": 6}, 10),
    ("cifar100", datasets.CIFAR100, {"train": 12, "test": 5}, 100),
]


@pytest.mark.parametrize("name, cls, counts, num_classes", CIFAR_CASES)
def test_cifar_loads_through_torchvision(tmp_path, monkeypatch, name, cls, counts, num_classes):
    written = write_cifar(tmp_path, cls, counts, num_classes)
    trust_files(monkeypatch, cls, tmp_path / cls.base_folder)
    src = DATASETS.create(name, root=str(tmp_path), augment=False)
    check_source(src, num_classes)
    train_files = [f for f, _ in cls.train_list]
    train_data = np.concatenate([written[f][0] for f in train_files])
    assert src.train_labels.tolist() == sum((written[f][1] for f in train_files), [])
    assert src.test_labels.tolist() == written[cls.test_list[0][0]][1]
    assert src.class_names == tuple(f"class{i}" for i in range(num_classes))
    assert src.input_shape == (3, 32, 32)
    # Without augmentation both transforms give exactly the stored pixels / 255 (CHW rows, no normalisation).
    image, _ = src.train[3]
    expected = torch.from_numpy(train_data[3].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(src.train_transform(image), expected)
    torch.testing.assert_close(src.test_transform(image), expected)


def test_cifar_augmentation_is_random_but_in_range(tmp_path, monkeypatch):
    write_cifar(tmp_path, datasets.CIFAR10, {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 2}, 10)
    trust_files(monkeypatch, datasets.CIFAR10, tmp_path / "cifar-10-batches-py")
    src = DATASETS.create("cifar10", root=str(tmp_path))
    image, _ = src.train[0]
    torch.manual_seed(0)
    views = [src.train_transform(image) for _ in range(8)]
    assert all(v.shape == (3, 32, 32) and 0 <= v.min() and v.max() <= 1 for v in views)
    assert any(not torch.equal(views[0], v) for v in views[1:])
    assert torch.equal(src.test_transform(image), src.test_transform(image))


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                          ("stl10", "stl10_binary")])
def test_missing_data_names_the_folder(tmp_path, name, folder):
    with pytest.raises(FairadvError, match=f"not found under.*{folder}.*download = true"):
        DATASETS.create(name, root=str(tmp_path / "nowhere"))


def test_incomplete_cifar_names_the_missing_file(tmp_path):
    write_cifar(tmp_path, datasets.CIFAR10, {f"data_batch_{i}": 2 for i in range(1, 6)}, 10)  # no test_batch
    with pytest.raises(FairadvError, match="cifar-10-batches-py.*incomplete: missing test_batch"):
        DATASETS.create("cifar10", root=str(tmp_path))


def test_cifar_checksum_mismatch_is_a_fairadv_error(tmp_path, monkeypatch):
    counts = {"train": 4, "test": 4}
    write_cifar(tmp_path, datasets.CIFAR100, counts, 100)
    folder = tmp_path / "cifar-100-python"
    trust_files(monkeypatch, datasets.CIFAR100, folder)
    (folder / "train").write_bytes((folder / "train").read_bytes()[:-100])  # truncated after the md5 was taken
    with pytest.raises(FairadvError, match="cifar-100-python.*corrupt"):
        DATASETS.create("cifar100", root=str(tmp_path))


@pytest.mark.parametrize("garbage", [b"not a pickle at all", None], ids=["garbage", "truncated"])
def test_cifar_unreadable_pickle_is_a_fairadv_error(tmp_path, monkeypatch, garbage):
    """A file whose checksum passes but does not unpickle (md5 trusted, as if torchvision's check were bypassed)."""
    write_cifar(tmp_path, datasets.CIFAR10, {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 2}, 10)
    folder = tmp_path / "cifar-10-batches-py"
    batch = folder / "data_batch_2"
    batch.write_bytes(garbage if garbage is not None else batch.read_bytes()[:50])
    trust_files(monkeypatch, datasets.CIFAR10, folder)
    with pytest.raises(FairadvError, match=r"cifar-10-batches-py' \(file data_batch_2\) is corrupt"):
        DATASETS.create("cifar10", root=str(tmp_path))


def test_download_only_when_asked_and_failure_is_a_fairadv_error(tmp_path, monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(FairadvError, match="not found"):
        DATASETS.create("cifar10", root=str(tmp_path))
    assert not calls
    with pytest.raises(FairadvError, match="could not be downloaded.*network unreachable") as failed:
        DATASETS.create("cifar10", root=str(tmp_path), download=True)
    assert calls
    assert "set download = true" not in str(failed.value)  # it is set already
    with pytest.raises(FairadvError, match="could not be downloaded"):
        DATASETS.create("cifar10", root=str(tmp_path / "new"), download=True)
    assert not (tmp_path / "new").exists()  # nothing half-written
    # Data present and intact: download=True does not fetch again.
    calls.clear()
    write_cifar(tmp_path, datasets.CIFAR10, {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 2}, 10)
    trust_files(monkeypatch, datasets.CIFAR10, tmp_path / "cifar-10-batches-py")
    assert len(DATASETS.create("cifar10", root=str(tmp_path), download=True).train) == 10
    assert not calls


# --- STL-10 --------------------------------------------------------------------------------------------------------

def write_stl10(root: Path, n_train: int = 4, n_test: int = 3, seed: int = 0) -> dict:
    """Write stl10_binary as torchvision reads it: uint8 images stored channel by channel, each 96x96 plane
    column-major, and uint8 labels 1..10. Returns {split: (uint8 [N, 3, 96, 96] CHW images, 0-based labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
        (folder / f"{split}_y.bin").write_bytes((labels + 1).tobytes())
        written[split] = (images, labels.astype(np.int64))
    (folder / "class_names.txt").write_text("\n".join(f"stl{i}" for i in range(10)) + "\n")
    return written


def test_stl10_loads_through_torchvision_and_resizes(tmp_path, monkeypatch):
    written = write_stl10(tmp_path)
    trust_files(monkeypatch, datasets.STL10, tmp_path / "stl10_binary")
    src = DATASETS.create("stl10", root=str(tmp_path), augment=False)
    check_source(src, 10)
    assert src.input_shape == (3, 64, 64)
    assert src.class_names == tuple(f"stl{i}" for i in range(10))
    assert src.train_labels.tolist() == written["train"][1].tolist()
    assert src.test_labels.tolist() == written["test"][1].tolist()
    image, _ = src.test[1]  # the raw image has the orientation that was written
    assert np.array_equal(np.asarray(image), written["test"][0][1].transpose(1, 2, 0))
    assert torch.equal(src.train_transform(image), src.test_transform(image))
    full = DATASETS.create("stl10", root=str(tmp_path), augment=False, image_size=96)
    torch.testing.assert_close(full.test_transform(image), torch.from_numpy(written["test"][0][1]).float() / 255)
    augmented = DATASETS.create("stl10", root=str(tmp_path))
    assert augmented.train_transform(image).shape == (3, 64, 64)


def test_stl10_does_not_need_the_unlabeled_file(tmp_path, monkeypatch):
    write_stl10(tmp_path)
    trust_files(monkeypatch, datasets.STL10, tmp_path / "stl10_binary")
    assert not (tmp_path / "stl10_binary" / "unlabeled_X.bin").exists()
    assert len(DATASETS.create("stl10", root=str(tmp_path)).train) == 4


@pytest.mark.parametrize("damage", ["checksum", "truncated", "label 0"])
def test_stl10_corrupt_is_a_fairadv_error(tmp_path, monkeypatch, damage):
    write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    if damage == "truncated":
        (folder / "train_X.bin").write_bytes((folder / "train_X.bin").read_bytes()[:1000])
    elif damage == "label 0":  # labels are 1-based on disk; 0 would wrap to 255 in torchvision's uint8 arithmetic
        (folder / "test_y.bin").write_bytes(bytes([0, 1, 2]))
    trust_files(monkeypatch, datasets.STL10, folder)
    if damage == "checksum":
        (folder / "test_y.bin").write_bytes(bytes([3, 1, 2]))
    with pytest.raises(FairadvError, match="stl10_binary.*corrupt"):
        DATASETS.create("stl10", root=str(tmp_path))


# --- imagefolder ---------------------------------------------------------------------------------------------------

def write_images(root: Path, split: str, classes: tuple[str, ...], per_class: int = 2) -> None:
    rng = np.random.default_rng(len(split))
    for name in classes:
        (root / split / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (10, 13, 3), dtype=np.uint8)  # not square: resizing must square it
            Image.fromarray(pixels).save(root / split / name / f"{i}.png")


@pytest.mark.parametrize("channels", [3, 1])
def test_imagefolder(tmp_path, channels):
    write_images(tmp_path, "train", ("cat", "dog"), per_class=3)
    write_images(tmp_path, "test", ("cat", "dog"))
    src = DATASETS.create("imagefolder", root=str(tmp_path), image_size=16, channels=channels)
    check_source(src, 2)
    assert src.class_names == ("cat", "dog")
    assert src.input_shape == (channels, 16, 16)
    assert src.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and src.test_labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FairadvError, match="train"):
        DATASETS.create("imagefolder", root=str(tmp_path))
    write_images(tmp_path, "train", ("cat", "dog"))
    with pytest.raises(FairadvError, match=r"test'? not found"):
        DATASETS.create("imagefolder", root=str(tmp_path))
    write_images(tmp_path, "test", ("cat", "cow"))
    with pytest.raises(FairadvError, match=r"same class folders.*\['dog'\].*\['cow'\]"):
        DATASETS.create("imagefolder", root=str(tmp_path))
    with pytest.raises(FairadvError, match="channels"):
        DATASETS.create("imagefolder", root=str(tmp_path), channels=2)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FairadvError, match="empty"):
        DATASETS.create("imagefolder", root=str(tmp_path), train_dir="empty")


# --- digits --------------------------------------------------------------------------------------------------------

def test_digits_shapes_range_and_stratification():
    src = DATASETS.create("digits")
    check_source(src, 10)
    assert src.input_shape == (1, 8, 8) and src.class_names == tuple("0123456789")
    assert src.train_transform is None and src.test_transform is None
    assert len(src.train) + len(src.test) == 1797
    all_labels = torch.cat([src.train_labels, src.test_labels])
    for c in range(10):
        n_c = int((all_labels == c).sum())
        assert abs(int((src.test_labels == c).sum()) - 0.3 * n_c) <= 1
    x = src.train.tensors[0]
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1  # 16 / 16 occurs


def test_digits_split_is_deterministic_and_seeded():
    a, b, c = DATASETS.create("digits"), DATASETS.create("digits"), DATASETS.create("digits", split_seed=1)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0]) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])


def test_digits_upscale_is_nearest():
    small, big = DATASETS.create("digits"), DATASETS.create("digits", upscale=4)
    assert big.input_shape == (1, 32, 32) and big.train.tensors[0].shape[1:] == (1, 32, 32)
    assert torch.equal(big.train.tensors[0][:, :, ::4, ::4], small.train.tensors[0])
    assert torch.equal(big.train.tensors[0][:, :, 3::4, 3::4], small.train.tensors[0])


@pytest.mark.parametrize("kwargs, word", [({"test_fraction": 0.0}, "test_fraction"),
                                          ({"test_fraction": 1.0}, "test_fraction"), ({"upscale": 0}, "upscale")])
def test_digits_rejects_bad_arguments(kwargs, word):
    with pytest.raises(FairadvError, match=word):
        DATASETS.create("digits", **kwargs)


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=60), st.floats(0.01, 0.99), st.integers(0, 2**31))
def test_stratified_split_partitions(labels, fraction, seed):
    labels = torch.tensor(labels * 2)  # every class needs a sample on each side
    sizes = torch.bincount(labels)
    train, test = stratified_split(labels, fraction, seed)
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(len(labels)))
    for c in torch.unique(labels):
        k = int((labels[test] == c).sum())
        assert 1 <= k < sizes[c] and (abs(k - fraction * sizes[c]) <= 1 or k in (1, sizes[c] - 1))
    assert torch.equal(stratified_split(labels, fraction, seed)[1], test)


# --- gaussian ------------------------------------------------------------------------------------------------------

def test_gaussian_shapes_range_and_determinism():
    src = DATASETS.create("gaussian", num_classes=4, dim=8, train_per_class=30, test_per_class=20)
    check_source(src, 4)
    assert src.input_shape == (1, 1, 8) and src.class_names == ("c0", "c1", "c2", "c3")
    assert src.train.tensors[0].shape == (120, 1, 1, 8) and src.test.tensors[0].shape == (80, 1, 1, 8)
    assert torch.equal(torch.bincount(src.train_labels), torch.full((4,), 30))
    again = DATASETS.create("gaussian", num_classes=4, dim=8, train_per_class=30, test_per_class=20)
    other = DATASETS.create("gaussian", num_classes=4, dim=8, train_per_class=30, test_per_class=20, seed=1)
    assert torch.equal(src.train.tensors[0], again.train.tensors[0])
    assert not torch.equal(src.train.tensors[0], other.train.tensors[0])


def test_gaussian_means_are_exactly_near_and_far():
    means = class_means(5, 8, far=0.4, near=0.1, close_pairs=((3, 1),))
    expected = torch.full((5, 5), 0.4).fill_diagonal_(0)
    expected[1, 3] = expected[3, 1] = 0.1
    torch.testing.assert_close(torch.cdist(means, means), expected.double())


def test_gaussian_close_pair_is_closer_in_the_samples():
    src = DATASETS.create("gaussian", num_classes=4, close_pairs=((0, 2),), near=0.15, far=0.4)
    x = src.train.tensors[0].flatten(1)
    means = torch.stack([x[src.train_labels == c].mean(0) for c in range(4)])
    d = torch.cdist(means, means)
    far = [d[i, j] for i in range(4) for j in range(i + 1, 4) if (i, j) != (0, 2)]
    assert abs(d[0, 2] - 0.15) < 0.03 and all(abs(v - 0.4) < 0.03 for v in far)
    assert d[0, 2] < min(far) / 2


@pytest.mark.parametrize("kwargs, word", [({"close_pairs": ((0, 1), (1, 2))}, "disjoint"),
                                          ({"close_pairs": ((0, 3),)}, "close_pairs"),
                                          ({"dim": 3}, "dim"), ({"near": 0.5, "far": 0.4}, "near"),
                                          ({"num_classes": 1}, "num_classes")])
def test_gaussian_rejects_bad_arguments(kwargs, word):
    with pytest.raises(FairadvError, match=word):
        DATASETS.create("gaussian", **kwargs)


# --- stratified_holdout (base.py) ----------------------------------------------------------------------------------

def test_stratified_holdout_example():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    train, held = stratified_holdout(labels, per_class=2, seed=0)
    assert torch.bincount(labels[held]).tolist() == [2, 2, 2]
    assert torch.equal(torch.sort(torch.cat([train, held])).values, torch.arange(10))
    with pytest.raises(ValueError, match="class 1"):
        stratified_holdout(labels, per_class=3, seed=0)


def test_first_and_last_holdouts_take_each_classs_first_or_last_samples_in_index_order():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])  # class 0 at 0, 2, 5, 9; 1 at 1, 4, 8; 2 at 3, 6, 7
    train, held = stratified_holdout(labels, per_class=2, seed=0, pick="first")
    assert held.tolist() == [0, 1, 2, 3, 4, 6]
    assert train.tolist() == [5, 7, 8, 9]
    train, held = stratified_holdout(labels, per_class=2, seed=0, pick="last")
    assert held.tolist() == [4, 5, 6, 7, 8, 9]
    assert train.tolist() == [0, 1, 2, 3]
    assert stratified_holdout(labels, 2, seed=5, pick="last")[1].tolist() == held.tolist()  # no seed involved
    assert stratified_holdout(labels, 0, seed=0, pick="last")[1].tolist() == []
    with pytest.raises(ValueError, match="class 1"):
        stratified_holdout(labels, per_class=3, seed=0, pick="first")
    with pytest.raises(ValueError, match="pick = 'middle'"):
        stratified_holdout(labels, per_class=1, seed=0, pick="middle")


def test_official_splits_on_a_cifar_sized_label_vector():
    # FRL's and WAT's loaders keep images 4,700-4,999 of each class (np.where order) for validation; CFA's
    # generate_validation.py the first 100 of each class.
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(5000)[torch.randperm(50000, generator=gen)]
    _, last = stratified_holdout(labels, 300, seed=0, pick="last")
    _, first = stratified_holdout(labels, 100, seed=0, pick="first")
    for c in range(10):
        members = torch.nonzero(labels == c).flatten()
        assert torch.equal(last[labels[last] == c], members[4700:5000])
        assert torch.equal(first[labels[first] == c], members[:100])


def test_random_holdout_is_unchanged_by_the_pick_option():
    # The default draw, pinned: recipes without data.holdout keep the hold-out they always had.
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    train, held = stratified_holdout(labels, per_class=2, seed=0)
    assert held.tolist() == [0, 1, 2, 3, 7, 8]  # what the draw gave before "first" / "last" existed
    assert stratified_holdout(labels, per_class=2, seed=7)[1].tolist() == [1, 3, 5, 7, 8, 9]
    gen = torch.Generator().manual_seed(0)  # the draw itself: one randperm per class, in class order
    expected = []
    for c in range(3):
        members = torch.nonzero(labels == c).flatten()
        expected += members[torch.randperm(len(members), generator=gen)[:2]].tolist()
    assert held.tolist() == sorted(expected)
    again = stratified_holdout(labels, per_class=2, seed=0, pick="random")
    assert torch.equal(again[0], train) and torch.equal(again[1], held)


def test_data_holdout_reaches_the_validation_split():
    from fairadv.recipe import Recipe
    from fairadv.build import build_source, split_indices

    recipe = Recipe.load(Path(__file__).parent.parent / "recipes" / "trades_digits.toml",
                         ["data.val_per_class=5"])
    labels = build_source(recipe).train_labels
    for pick in ("first", "last"):
        _, val = split_indices(recipe.override(f"data.holdout='{pick}'"), build_source(recipe))
        assert torch.equal(val, stratified_holdout(labels, 5, seed=0, pick=pick)[1])
    _, default = split_indices(recipe, build_source(recipe))
    assert torch.equal(default, stratified_holdout(labels, 5, seed=0)[1])


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.integers(0, 3), st.integers(0, 2**31))
def test_stratified_holdout_partitions(labels, per_class, seed):
    labels = torch.tensor(labels * (per_class + 1))  # every class can give per_class samples and keep one
    train, held = stratified_holdout(labels, per_class, seed)
    for c in torch.unique(labels):
        assert int((labels[held] == c).sum()) == per_class
    assert not set(train.tolist()) & set(held.tolist())
    assert torch.equal(torch.sort(torch.cat([train, held])).values, torch.arange(len(labels)))
    assert torch.equal(train, torch.sort(train).values) and torch.equal(held, torch.sort(held).values)
    again = stratified_holdout(labels, per_class, seed)
    assert torch.equal(again[0], train) and torch.equal(again[1], held)
