"""Penultimate features from the logits' own forward pass, against timm's pre_logits path."""

from __future__ import annotations

import timm
import torch
from torch import nn

import xaicompare as xc
from xaicompare.models.representation import logits_and_features
from xaicompare.models.zoo import load_zoo


def test_zoo_features_equal_timm_pre_logits():
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for model in load_zoo(["shapes-resnet", "shapes-pvt", "shapes-mixer"]):
        with torch.no_grad():
            logits, feats = logits_and_features(model, images)
            x = model.preprocess(images)
            ref = model.net.forward_head(model.net.forward_features(x), pre_logits=True)
            torch.testing.assert_close(logits, model(images))  # the same pass, unchanged
        torch.testing.assert_close(feats, ref.flatten(1))


def test_distilled_model_reads_the_first_head_and_user_module_its_last_linear():
    net = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32,
                            patch_size=8, depth=2, num_classes=5)
    model = xc.load_model(net, family="transformer", input_size=32, class_indices=None,
                          probe=False)
    with torch.no_grad():
        _, feats = logits_and_features(model, torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, net.embed_dim)
    user = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    model = xc.load_model(user, input_size=16, class_indices=None, probe=False)
    with torch.no_grad():
        _, feats = logits_and_features(model, torch.rand(2, 3, 16, 16))
    assert feats.shape == (2, 6)
    headless = xc.load_model(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1),
                                           nn.Flatten()), input_size=16, class_indices=None,
                             probe=False)
    with torch.no_grad():
        _, feats = logits_and_features(headless, torch.rand(2, 3, 16, 16))
    assert feats.shape == (2, 0)
