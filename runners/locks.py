"""One process per workdir and mode family: an exclusive `flock` on a lock file naming its holder.

The kernel releases an flock when its holder exits, however it exits (SIGKILL, a crash), so a
lock of a dead process is simply taken over; the file is never deleted (deleting a locked file
lets two processes lock two different files of the same name). The file holds the holder's pid,
host, start time and command, which a refused process reports. Linux NFS clients implement
flock with POSIX locks, so a lock also excludes processes of other nodes on a shared workdir.
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

from sde_runtime.errors import UserError

# errnos of file systems that do not implement locks: run unlocked, with a warning
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class WorkdirLockedError(UserError, RuntimeError):
    """Another live process already runs this mode family in this workdir."""


def _holder_record() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "command": " ".join(sys.argv)}) + "\n"


def read_holder(path: Path) -> dict:
    """The holder record in a lock file ({} when empty or unreadable: the holder is still writing it)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _refusal(path: Path, what: str) -> WorkdirLockedError:
    h = read_holder(path)
    who = (f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}: "
           f"{h.get('command', '?')}") if h else "a process that has not written its pid yet"
    return WorkdirLockedError(f"{what} is already running ({who}); it holds {path}. Wait for it to finish or "
                              f"stop it (kill {h.get('pid', '<pid>')}), or use another --workdir")


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, *, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `path` for the body, or raise WorkdirLockedError naming the holder.

    `what` says what the lock protects, for the message ("--mode train in runs/vp").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(path, what) from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise OSError(e.errno, e.strerror, str(path)) from e
            warnings.warn(f"{path.parent} does not support file locks ({e.strerror}): a second process in this "
                          f"workdir would not be detected")
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_record().encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: a stale pid must not be reported; the kernel drops the lock on close
    finally:
        os.close(fd)
