"""Stand-ins shared by the tests: seeded images, tiny CNNs, a small timm model, grid
superpixels, a one-thread fixture and the small zoo study the study tests run."""

import numpy as np
import pytest
import torch
from torch import nn

from xaicompare.models.base import LoadedModel


class FakeImages:
    """What the runner needs of an ImageSet: `ids`, `labels`, `load(rows)`, `len()`.
    Images are uniform noise from a fixed seed, [n, 3, size, size] in [0, 1]."""

    def __init__(self, n: int, size: int, labels):
        self.images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        self.ids = [f"img{i}" for i in range(n)]
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.ids)

    def load(self, rows):
        return self.images[list(rows)]


def tiny_cnn() -> LoadedModel:
    """conv-relu-pool-linear with 3 outputs, Grad-CAM at the ReLU, seeded weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    return LoadedModel(net, name="tiny", family="cnn", cam_layer=net[1], weights_id="w0")


def noise_images(batch: int = 3, size: int = 24, dtype=torch.float64, seed: int = 1):
    """[batch, 3, size, size] uniform noise in [0, 1] from a fixed seed."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(dtype)


def cam_cnn(dtype=torch.float64, *, cam_index: int = 5, dead_channels: int = 0) -> LoadedModel:
    """conv-BN-ReLU x3 CNN with 5 outputs and non-trivial BN statistics (eval mode matters);
    Grad-CAM at `net[cam_index]`; `dead_channels` of the last conv never fire (bias -100),
    for Score-CAM's black-image shortcut."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
        net[5].bias[:dead_channels] = -100.0
    net = net.to(dtype)
    return LoadedModel(net, name="tiny_cnn", family="cnn", cam_layer=net[cam_index]).to(dtype)


def timm_resnet10t(num_classes: int = 5, input_size: int = 32) -> LoadedModel:
    """timm's resnet10t with seeded random weights in the canonical frame."""
    import timm

    import xaicompare as xc

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=num_classes)
    return xc.load_model(net, family="cnn", input_size=input_size, class_indices=None,
                         probe=False)


def segment_net(seed: int = 0, classes: int = 3, logit_scale: float = 1.0) -> nn.Module:
    """Two-conv net for the superpixel methods (KernelSHAP, LIME); `logit_scale` stretches
    the scores (a trained net's logits move by several units across coalitions)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes),
    ).eval()
    if logit_scale != 1.0:
        with torch.no_grad():
            net[-1].weight.mul_(logit_scale)
    return net


def grid_segments(rows: int, cols: int, height: int, width: int) -> torch.Tensor:
    """[height, width] superpixel ids 0..rows*cols-1 on a regular rows x cols grid."""
    r = torch.arange(height)[:, None] * rows // height
    c = torch.arange(width)[None, :] * cols // width
    return r * cols + c


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: intra-op threads only add contention on a shared CPU. Import it into a
    test module (autouse) to run that module on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def zoo_study(output, name: str, zoo, methods, *, seed: int = 3, n: int = 40, size: int = 32,
              n_images: int = 3, metrics=("cosine",), **sections):
    """A Study of offline zoo models on the shapes benchmark with a small report (one atlas,
    PNG only); `sections` (diversity=, trust=, report=...) replace the defaults."""
    from xaicompare.study import Study

    config = {
        "name": name, "output": str(output), "seed": seed,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": n, "size": size},
                    "n_images": n_images},
        "models": [{"source": f"zoo:{model}"} for model in zoo],
        "methods": methods,
        "compare": {"metrics": list(metrics)},
        "report": {"atlas_images": 1, "formats": ["png"], "depth_images": 0,
                   "disagreement_images": 0},
        **sections,
    }
    return Study.from_dict(config, progress=False)
