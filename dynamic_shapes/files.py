"""Writing files so that an interruption, at any moment, leaves the old file or the new one."""

import os
import secrets
from pathlib import Path


def write_atomically(path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename, so
    that an interrupted write leaves whatever was at `path` before, and no partial file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # Created with 0666 like any open(): the kernel applies the process's umask, which is
    # never changed (changing it, even briefly, would race with other threads' files).
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder that records it is on disk too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def check_writable(path) -> Path:
    """Returns `path` as a Path if a file can be written there, else raises ValueError saying
    why: checked before any slow work whose results would go there."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; name a file to write")
    _check_folder_to_write_in(path.parent, f"cannot write {path}")
    return path


def check_writable_folder(path) -> Path:
    """Returns `path` as a Path if files can be written into it (an existing folder, or a new
    one in an existing folder), else raises ValueError saying why."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; name a folder")
    _check_folder_to_write_in(path if path.is_dir() else path.parent, f"cannot write into {path}")
    return path


def _check_folder_to_write_in(folder: Path, cannot: str) -> None:
    """Raises ValueError, its message starting with `cannot`, unless `folder` is an existing
    folder this process may create files in."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{cannot}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise ValueError(f"{cannot}: there is no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{cannot}: the folder {folder} is not writable")
