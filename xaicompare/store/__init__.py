"""The on-disk store: keyed, chunked, atomic, resumable."""

from .arrays import Entry, Store, entry_key, stable_hash  # noqa: F401
