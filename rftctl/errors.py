"""Error classes and their stable exit codes.

Every error rftctl raises on purpose is an :class:`RftctlError`. The CLI's single error boundary
(``rftctl.cli.app.main``) prints ``error: <message>`` on one line and exits with ``exit_code``.
Messages name the key, file or row at fault and say how to fix it.

| code | class                 | meaning                                                  |
|------|-----------------------|----------------------------------------------------------|
| 2    | ConfigError           | bad params.yaml / preset / CLI option value              |
| 3    | DataError             | malformed or inconsistent input data                     |
| 4    | BackendError          | a generation backend is missing or failed                |
| 5    | MissingArtifactError  | an earlier stage's output is absent: run that stage      |
| 6    | CheckpointError       | a checkpoint cannot be loaded or must not be saved (non-  |
|      |                       | finite state): the message names the folder and the fix  |
| 7    | StorageError          | an I/O failure (no space, read-only, permission denied)  |
|      |                       | on the named path: free space or fix permissions, rerun  |
| 8    | RankDiedError         | a rank of `rftctl train` under torchrun died without a   |
|      |                       | word (a signal: SIGKILL, the OOM killer); the message    |
|      |                       | names the rank and the log file                          |
| 70   | (anything else)       | unexpected internal error (a bug: rerun with --debug)    |
| 130  | KeyboardInterrupt     | interrupted by the user (Ctrl-C, SIGINT)                 |
| 143  | SIGTERM               | terminated (a scheduler's or `kill`'s SIGTERM)           |
"""

from __future__ import annotations


class RftctlError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    exit_code: int = 1

    def __init__(self, message: str):
        # One line, always: multi-line messages break the CLI contract.
        super().__init__(" ".join(str(message).split()))


class ConfigError(RftctlError):
    exit_code = 2


class DataError(RftctlError):
    exit_code = 3


class BackendError(RftctlError):
    exit_code = 4


class MissingArtifactError(RftctlError):
    exit_code = 5


class CheckpointError(RftctlError):
    exit_code = 6


class StorageError(RftctlError):
    exit_code = 7


class RankDiedError(RftctlError):
    exit_code = 8


class RankError(RftctlError):
    """A rank's own one-line error, passed on by the launcher with that rank's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C or SIGTERM caught where the command knows how far it got: ``where`` completes
    the CLI's line ("interrupted <where>"), e.g. "at step 4; the last checkpoint is step 0, ..."."""

    def __init__(self, where: str):
        self.where = " ".join(str(where).split())
        super().__init__(self.where)


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler: a KeyboardInterrupt, so every clean-up a Ctrl-C runs
    runs for a SIGTERM too (exit 143)."""


EXIT_UNEXPECTED = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
