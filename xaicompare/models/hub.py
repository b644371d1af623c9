"""Pretrained weights from the Hugging Face hub: quiet attempts and one-line failures.

Without a network, huggingface_hub logs two lines per retry (about 22 lines, 46 s) before it
gives up; the user needs one line: the weights are not in the local cache, and how to get
them there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..errors import UserError


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's retry warnings for the block (errors still raise)."""
    logger = logging.getLogger("huggingface_hub")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _hub_id(arch: str) -> str:
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(arch)
        return getattr(cfg, "hf_hub_id", None) or f"timm/{arch}"
    except Exception:  # noqa: BLE001 - only used in a message
        return f"timm/{arch}"


def pretrained_error(arch: str, err: Exception) -> UserError:
    """One line for a failed pretrained load: a missing cache entry says how to fill it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(err, LocalEntryNotFoundError):
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else \
            " and the hub could not be reached"
        hub_id = _hub_id(arch)
        return UserError(
            f"pretrained weights for '{arch}' are not in the Hugging Face cache "
            f"'{constants.HF_HUB_CACHE}'{offline}; get them where there is a network with "
            f"`hf download {hub_id}` (or load the model once online) and copy that cache "
            "here (or point HF_HOME at it), or pass checkpoint='<file>', weights='<source>' "
            "or pretrained=False")
    first = (str(err).splitlines() or [""])[0][:200]
    return UserError(
        f"could not get pretrained weights for '{arch}' from the timm/Hugging Face hub "
        f"({type(err).__name__}: {first}). Offline? Pass checkpoint='<file>', "
        "weights='<source>' or pretrained=False")



def hub_weights_source(net) -> str:
    """Where timm took `net`'s pretrained weights from, for run.json: the hub repository and
    the revision (snapshot commit) of the cached weights file, or the download URL."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from pathlib import Path

        from huggingface_hub import try_to_load_from_cache

        names = [cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"]
        for filename in filter(None, names):
            path = try_to_load_from_cache(hub_id, filename)
            if isinstance(path, str):
                return f"hf-hub:{hub_id}@{Path(path).parent.name}"
        return f"hf-hub:{hub_id}"
    url = cfg.get("url") or cfg.get("file")
    return f"url:{url}" if url else "timm pretrained"
