"""A fast subset of scripts/timm_coverage.py (the full sweep writes docs/timm_coverage.md):
every model gives a Grad-CAM map on timm's own grid that is not constant, or stops with
one clear UserError; never a silent wrong grid, never a crash."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _coverage():
    path = Path(__file__).resolve().parents[1] / "scripts" / "timm_coverage.py"
    spec = importlib.util.spec_from_file_location("timm_coverage", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


coverage = _coverage()

# module -> (model, timm kwargs that keep it small: fewer blocks, never another layout)
SUBSET = {
    "coat": ("coat_lite_tiny", {}),
    "pit": ("pit_ti_224", {}),
    "tnt": ("tnt_s_patch16_224", {"depth": 2}),
    "hrnet": ("hrnet_w18_small", {}),
    "efficientvim": ("efficientvim_m1", {}),
    "crossvit": ("crossvit_tiny_240", {"depth": ((1, 1, 0),) * 2}),
    "twins": ("twins_svt_small", {"depths": (1, 1, 1, 1)}),
    "mvitv2": ("mvitv2_tiny", {}),
    "vision_transformer_sam": ("samvit_base_patch16_224", {"depth": 2, "embed_dim": 96,
                                                           "num_heads": 2}),
    "volo": ("volo_d1_224", {}),
    "hiera": ("hiera_tiny_224", {"stages": (1, 1, 1, 1)}),
    "mlp_mixer": ("mixer_s16_224", {}),
    "deit": ("deit_tiny_distilled_patch16_224", {"depth": 2}),
    "beit": ("beit_base_patch16_224", {"depth": 2, "embed_dim": 96, "num_heads": 2}),
    "eva": ("eva02_tiny_patch14_224", {"depth": 2}),
    "cait": ("cait_xxs24_224", {"depth": 2}),
    "resnet": ("resnet18", {}),
    "convnext": ("convnext_atto", {}),
    "efficientnet": ("efficientnet_b0", {}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "regnet": ("regnetx_002", {}),
    "swin_transformer": ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}),
    "pvt_v2": ("pvt_v2_b0", {}),
    "levit": ("levit_128s", {}),
    "mobilevit": ("mobilevit_xxs", {}),
    "xcit": ("xcit_nano_12_p16_224", {"depth": 2}),
    "vision_transformer": ("vit_small_patch14_reg4_dinov2", {"depth": 2}),
    "fastvit": ("fastvit_t8", {}),
    "edgenext": ("edgenext_xx_small", {}),
    "ghostnet": ("ghostnet_050", {}),
    "gemma4_vit": ("gemma4_vit_167m", {"depth": 1}),
    "repvit": ("repvit_m0_9", {}),
}


def test_subset_covers_the_issue_modules():
    named = {"coat", "pit", "tnt", "hrnet", "efficientvim", "crossvit", "twins", "mvitv2",
             "vision_transformer_sam", "volo", "hiera", "mlp_mixer", "deit", "beit", "eva",
             "cait"}
    assert len(SUBSET) >= 30 and named <= set(SUBSET)
    assert set(SUBSET) <= set(coverage.timm_modules())


@pytest.mark.parametrize("module", list(SUBSET))
def test_right_grid_and_a_map_or_one_clear_error(module):
    name, kwargs = SUBSET[module]
    row = coverage.cover_model(module, name, methods=False, model_kwargs=kwargs)
    if not row.loaded:  # one clear line, no traceback
        assert row.status["load"] and "\n" not in row.status["load"]
        pytest.fail(f"{name} did not load: {row.status['load']}")  # none of these should
    assert row.status["gradcam"].startswith("ok"), row.status
    assert not row.grid_check.startswith("MISMATCH"), row.grid_check
    if "forward_intermediates" in row.routes:
        assert row.grid_check.startswith("= timm"), row.grid_check
    assert all(g and g[0] * g[1] > 1 for g in row.grids), row.grids
