"""Stand-ins shared by the engine and reliability tests: seeded images and a tiny CNN."""

import numpy as np
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
