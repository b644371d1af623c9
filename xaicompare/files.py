"""Writing files safely: a file is either complete or absent (write to a temporary file,
then rename), a killed writer's temporaries can be found and removed, and a write that
fails for a reason the user can fix (disk full, read-only, no permission) is one UserError
naming the folder. Used by the store, the tables and figures of a run, and saved weights.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from .errors import UserError

# errno values that mean "this folder cannot be written": the user can fix them.
UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
TMP_SUFFIX = ".tmp"


# `.<name>.<pid>.tmp`: what atomic_write leaves behind when its writer is killed
_TEMPORARY = re.compile(rf"^\..+\.\d+{re.escape(TMP_SUFFIX)}$")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete atomic_write's temporary files anywhere under `folder` (store, tables, arrays,
    figures) left by killed writers; returns how many. Only while no other process writes
    there (hold the run lock)."""
    removed = 0
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.rglob(f".*{TMP_SUFFIX}"):
            if _TEMPORARY.match(path.name) and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
    return removed


def unwritable_folder_error(folder: Path, err: OSError) -> UserError:
    """A UserError naming `folder` for a write that failed for a reason the user can fix."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    where = err.filename or folder
    return UserError(f"cannot write to output folder '{folder}' ({reason}: '{where}'); finished "
                     "work is kept: free space or fix permissions and run again, or choose "
                     "another `output:` folder")


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file + rename: `path` is either complete or absent."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in UNWRITABLE:
            raise unwritable_folder_error(path.parent, err) from None
        raise
    except BaseException:  # KeyboardInterrupt etc.: leave no half file behind
        tmp.unlink(missing_ok=True)
        raise
