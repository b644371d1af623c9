"""Explanation methods; importing this package registers all of them.

Every module of this package is imported here, so a method registers itself with its
`@register_method` where it is written: a new method is a new file, with no list to edit.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .api import explain, explain_full, resolve_target, resolved_params  # noqa: F401
from .applicability import applies_to  # noqa: F401
from .attention import supports_rollout  # noqa: F401
from .registry import METHODS, Attribution, Explanation, register_method  # noqa: F401

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")
