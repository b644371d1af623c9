"""Deletion and insertion curves: computed in attribution/faithfulness.py (below the engine,
whose units run them for a study); their public names stay importable from here."""

from ..attribution.faithfulness import (  # noqa: F401
    ORDERS,
    SCORES,
    DeletionInsertion,
    deletion_insertion_curves,
    pixel_ranks,
)
