"""Source archives: unpack safely, and identify a folder by its content — the git tree id.

A git tree id names a folder's content exactly (every file's bytes, name and executable bit, every
symlink's target), whatever the archive's own bytes: GitHub does not promise stable archive bytes (so
no stable sha256) but ``git archive`` of a tag always holds the same tree. The computation is git's:
a file is the blob ``sha1(b"blob <size>\\0" + bytes)`` with mode ``100644`` (``100755`` when
executable), a symlink a blob of its target with mode ``120000``, a folder a tree with mode ``40000``;
a tree's entries are ``mode SP name NUL 20-byte id``, sorted by name with a folder compared as
``name/``, and the tree is ``sha1(b"tree <len>\\0" + entries)``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from pathlib import Path

from kfboot.errors import BadInputError


def _blob(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).digest()


def _tree(folder: Path) -> bytes | None:
    """The raw tree id of ``folder``; None for a folder with no file below it (git keeps none)."""
    entries: list[tuple[bytes, bytes, bytes]] = []  # (sort key, mode, id)
    with os.scandir(folder) as it:
        for entry in it:
            name = os.fsencode(entry.name)
            if entry.is_symlink():
                entries.append((name, b"120000", _blob(os.fsencode(os.readlink(entry.path)))))
            elif entry.is_dir():
                sub = _tree(Path(entry.path))
                if sub is not None:
                    entries.append((name + b"/", b"40000", sub))
            elif entry.is_file():
                mode = b"100755" if entry.stat().st_mode & stat.S_IXUSR else b"100644"
                entries.append((name, mode, _blob(Path(entry.path).read_bytes())))
    if not entries:
        return None
    body = b"".join(mode + b" " + key.rstrip(b"/") + b"\0" + oid for key, mode, oid in sorted(entries))
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).digest()


def git_tree_id(folder: Path) -> str:
    """The git tree id (hex) of ``folder``'s content, as ``git rev-parse HEAD^{tree}`` would give for a
    checkout of exactly these files."""
    raw = _tree(folder)
    if raw is None:  # git's empty tree
        return hashlib.sha1(b"tree 0\0", usedforsecurity=False).hexdigest()
    return raw.hex()


class UnsafeArchive(BadInputError):
    """An archive member that would land outside the destination, or is not a file/folder/symlink."""


def check_members(tar: tarfile.TarFile, what: str) -> list[tarfile.TarInfo]:
    """Every member of ``tar``, refused (:class:`UnsafeArchive`) if one is an absolute path, has a ``..``
    component, is a link leading outside the archive, or is a device, FIFO or other special file."""
    members = tar.getmembers()
    for m in members:
        name = m.name
        parts = name.split("/")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise UnsafeArchive(f"{what}: member {name!r} would be written outside the folder; refused", _FIX)
        if m.issym() or m.islnk():
            target = m.linkname
            base = posixpath.dirname(name) if m.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchive(f"{what}: link {name!r} → {target!r} leads outside the folder; refused", _FIX)
        elif not (m.isfile() or m.isdir()):
            kind = "device" if (m.ischr() or m.isblk()) else "FIFO" if m.isfifo() else "special file"
            raise UnsafeArchive(f"{what}: member {name!r} is a {kind}; refused", _FIX)
    return members


_FIX = "the archive is not a source tree (corrupt or tampered with): do not use it"


def unpack(archive: Path, dest: Path, what: str | None = None) -> None:
    """Unpack the .tar(.gz) ``archive`` into ``dest`` after :func:`check_members` (and with tarfile's
    ``data`` filter as a second guard). Modes keep the owner's executable bit (it is part of the tree id)."""
    what = what or archive.name
    try:
        with tarfile.open(archive, "r:*") as tar:
            check_members(tar, what)
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise BadInputError(f"cannot unpack {what}: {exc}", "pass a .tar.gz of a manifests tree") from exc
