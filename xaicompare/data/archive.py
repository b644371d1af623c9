"""Resumable downloads, checksums and tar extraction that cannot escape its target folder."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..errors import UserError

CHUNK_BYTES = 1 << 20

# fetch(url, part_path) appends the bytes of `url` after the part_path.stat().st_size
# bytes already there (creating the file when missing). Tests replace it.
Fetch = Callable[[str, Path], None]


def fetch_url(url: str, part: Path, *, progress: bool = True) -> None:
    """Append the rest of `url` to `part`, resuming with an HTTP Range request (file:// too)."""
    start = part.stat().st_size if part.exists() else 0
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        source = Path(urllib.request.url2pathname(parsed.path))
        with source.open("rb") as src, part.open("ab") as dst:
            src.seek(start)
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
        return
    if parsed.scheme not in ("http", "https"):
        raise UserError(f"cannot download '{url}': only http(s):// and file:// URLs are accepted")
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return  # nothing left to fetch: the partial file is already complete
        raise UserError(f"download of '{url}' failed: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise UserError(f"cannot reach '{url}' ({err.reason}); download the archive yourself "
                        "and pass it with archive=... (or --archive)") from None
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored Range: start over rather than append twice
        total = response.length
        mode = "ab" if start else "wb"
        with part.open(mode) as dst, _progress_bar(progress, total, start, part.name) as bar:
            while chunk := response.read(CHUNK_BYTES):
                dst.write(chunk)
                bar.update(len(chunk))


def _progress_bar(enabled: bool, remaining: int | None, start: int, name: str):
    from tqdm.auto import tqdm

    total = None if remaining is None else remaining + start
    return tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name,
                disable=not enabled)


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - integrity check against published md5, not security
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, *, cache: Path, md5: str | None = None,
             fetch: Fetch | None = None, progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming from `cache/<name>.part`; verify md5 when known.

    The partial file only becomes `dest` once complete (and its checksum matches), so an
    interrupted run leaves a resumable .part file and never a half file under the real name.
    """
    cache.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (md5 is None or file_md5(dest) == md5.lower()):
        return dest  # finished by an earlier run (e.g. one whose extraction was interrupted)
    part = cache / (dest.name + ".part")
    try:
        if fetch is None:
            fetch_url(url, part, progress=progress)
        else:
            fetch(url, part)
    except OSError as err:
        if err.errno not in _CANNOT_WRITE:
            raise
        raise UserError(f"cannot download '{url}' into '{cache}': {os.strerror(err.errno)}; "
                        "free space or choose another folder, then run again (the download "
                        "resumes)") from None
    if not part.exists():
        raise UserError(f"download of '{url}' produced no file at '{part}'")
    if md5 is not None:
        actual = file_md5(part)
        if actual != md5.lower():
            bad = part.with_suffix(".corrupt")
            part.replace(bad)
            raise UserError(
                f"checksum mismatch for '{url}': md5 {actual}, expected {md5}; the file was "
                f"moved to '{bad}'; run the command again to download it afresh")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part.replace(dest)
    return dest


# errno values of a write that failed because of the target folder (full, read-only), not
# because of the archive
_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _is_within(path: PurePosixPath) -> bool:
    """A relative path that never climbs above its start (no '..' escaping, not absolute)."""
    if path.is_absolute():
        return False
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return False
    return True


def check_member(member: tarfile.TarInfo) -> None:
    """Raise UserError naming `member` when extracting it could write outside the target."""
    name = PurePosixPath(member.name)
    first = name.parts[0] if name.parts else ""
    if member.name.startswith(("/", "\\")) or first.endswith(":"):  # POSIX root or C:
        raise UserError(f"unsafe archive member '{member.name}': absolute path")
    if not _is_within(name):
        raise UserError(f"unsafe archive member '{member.name}': path leaves the target folder")
    if member.issym():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or not _is_within(name.parent / target):
            raise UserError(f"unsafe archive member '{member.name}': symlink to "
                            f"'{member.linkname}' points outside the target folder")
    elif member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or not _is_within(target):
            raise UserError(f"unsafe archive member '{member.name}': hard link to "
                            f"'{member.linkname}' points outside the target folder")
    elif not (member.isfile() or member.isdir()):
        raise UserError(f"unsafe archive member '{member.name}': device, fifo or other "
                        "special file")


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a tar (any compression) into `dest`, refusing members that would escape it.

    Every member is checked before anything is written; a truncated or corrupt archive
    raises UserError (nothing half-extracted is left behind by callers that extract into a
    temporary folder first).
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads to the end: catches truncated archives
            for member in members:
                check_member(member)
            dest.mkdir(parents=True, exist_ok=True)
            # Defence in depth: the stdlib "data" filter enforces the same rules again.
            tar.extractall(dest, members=members, filter="data")
    except UserError:
        raise
    except OSError as err:
        if err.errno in _CANNOT_WRITE:  # the archive is fine: the target is the problem
            reason = os.strerror(err.errno)
            raise UserError(f"cannot extract '{archive}' into '{dest}': {reason} "
                            f"('{err.filename or dest}'); free space or choose another "
                            "folder, then run again (the archive is kept)") from None
        raise UserError(f"archive '{archive}' is incomplete or unreadable ({err}); delete it "
                        "and download it again") from None
    except (tarfile.TarError, EOFError, ValueError) as err:
        raise UserError(f"archive '{archive}' is incomplete or unreadable ({err}); delete it "
                        "and download it again") from None
    return dest
