"""Attribution methods; importing this package registers all of them."""

from . import registry  # noqa: F401
from .api import explain, explain_full, resolve_target  # noqa: F401
from .registry import METHODS, Attribution, register_method  # noqa: F401

# Each module registers its method(s) on import.
for _module in ("gradcam", "integrated_gradients", "kernelshap", "rollout"):
    try:
        __import__(f"{__name__}.{_module}")
    except ModuleNotFoundError as _err:  # a method still being written
        if _err.name != f"{__name__}.{_module}":
            raise
