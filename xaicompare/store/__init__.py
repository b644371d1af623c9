"""The on-disk store: keyed, chunked, atomic, resumable."""

from .arrays import Entry, Store, atomic_write, entry_key, stable_hash  # noqa: F401
