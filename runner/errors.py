"""Errors a user can act on: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input or an unmet precondition; the message is the whole explanation."""


class SpecError(UserError):
    """The requested workload is not a valid spec."""


class DataError(UserError):
    """Dataset bytes are missing, malformed or do not match their pins."""


class RecordError(Exception):
    """A file is not a readable record of a schema version this dlbench understands."""


def reason(e: BaseException) -> str:
    """"ErrorType: message", the way soft-failing fields (probe, sampler, energy) record why."""
    return f"{type(e).__name__}: {e}".strip().rstrip(":")


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached a child process (raised from its signal handler); BaseException
    so that no `except Exception` swallows it on the way to the code that records it."""
