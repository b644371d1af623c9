"""The published study as a user with a warm timm cache runs it, offline.

`write_hub_cache` writes random weights for timm tags into a Hugging Face cache laid out as
the hub lays it (`hub/models--timm--<tag>/snapshots/<commit>/{model.safetensors,config.json}`
plus `refs/main`), written by timm's own `save_for_hf`, so `timm.create_model(tag,
pretrained=True)` with `HF_HOME` pointing there and `HF_HUB_OFFLINE=1` runs timm's real
pretrained-loading path (hub id from the tag's cfg, safetensors download from the cache,
the model's checkpoint filter, strict load).

`write_imagenette` arranges real ImageNet photos as the imagenette2-320 folder
(`train/<wnid>/`, `val/<wnid>/`, `noisy_imagenette.csv`, shorter side 320 px) so the study's
own `dataset: {name: imagenette}` opens it.

Shared by tests/test_real_path.py and benchmarks/real_path.py; not a test module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image

from xaicompare.data.classes import IMAGENETTE_CLASSES

# ../shared/data/imagenet-samples seen from a worktree (or the checkout's parent)
SAMPLES = next((p for p in (Path(__file__).resolve().parents[2] / "shared",
                            Path("/work/shared")) if (p / "data/imagenet-samples").is_dir()),
               Path("/nonexistent")) / "data" / "imagenet-samples"
CSV_HEADER = ("path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,"
              "noisy_labels_50,is_valid")


def hub_repo_id(tag: str) -> str:
    """The hub repository timm downloads `tag`'s weights from (e.g. timm/resnet18d.ra2_in1k)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"timm tag '{tag}' has no Hugging Face hub weights")
    return cfg.hf_hub_id if "/" in cfg.hf_hub_id.rstrip("/") else f"timm/{tag}"


def write_hub_cache(hf_home: Path, tags: Iterable[str], seed: int = 0) -> dict[str, Path]:
    """Random weights for each tag in `hf_home/hub`; returns tag -> its snapshot folder.

    The weights are timm's own initialisation under `seed` (the tag's head size), stored as
    the hub stores them, so loading them back is bit-identical to the module written here.
    """
    import timm
    from timm.models import save_for_hf

    snapshots = {}
    for tag in tags:
        repo = hub_repo_id(tag)
        folder = Path(hf_home) / "hub" / ("models--" + repo.replace("/", "--"))
        commit = hashlib.sha1(f"{repo}@random-{seed}".encode()).hexdigest()  # noqa: S324
        snapshot = folder / "snapshots" / commit
        if not (snapshot / "model.safetensors").is_file():
            torch.manual_seed(seed)
            net = timm.create_model(tag, pretrained=False)
            save_for_hf(net, snapshot, safe_serialization=True)
            (folder / "refs").mkdir(parents=True, exist_ok=True)
            (folder / "refs" / "main").write_text(commit)
        snapshots[tag] = snapshot
    return snapshots


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment of a user whose timm cache is `hf_home`, with no network."""
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def imagenette_photos(samples: Path = SAMPLES) -> dict[str, Path]:
    """wnid -> the shared photo of that Imagenette class (those present)."""
    found = {}
    for cls in IMAGENETTE_CLASSES:
        matches = sorted(samples.glob(f"{cls.wnid}_*.JPEG")) if samples.is_dir() else []
        if matches:
            found[cls.wnid] = matches[0]
    return found


def write_imagenette(root: Path, photos: dict[str, Path], shorter_side: int = 320,
                     copies: int = 1) -> Path:
    """`root/imagenette2-320/` from the photos (each in val/ and, as the archive has both
    splits, in train/), resized as the published 320 px variant is; returns that folder.

    copies > 1 writes each photo that many times into val/ (copy c > 0 mirrored when c is
    odd and cropped by a few per cent), so a benchmark can reach the published 128 images.
    """
    folder = Path(root) / "imagenette2-320"
    rows = []
    for wnid, photo in sorted(photos.items()):
        with Image.open(photo) as im:
            im = im.convert("RGB")
            scale = shorter_side / min(im.size)
            resized = im.resize((round(im.width * scale), round(im.height * scale)),
                                Image.Resampling.BICUBIC)
        for split in ("train", "val"):
            for c in range(copies if split == "val" else 1):
                rel = f"{split}/{wnid}/{photo.stem}{f'_{c}' if c else ''}.JPEG"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                variant(resized, c).save(folder / rel, quality=95)
                rows.append(f"{rel},{wnid},{wnid},{wnid},{wnid},{wnid},{split == 'val'}")
    (folder / "noisy_imagenette.csv").write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    return folder


def variant(image: Image.Image, c: int) -> Image.Image:
    """Copy c of a photo: c = 0 itself, then mirrored (odd c) and cropped by c // 2 * 2 %."""
    if c == 0:
        return image
    cut = (c // 2) * 0.02
    w, h = image.size
    box = (round(w * cut), round(h * cut), w - round(w * cut / 2), h - round(h * cut / 2))
    out = image.crop(box)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if c % 2 else out


PUBLISHED = Path(__file__).resolve().parents[1] / "configs" / "imagenette-14.yaml"

# Every budget of the published config, cut to what a CI machine does in a few minutes.
# Keys are dotted paths into the study dict.
SMALL_BUDGETS: dict[str, object] = {
    "dataset.n_images": 2,
    "methods.integrated_gradients.n_steps": 4,
    "methods.kernelshap.n_samples": 16,
    "methods.kernelshap.n_segments": 8,  # the regression needs n_samples >= segments + 2
    "cluster.permutations": 49,
    "diversity.corruptions": ["gaussian_noise", "jpeg_compression"],
    "diversity.severities": [3],
    "trust.n_resamples": 50,
    "trust.stability_resamples": 20,
    "trust.sample_size_subsets": 5,
    "trust.faithfulness_images": 1,
    "trust.faithfulness_steps": 2,
    "report.atlas_images": 2,
    "report.depths": [0.5, 1.0],
    "report.depth_images": 1,
    "report.disagreement_images": 1,
    "report.formats": ["png"],
}


def published_study() -> dict:
    from xaicompare.safe_yaml import load_yaml

    return load_yaml(PUBLISHED.read_text())


def published_tags() -> list[str]:
    return [m["source"] for m in published_study()["models"]]


def narrowed_study(tags: Iterable[str], data_root: Path, output: Path,
                   budgets: dict[str, object] | None = None) -> dict:
    """The published study on `tags` only, its images under `data_root`, writing `output`,
    with `budgets` (dotted key -> value) replacing the published values; on the CPU."""
    study = published_study()
    by_source = {m["source"]: m for m in study["models"]}
    unknown = [t for t in tags if t not in by_source]
    if unknown:
        raise ValueError(f"{unknown} are not tags of {PUBLISHED.name}: {sorted(by_source)}")
    study["models"] = [by_source[t] for t in tags]
    if study.get("cluster", {}).get("k", 0) > len(study["models"]):  # k clusters need k models
        study["cluster"]["k"] = len(study["models"])
    study["dataset"]["options"]["root"] = str(data_root)
    study["output"] = str(output)
    study["executor"] = {**study.get("executor", {}), "device": "cpu"}
    for key, value in (budgets or {}).items():
        *parents, leaf = key.split(".")
        section = study
        for name in parents:
            section = section.setdefault(name, {})
        section[leaf] = value
    return study
