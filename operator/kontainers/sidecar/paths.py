"""File names inside the root, and filesystem access that never follows a symlink out of it.

The root is shared with the sandbox, which is untrusted and can swap a directory for a symlink at
any moment. So nothing here joins strings into paths and hopes: every access walks the name one
component at a time from a file descriptor of the root with O_NOFOLLOW, and writes, renames and
unlinks happen relative to the descriptor of the parent directory. A symlink planted anywhere on
the way makes the call fail instead of reaching outside.
"""

from __future__ import annotations

import errno
import os
import stat

META_DIR = ".kontainers"  # the sidecar's own hidden directory under the root: records, temp files
MAX_NAME_BYTES = 1024  # a whole relative path
MAX_COMPONENT_BYTES = 255  # one path component (NAME_MAX on Linux)


class UnsafeName(ValueError):
    """A file name the sidecar refuses; the message says why (it is shown to the client)."""


class IsASymlink(OSError):
    """The last component is a symlink (the caller may resolve it inside the root and retry)."""


def upload_parts(name: str) -> tuple[str, ...]:
    """The components of a name given for an upload, refusing anything that could escape the root.

    Allowed: a relative POSIX path of printable characters (sub-directories are fine).
    Refused: empty, absolute, `.`/`..` or empty components, NUL and control characters,
    absurd lengths, and the sidecar's own metadata directory.
    """
    if not name:
        raise UnsafeName("File name is empty.")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UnsafeName(f"File name is longer than {MAX_NAME_BYTES} bytes.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise UnsafeName("File name contains control characters.")
    if name.startswith("/"):
        raise UnsafeName("File name must be relative to /mnt/data, not absolute.")
    parts = tuple(name.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeName("File name must not contain empty, '.' or '..' components.")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise UnsafeName(f"A component of the file name is longer than {MAX_COMPONENT_BYTES} bytes.")
    if parts[0] == META_DIR:
        raise UnsafeName(f"{META_DIR} is reserved.")
    return parts


def stored_parts(path: str) -> tuple[str, ...] | None:
    """The components of a path read back from a record or found by a scan; None if unsafe.

    Looser than `upload_parts` (the sandbox may name files as it likes) but never escapes the root.
    """
    if not path or path.startswith("/") or "\x00" in path:
        return None
    parts = tuple(path.split("/"))
    if any(part in ("", ".", "..") for part in parts) or parts[0] == META_DIR:
        return None
    return parts


def open_dir(root_fd: int, parts: tuple[str, ...], *, create: bool = False) -> int:
    """A descriptor of the directory root/parts…, walked without following symlinks.

    With create=True missing directories are made. Raises NotADirectoryError when a component
    is a symlink or not a directory, FileNotFoundError when missing and create is False.
    """
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made concurrently; the open below checks what it is
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory (or a symlink)", part) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular_file(root_fd: int, parts: tuple[str, ...]) -> int:
    """A read descriptor of the regular file root/parts…; no component may be a symlink."""
    parent = open_dir(root_fd, parts[:-1])
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IsASymlink(parts[-1]) from None
            raise
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device must not block or leak
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", "/".join(parts))
    os.set_blocking(fd, True)
    return fd


def resolve_inside(root_real: str, parts: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where a symlinked path points, as components under the root; None if it points outside.

    Only used to decide; the caller then opens the result with `open_regular_file`, which follows
    no symlink, so a swap between this check and the open cannot lead outside.
    """
    target = os.path.realpath(os.path.join(root_real, *parts))
    if os.path.commonpath([root_real, target]) != root_real or target == root_real:
        return None
    return stored_parts(os.path.relpath(target, root_real))
