"""How main.py reports a failure: one line for what the user can fix, a traceback for bugs.

A `UserError` (sde_runtime.errors; ConfigError, CheckpointError, DataError, ... subclass it) is
printed as `error: <message>`. So is an OSError of the environment (no permission, a read-only
file system, a full disk or quota, a file-size limit): it names the path. Everything else is a
bug and keeps its traceback.
"""
import errno

from sde_runtime.errors import UserError

# errnos of an environment the user must fix, with what to tell them
ENVIRONMENT_ERRNOS = {
    errno.EACCES: "no permission",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "a read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file-size limit is exceeded (see `ulimit -f`)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "a file of that name is in the way",
}


def one_line(error: BaseException, *, workdir: str | None = None) -> str | None:
    """The one-line message for a user-caused error, or None for a bug (keep its traceback)."""
    if isinstance(error, UserError):
        return f"error: {error}"
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        where = error.filename if error.filename is not None else f"a file under {workdir or 'the workdir'}"
        verb = "write" if error.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "use"
        return f"error: cannot {verb} {where}: {ENVIRONMENT_ERRNOS[error.errno]} ({error.strerror})"
    return None
