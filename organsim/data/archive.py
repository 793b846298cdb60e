"""The file-reading shell: the files of a directory, a .tar(.gz/.bz2/.xz) or a .zip as ``(name, bytes)``.

Loaders parse bytes; this module only finds and reads them, streaming through archives member by
member, and turns a truncated or corrupt archive into a :class:`~organsim.utils.DataError` that
names the archive and the last member read completely.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from organsim.utils.errors import DataError

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: called as input is consumed (units: files, or compressed bytes)."""

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path) -> bool:
    """True for a tar (optionally compressed) or zip file name."""
    name = path.name.lower()
    return name.endswith(_TAR_SUFFIXES) or name.endswith(".zip")


def iter_files(src: str | Path, suffix: str, progress: ProgressCallback | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for every file ending in ``suffix`` under ``src``.

    Parameters
    ----------
    src
        A directory (searched recursively, files in sorted order), a tar archive (any compression
        tarfile reads; members in archive order) or a zip archive.
    suffix
        File-name ending to keep, e.g. ``".psv"``; other files are skipped.
    progress
        Called with ``(done, total)`` after each file: files for directories and zips, compressed
        bytes read for tar archives.

    Yields
    ------
    name
        The path inside the archive (``training_setB/p100001.psv``), or the path of the file on disk.
    content
        The raw bytes.

    Raises
    ------
    DataError
        ``src`` does not exist, is not a readable archive, or ends before its last member.
    """
    src = Path(src)
    if src.is_dir():
        yield from _iter_directory(src, suffix, progress)
    elif not src.exists():
        raise DataError("no such file or directory", file=src)
    elif src.name.lower().endswith(".zip"):
        yield from _iter_zip(src, suffix, progress)
    elif src.name.lower().endswith(_TAR_SUFFIXES):
        yield from _iter_tar(src, suffix, progress)
    else:
        raise DataError(f"expected a directory, a tar archive ({', '.join(_TAR_SUFFIXES)}) or a .zip", file=src)


def _iter_directory(src: Path, suffix: str, progress: ProgressCallback | None) -> Iterator[tuple[str, bytes]]:
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(src) for name in names if name.endswith(suffix))
    for done, path in enumerate(files, start=1):
        with open(path, "rb") as handle:
            yield path, handle.read()
        if progress:
            progress(done, len(files))


def _iter_zip(src: Path, suffix: str, progress: ProgressCallback | None) -> Iterator[tuple[str, bytes]]:
    last = "(none)"
    try:
        with zipfile.ZipFile(src) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith(suffix)]
            for done, member in enumerate(members, start=1):
                data = archive.read(member)
                yield member.filename, data
                last = member.filename
                if progress:
                    progress(done, len(members))
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"zip archive is truncated or corrupt ({exc}); last complete member: {last}", file=src) from exc


def _iter_tar(src: Path, suffix: str, progress: ProgressCallback | None) -> Iterator[tuple[str, bytes]]:
    total = src.stat().st_size
    last = "(none)"
    with src.open("rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|*") as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith(suffix):
                        handle = archive.extractfile(member)
                        data = handle.read() if handle is not None else b""
                        if len(data) != member.size:
                            raise EOFError(f"member {member.name} has {len(data)} of its {member.size} bytes")
                        yield member.name, data
                        last = member.name
                    if progress:
                        progress(raw.tell(), total)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"tar archive is truncated or corrupt ({exc}); last complete member: {last}", file=src) from exc
