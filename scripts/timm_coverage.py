"""Coverage of every model module of the installed timm, written to docs/timm_coverage.md.

One small model per module (random weights, the smallest input that works: img_size=64
where the model takes it), loaded with `xaicompare.load_model` as a user would. For each:
detected family, Grad-CAM route and layer at depths 0.25 / 0.5 / 0.75 / 1.0, the native
grid, a check of that grid against timm's own `forward_intermediates`, and whether
Grad-CAM (non-constant map), Integrated Gradients, KernelSHAP (tiny budgets) and rollout
run, with the failure message where one does not. Zero-initialised heads are warned
about at load and replaced by random ones here, so the maps say something.

    python scripts/timm_coverage.py                     # all modules -> docs/timm_coverage.md
    python scripts/timm_coverage.py --modules hiera,pit  # a few, printed only

tests/test_timm_coverage.py runs `cover_model` on a fast subset.
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import xaicompare as xc
from xaicompare.errors import UserError
from xaicompare.models.cam_layers import ROUTE_INTERMEDIATES, head_is_zero, resolve_layer
from xaicompare.models.intermediates import has_forward_intermediates, tensor_at

DEPTHS = (0.25, 0.5, 0.75, 1.0)
# The model tried for each module (small members; those named in issue #18 where it names
# one). A module missing here (a newer timm) gets its smallest-sounding model.
MODELS = {
    "beit": "beit_base_patch16_224", "byoanet": "botnet26t_256", "byobnet": "mobileone_s0",
    "cait": "cait_xxs24_224", "coat": "coat_tiny", "convit": "convit_tiny",
    "convmixer": "convmixer_768_32", "convnext": "convnext_atto", "cpubone": "cpubone_nano",
    "crossvit": "crossvit_tiny_240", "csatv2": "csatv2", "cspnet": "darknet17",
    "cspnext": "cspnext_tiny", "davit": "davit_tiny", "deepseek_vit": "deepseek_vit_412m",
    "deit": "deit_tiny_distilled_patch16_224", "densenet": "densenet121", "dla": "dla46_c",
    "dpn": "dpn68", "edgenext": "edgenext_xx_small", "efficientformer": "efficientformer_l1",
    "efficientformer_v2": "efficientformerv2_s0", "efficientnet": "efficientnet_b0",
    "efficientvim": "efficientvim_m1", "efficientvit_mit": "efficientvit_b0",
    "efficientvit_msra": "efficientvit_m0", "eva": "eva02_tiny_patch14_224",
    "fasternet": "fasternet_t0", "fastvit": "fastvit_t8", "focalnet": "focalnet_tiny_srf",
    "gcvit": "gcvit_xxtiny", "gemma4_vit": "gemma4_vit_167m", "ghostnet": "ghostnet_050",
    "hardcorenas": "hardcorenas_a", "hgnet": "hgnetv2_b0", "hiera": "hiera_tiny_224",
    "hieradet_sam2": "sam2_hiera_tiny", "hrnet": "hrnet_w18_small", "iformer": "iformer_s",
    "inception_next": "inception_next_atto", "inception_resnet_v2": "inception_resnet_v2",
    "inception_v3": "inception_v3", "inception_v4": "inception_v4",
    "lcnetv2": "lcnetv2_small", "levit": "levit_128s", "lowformer": "lowformer_b0",
    "mambaout": "mambaout_femto", "maxxvit": "maxvit_pico_rw_256",
    "metaformer": "caformer_s18", "mlp_mixer": "mixer_s16_224",
    "mobilenetv3": "mobilenetv3_small_050", "mobilenetv5": "mobilenetv5_300m",
    "mobilevit": "mobilevit_xxs", "mvitv2": "mvitv2_tiny",
    "naflexvit": "naflexvit_base_patch16_gap", "nasnet": "nasnetalarge", "nest": "nest_tiny",
    "nextvit": "nextvit_small", "nfnet": "nf_regnet_b0", "pit": "pit_ti_224",
    "pnasnet": "pnasnet5large", "pvt_v2": "pvt_v2_b0", "qwen3_vit": "qwen3_vit_88m",
    "rdnet": "rdnet_tiny", "regnet": "regnetx_002", "repghost": "repghostnet_050",
    "repvit": "repvit_m0_9", "res2net": "res2net50_14w_8s", "resnest": "resnest14d",
    "resnet": "resnet18", "resnetv2": "resnetv2_18", "rexnet": "rexnet_100",
    "selecsls": "selecsls42b", "senet": "legacy_seresnet18", "sequencer": "sequencer2d_s",
    "shvit": "shvit_s1", "sknet": "skresnet18", "starnet": "starnet_s050",
    "swiftformer": "swiftformer_xs", "swin_transformer": "swin_tiny_patch4_window7_224",
    "swin_transformer_v2": "swinv2_tiny_window8_256",
    "swin_transformer_v2_cr": "swinv2_cr_tiny_224", "tiny_vit": "tiny_vit_5m_224",
    "tnt": "tnt_s_patch16_224", "tresnet": "tresnet_m", "twins": "twins_svt_small",
    "vgg": "vgg11", "visformer": "visformer_tiny",
    "vision_transformer": "vit_tiny_patch16_224",
    "vision_transformer_hybrid": "vit_tiny_r_s16_p8_224",
    "vision_transformer_relpos": "vit_relpos_small_patch16_224",
    "vision_transformer_sam": "samvit_base_patch16_224", "vitamin": "vitamin_small_224",
    "volo": "volo_d1_224", "vovnet": "ese_vovnet19b_dw", "xception": "legacy_xception",
    "xception_aligned": "xception41", "xcit": "xcit_nano_12_p16_224",
}
# Further models of issue #18: the second Twins, a ViT with registers, a distilled DeiT's
# sibling without distillation, CoaT-Lite.
EXTRA = {"twins": ["twins_pcpvt_small"], "vision_transformer": ["vit_small_patch14_reg4_dinov2"],
         "coat": ["coat_lite_tiny"], "deit": ["deit_tiny_patch16_224"]}
_SMALL_WORDS = ("pico", "atto", "femto", "nano", "xxs", "xs", "tiny", "mini", "small", "s0",
                "b0", "m0", "t0", "18")


def timm_modules() -> dict[str, list[str]]:
    """Model module (last dotted part) -> its registered model names."""
    import timm
    from timm.models import _registry

    modules: dict[str, list[str]] = collections.defaultdict(list)
    for name in timm.list_models():
        module = _registry._model_entrypoints[name].__module__
        if module.startswith("timm."):  # not architectures others registered (the zoo's)
            modules[module.split(".")[-1]].append(name)
    return dict(sorted(modules.items()))


def choose(module: str, names: list[str]) -> list[str]:
    if module in MODELS and MODELS[module] in names:
        return [MODELS[module], *EXTRA.get(module, [])]

    def size_rank(name: str) -> tuple:
        rank = next((i for i, w in enumerate(_SMALL_WORDS) if w in name), len(_SMALL_WORDS))
        return rank, len(name), name
    return [sorted((n for n in names if not n.startswith("test_")), key=size_rank)[0]]


@dataclass
class Row:
    module: str
    model: str
    size: int | None = None
    family: str = ""
    routes: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    grids: list[tuple[int, int]] = field(default_factory=list)
    grid_check: str = ""
    zero_head: bool = False
    status: dict[str, str] = field(default_factory=dict)  # method -> "ok" | message
    seconds: float = 0.0

    @property
    def loaded(self) -> bool:
        return self.size is not None


def load_small(name: str, sizes=(64, 56, 96, 112, 128), model_kwargs: dict | None = None,
               largest_default: int = 256):
    """`xc.load_model` at the smallest size that works: img_size=s where the model takes
    it (56 and 112 for patch 14), else the plain model at s, else its default size when
    that is at most `largest_default`. Returns (model, size)."""
    import timm

    problems = []
    for size in sizes:
        for kwargs in ({"img_size": size}, {}):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = xc.load_model(name, pretrained=False, input_size=size,
                                          class_indices=None, **kwargs, **(model_kwargs or {}))
                return model, size
            except Exception as err:  # noqa: BLE001 - the next size may work
                problems.append(f"{size}px{' img_size' if kwargs else ''}: {_line(err)}")
    default = timm.get_pretrained_cfg(name)
    side = int(default.input_size[-1]) if default is not None else 224
    if side > largest_default:
        raise UserError(f"{problems[-1]} (and its default {side} px is too large for the sweep)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xc.load_model(name, pretrained=False, class_indices=None,
                                 **(model_kwargs or {})), side
    except Exception as err:  # noqa: BLE001 - reported in the table
        problems.append(f"{side}px: {_line(err)}")
        raise UserError(problems[-1]) from None


def _line(err: BaseException) -> str:
    text = (str(err).splitlines() or [type(err).__name__])[0]
    return f"{type(err).__name__}: {text}"[:220]


def randomise_zero_head(net: nn.Module) -> bool:
    """timm zero-initialises some heads; give them random weights (True if it did)."""
    if not head_is_zero(net):
        return False
    heads = net.get_classifier()
    for p in (p for h in (heads if isinstance(heads, tuple) else (heads,)) for p in h.parameters()):
        if p.dim() > 1:
            nn.init.normal_(p, std=0.02)
    return True


def randomise_norms(net: nn.Module) -> bool:
    """Random affine weights in every BatchNorm (True if there was one)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.affine]
    with torch.no_grad():
        for norm in norms:
            norm.weight.normal_(1.0, 0.5)
            norm.bias.normal_(0.0, 0.5)
    return bool(norms)


def check_against_timm(model, cams) -> str:
    """Each depth's map against timm's forward_intermediates on a fresh image: 'equal'
    when values match one of timm's maps, 'shape' when only its shape does (the input of
    a last block standing in for it), else what differs; for the hook route the grids
    timm's feature reductions give."""
    net, size = model.net, model.input_size
    images = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(5))
    normalised = model.preprocess(images)
    if not any(c.route == ROUTE_INTERMEDIATES for c in cams):
        return "hook route"
    with torch.no_grad():
        timm_maps = net.forward_intermediates(normalised, indices=None, norm=False,
                                              intermediates_only=True)
        verdicts = []
        for cam in cams:
            captured = []
            handle = cam.module.register_forward_hook(
                lambda m, i, o, captured=captured: captured.append(o))
            try:
                net(normalised)
            finally:
                handle.remove()
            ours = cam.to_nchw(tensor_at(captured[0], cam.path))
            if any(t.shape == ours.shape and torch.allclose(t, ours, rtol=1e-4, atol=1e-5)
                   for t in timm_maps):
                verdicts.append("equal")
            elif any(t.shape == ours.shape for t in timm_maps):
                verdicts.append("shape")
            else:
                verdicts.append(f"MISMATCH {tuple(ours.shape)}")
    worst = next((v for v in verdicts if v.startswith("MISMATCH")), None)
    return worst or ("= timm" if set(verdicts) == {"equal"} else "= timm (shape at 1.0)")


def gradcam_status(model, images) -> str:
    from xaicompare.attribution import explain_full

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the predicted class, signed: a random model's ReLU map may be all zero
            native = explain_full(model, images, "gradcam", relu=False).extras["native"]
    except Exception as err:  # noqa: BLE001 - reported in the table
        return _line(err)
    if float(native.max() - native.min()) <= 0:
        return f"constant map on {tuple(native.shape[-2:])}"
    return "ok"


def method_status(model, images, method: str, **params) -> str:
    from xaicompare.attribution import explain

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            maps = explain(model, images, method, target=0, **params)
    except UserError as err:
        return _line(err).removeprefix("UserError: ")
    except Exception as err:  # noqa: BLE001
        return _line(err)
    if not torch.isfinite(maps).all():
        return "non-finite map"
    return "ok"


def cover_model(module: str, name: str, methods: bool = True,
                model_kwargs: dict | None = None) -> Row:
    """One row of the table; `model_kwargs` (e.g. a smaller depth) go to timm."""
    start = time.perf_counter()
    row = Row(module, name)
    try:
        model, size = load_small(name, model_kwargs=model_kwargs)
    except UserError as err:
        row.status["load"] = str(err)
        row.seconds = time.perf_counter() - start
        return row
    row.size, row.family = size, model.family
    row.status["load"] = "ok"
    row.zero_head = randomise_zero_head(model.net)
    try:
        cams = [resolve_layer(model, depth) for depth in DEPTHS]
    except Exception as err:  # noqa: BLE001 - reported in the table
        row.status["gradcam"] = _line(err).removeprefix("UserError: ")
        row.seconds = time.perf_counter() - start
        return row
    row.routes = [c.route for c in cams]
    row.layers = [c.name + (f"[{','.join(map(str, c.path))}]" if c.path else "") for c in cams]
    row.grids = [c.grid for c in cams]
    try:
        row.grid_check = (check_against_timm(model, cams) if has_forward_intermediates(model.net)
                          else "no forward_intermediates")
    except Exception as err:  # noqa: BLE001 - timm's own call fails: nothing to compare
        row.grid_check = f"timm's forward_intermediates fails ({_line(err)[:60]})"
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    row.status["gradcam"] = gradcam_status(model, images)
    if row.status["gradcam"].startswith("constant") and randomise_norms(model.net):
        # some inits make every position alike (LeViT, zero-init residual norms)
        row.status["gradcam"] = gradcam_status(model, images).replace("ok", "ok (random norms)")
    if methods:
        row.status["ig"] = method_status(model, images, "integrated_gradients", n_steps=4)
        row.status["kernelshap"] = method_status(model, images, "kernelshap", n_samples=16,
                                                 n_segments=8)
        row.status["rollout"] = method_status(model, images, "rollout")
    row.seconds = time.perf_counter() - start
    return row


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _status(row: Row, method: str) -> str:
    value = row.status.get(method, "")
    if len(value) > 140:
        value = value[:137] + "..."
    return value if value.startswith("ok") else ("—" if not value else f"✗ {_cell(value)}")


def render(rows: list[Row], seconds: float, timm_version: str) -> str:
    modules = {r.module for r in rows}
    good = [r for r in rows if r.status.get("gradcam", "").startswith("ok")
            and not r.grid_check.startswith("MISMATCH")]
    errors = [r for r in rows if r not in good]
    counts = {m: sum(r.status.get(m) == "ok" for r in rows)
              for m in ("ig", "kernelshap", "rollout")}
    mismatches = sum(r.grid_check.startswith("MISMATCH") for r in rows)
    lines = [
        "# Coverage of timm's model modules",
        "",
        f"Generated by `scripts/timm_coverage.py` with timm {timm_version} "
        f"({seconds / 60:.0f} min on 2 CPU cores); do not edit by hand.",
        "",
        f"**{len(modules)} modules, {len(rows)} models: {len(good)} give a Grad-CAM map on "
        f"the right grid that is not constant; {len(errors)} stop with an error message; "
        f"{mismatches} wrong grids.** Integrated Gradients runs on {counts['ig']}, "
        f"KernelSHAP on {counts['kernelshap']}, attention rollout on {counts['rollout']}.",
        "",
        "Random weights; a zero-initialised classifier head (marked 0-head: every gradient "
        "explanation would be zero, and `load_model` warns) is replaced by a random one. "
        "Route `forward_intermediates`: the map timm's own `forward_intermediates()` "
        "returns at that depth; `= timm` means every depth's map equals timm's exactly, "
        "`(shape at 1.0)` that the deepest map is the last block's input because the last "
        "block's patch tokens feed nothing the head reads (cls pooling). Route `hook`: a "
        "module output accepted on a grid of timm's feature reductions. Grids are at the "
        "input size shown.",
        "",
        "| module | model | px | family | route | layer @0.25 / 0.5 / 0.75 / 1.0 | grids "
        "| grid check | Grad-CAM | IG | KernelSHAP | rollout |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r.loaded:
            lines.append(f"| {r.module} | {r.model} | | | | | | | ✗ {_cell(r.status['load'])} "
                         "| | | |")
            continue
        route = "/".join(dict.fromkeys("fi" if x == ROUTE_INTERMEDIATES else x
                                       for x in r.routes)) or "—"
        grids = " / ".join("x".join(map(str, g)) if g else "?" for g in r.grids)
        family = r.family + (" (0-head)" if r.zero_head else "")
        lines.append(
            f"| {r.module} | {r.model} | {r.size} | {family} | {route} | "
            f"{_cell(' / '.join(r.layers))} | {grids} | {_cell(r.grid_check)} | "
            f"{_status(r, 'gradcam')} | {_status(r, 'ig')} | {_status(r, 'kernelshap')} | "
            f"{_status(r, 'rollout')} |")
    lines += ["", "Route fi = forward_intermediates."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import timm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/timm_coverage.md")
    parser.add_argument("--modules", default=None, help="comma-separated modules (print only)")
    args = parser.parse_args()
    torch.manual_seed(0)
    modules = timm_modules()
    wanted = args.modules.split(",") if args.modules else list(modules)
    start, rows = time.perf_counter(), []
    for module in wanted:
        for name in choose(module, modules[module]):
            torch.manual_seed(0)
            row = cover_model(module, name)
            rows.append(row)
            print(f"{module:26s} {name:34s} {row.seconds:6.1f}s {row.family:11s} "
                  f"{row.grid_check:22s} {row.status}", flush=True)
    seconds = time.perf_counter() - start
    text = render(rows, seconds, timm.__version__)
    if args.modules:
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
