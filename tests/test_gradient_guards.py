"""A one-image pass gives the same input gradient as a batch (models/gradient_guards.py):
torch's eval-mode BatchNorm backward is wrong at batch 1 when the gradient from above is not
contiguous, as in XCiT's patch embedding."""

import torch

from xaicompare.attribution import explain
from xaicompare.models.zoo import load_zoo


def _directional(model, image, target, direction, eps=1e-5):
    with torch.no_grad():
        up = model(image + eps * direction)[0, target]
        down = model(image - eps * direction)[0, target]
    return float((up - down) / (2 * eps))


def test_one_image_gradient_equals_the_batched_one_and_a_finite_difference():
    model = load_zoo(["shapes-xcit"])[0].double()  # has BatchNorm before flatten + transpose
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        target = model(images).argmax(1)
    batched = explain(model, images, "input_x_gradient", target, reduction="sum")
    alone = explain(model, images[:1], "input_x_gradient", target[:1], reduction="sum")
    scale = batched[0].abs().max()
    assert (alone[0] - batched[0]).abs().max() <= 1e-9 * scale  # was 0.86 of the max
    # the map's sum is the directional derivative along the image itself: check it against
    # a finite difference of the model (independent of autograd)
    fd = _directional(model, images[:1], int(target[0]), images[:1])
    assert abs(float(alone[0].sum()) - fd) <= 1e-6 * max(1.0, abs(fd))


def test_guarded_batchnorm_keeps_in_place_activations_working():
    import timm

    model = timm.create_model("resnet10t", pretrained=False, num_classes=5).double().eval()
    assert any(getattr(m, "inplace", False) for m in model.modules())  # BN -> ReLU(inplace)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 48, 48, dtype=torch.float64)
    target = torch.tensor([0, 3])
    batched = explain(model, images, "saliency", target)
    alone = explain(model, images[1:], "saliency", target[1:])
    assert torch.allclose(alone[0], batched[1], rtol=0, atol=1e-12 * float(batched[1].max()))
