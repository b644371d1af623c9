"""Attribution methods; importing this package registers all of them."""

# Each method module registers its method on import.
from . import gradcam, gradients, integrated_gradients, kernelshap, perturbation, rollout  # noqa: F401
from .api import explain, explain_full, resolve_target  # noqa: F401
from .applicability import applies_to  # noqa: F401
from .registry import METHODS, Attribution, register_method  # noqa: F401
from .rollout import supports_rollout  # noqa: F401
