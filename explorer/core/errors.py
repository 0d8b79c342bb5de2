"""Exceptions the engine raises for bad input; pages show them with st.error, the CLI as one line."""


def one_line(text: object, limit: int = 300) -> str:
    """A message from another library on one line, cut to `limit` characters (some span many lines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (Ray's errors carry whole tracebacks)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


class ExplorerError(Exception):
    """Base class: a problem with the user's input or environment, with a message that says what to do."""


class FamilyError(ExplorerError):
    """The family file is missing, malformed, or names members that do not fit together."""


class CheckpointError(ExplorerError):
    """A checkpoint cannot be found, read or trusted."""


class NonFiniteError(CheckpointError):
    """A tensor holds NaN or Inf values."""


class ParameterError(ExplorerError):
    """An analysis parameter is out of range or unknown."""


class PromptSetError(ExplorerError):
    """A prompt set is empty, malformed or unreadable."""


class CacheMissError(ExplorerError):
    """Precomputed results the caller asked for are not in the cache."""


class CorruptBundleError(CacheMissError):
    """A file of a precomputed bundle is truncated or unreadable."""


class OutputError(ExplorerError):
    """An output path cannot be written: a folder, a path under a file, no permission, a full disk."""


class ResourceError(ExplorerError):
    """The machine lacks what a command needs: memory for a fine-tune, say."""


class BusyError(ExplorerError):
    """Another run holds the lock on a result this one must write, for longer than it waits."""


class AccessError(ExplorerError):
    """A path lies outside the folders that EXPLORER_ALLOWED_ROOTS allows."""


class ClusterError(ExplorerError):
    """The Ray cluster cannot be reached, or a task failed there after its retries."""


def unwritable(path: object, exc: OSError) -> OutputError:
    """The error for a cache that cannot be written: a read-only folder, a full disk."""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; free some space, or set EXPLORER_CACHE_DIR to "
                       "a writable folder")
