"""Errors a user can act on. The CLI maps each class to an exit code and prints message + hint."""


class CnnxError(Exception):
    """Base class: `message` says what is wrong, `hint` says what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(CnnxError):
    """Bad input: unknown model, unreadable file, wrong checkpoint, ... (exit 2)."""

    exit_code = 2


class CheckFailed(CnnxError):
    """A parity or threshold check failed (exit 1)."""

    exit_code = 1


class BackendUnavailable(CnnxError):
    """A required backend or hardware is not usable on this machine (exit 3)."""

    exit_code = 3


class DownloadFailed(CnnxError):
    """Published weights could not be obtained: offline, host unreachable, HTTP error, or a download that failed
    its sha256 check (exit 3, like any required resource that is unavailable here)."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a foreign exception's message (at most `limit` characters), for a message of ours that
    quotes it; its class name when it says nothing."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:limit]
