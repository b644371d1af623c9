"""`explain`: target resolution, input validation and error messages."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from xaicompare.attribution import METHODS, explain, explain_full, resolve_target
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel


def tiny_cnn() -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    ).double()
    return LoadedModel(net, name="tiny", family="cnn", cam_layer=net[3]).double()


def images(batch=3):
    return torch.rand(batch, 3, 12, 12, generator=torch.Generator().manual_seed(0)).double()


def captum_cam(model, x, target):
    return LayerGradCam(model, model.cam_layer).attribute(x, target=target,
                                                          relu_attributions=True)[:, 0]


def test_registered_methods():
    assert {"gradcam", "integrated_gradients", "rollout"} <= set(METHODS.names())


def test_target_none_is_the_predicted_class():
    model, x = tiny_cnn(), images()
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    torch.testing.assert_close(resolve_target(model, x, None), predicted)
    result = explain_full(model, x, "gradcam")
    torch.testing.assert_close(result.extras["native"], captum_cam(model, x, predicted))


def test_target_int_list_and_tensor():
    model, x = tiny_cnn(), images()
    torch.testing.assert_close(resolve_target(model, x, 2), torch.tensor([2, 2, 2]))
    torch.testing.assert_close(resolve_target(model, x, [0, 1, 3]), torch.tensor([0, 1, 3]))
    tensor_target = torch.tensor([3, 0, 1])
    native = explain_full(model, x, "gradcam", target=tensor_target).extras["native"]
    torch.testing.assert_close(native, captum_cam(model, x, tensor_target))
    by_int = explain_full(model, x, "gradcam", target=1).extras["native"]
    torch.testing.assert_close(by_int, captum_cam(model, x, 1))


@pytest.mark.parametrize(("target", "match"), [
    (torch.tensor([0, 1]), "2 entries for 3 images"),
    (torch.tensor([0.0, 1.0, 2.0]), "integer class indices"),
    ([0, -1, 2], ">= 0"),
    (True, "bool"),
])
def test_bad_targets(target, match):
    with pytest.raises(UserError, match=match):
        explain(tiny_cnn(), images(), "gradcam", target=target)


@pytest.mark.parametrize(("bad", "match"), [
    (torch.rand(3, 12, 12), r"\[B, 3, H, W\].*\(3, 12, 12\)"),
    (torch.rand(2, 1, 12, 12), r"\(2, 1, 12, 12\)"),
    (torch.zeros(2, 3, 12, 12, dtype=torch.uint8), "floating point"),
    (torch.rand(2, 3, 12, 12) * 255, r"in \[0, 1\]"),
    ((torch.rand(2, 3, 12, 12) - 0.45) / 0.22, "un-normalised"),
    ([[1.0]], r"\[B, 3, H, W\]"),
])
def test_bad_images(bad, match):
    with pytest.raises(UserError, match=match):
        explain(tiny_cnn(), bad, "gradcam")


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(UserError, match="did you mean 'gradcam'") as err:
        explain(tiny_cnn(), images(), "gradcm")
    assert "integrated_gradients" in str(err.value)  # lists what is accepted
    with pytest.raises(UserError, match="did you mean 'integrated_gradients'"):
        explain(tiny_cnn(), images(), "integrated_gradient")


def test_unknown_parameter_suggests_the_closest_name():
    with pytest.raises(UserError, match="no parameter 'nsteps'.*did you mean 'n_steps'"):
        explain(tiny_cnn(), images(), "integrated_gradients", nsteps=8)
    # `method` is explain's own argument; IG's quadrature rule has its own name
    with pytest.raises(UserError, match="no parameter 'upsampling'.*did you mean 'upsample'"):
        explain(tiny_cnn(), images(), "gradcam", upsampling="nearest")


def test_target_range_comes_from_class_subset_or_timm_head_without_a_forward():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=7)
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    x = torch.rand(2, 3, 32, 32)
    subset = LoadedModel(net, name="r", family="cnn", cam_layer=net.layer4,
                         class_indices=[1, 4, 6])
    with pytest.raises(UserError, match="outside the model's 3 classes"):
        resolve_target(subset, x, 3)
    assert resolve_target(subset, x, 2).tolist() == [2, 2]
    full = LoadedModel(net, name="r", family="cnn", cam_layer=net.layer4)
    with pytest.raises(UserError, match="outside the model's 7 classes"):
        resolve_target(full, x, 7)
    assert not calls  # no forward pass just to count the classes
    net.reset_classifier(5)  # the head's own count follows a new head
    with pytest.raises(UserError, match="outside the model's 5 classes"):
        resolve_target(full, x, 5)
