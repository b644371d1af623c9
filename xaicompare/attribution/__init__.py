"""Attribution methods; importing this package registers all of them."""

# Each method module registers its method on import.
from . import (  # noqa: F401
    gradcam,
    gradient_rollout,
    gradient_shap,
    gradients,
    integrated_gradients,
    kernelshap,
    lime,
    perturbation,
    rollout,
)
from .api import explain, explain_full, resolve_target, resolved_params  # noqa: F401
from .applicability import applies_to  # noqa: F401
from .attention import supports_rollout  # noqa: F401
from .registry import METHODS, Attribution, register_method  # noqa: F401
