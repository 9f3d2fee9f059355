"""Every exception Clampdown raises on purpose.

    ClampdownError
    ├── InputError                  bad input from a user or a detector (4xx, exit 2)
    │   ├── NormalizationError      a payload that is no finding we understand
    │   ├── PlaybookError           a playbook that does not load (file:line messages)
    │   ├── ExpressionError         a CEL expression that does not compile or evaluate
    │   └── ConfigError             a config file or setting that is wrong
    ├── NotFoundError               an id that names nothing (404)
    ├── ConflictError               a request that does not fit the current state (409)
    └── ActionError                 an action call that did not take effect
        ├── TransientError          worth retrying (timeouts, 5xx, 429); may carry retry_after
        ├── PermanentError          retrying will not help (4xx, refused by the target)
        └── PreconditionError       the world is not as the action needs it (missing target, ...)

Third-party errors are translated at the boundary that meets them and chained with `from exc`.
"""

from __future__ import annotations


class ClampdownError(Exception):
    """Base of every deliberate Clampdown error."""


class InputError(ClampdownError):
    """Input that Clampdown refuses; the message says what and where."""


class NormalizationError(InputError):
    """A payload that cannot be read as a finding."""

    def __init__(self, message: str, *, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class PlaybookError(InputError):
    """One or more problems in playbook files; `problems` holds every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ExpressionError(InputError):
    """A CEL expression that failed to compile or to evaluate."""


class ConfigError(InputError):
    """A configuration problem."""


class NotFoundError(ClampdownError):
    """The thing asked for does not exist."""


class ForbiddenError(ClampdownError):
    """The caller may not do this (not one of a playbook's approvers, say)."""


class ConflictError(ClampdownError):
    """The request does not fit the current state."""


class ActionError(ClampdownError):
    """An action did not take effect."""


class TransientError(ActionError):
    """A failure worth retrying, optionally after `retry_after` seconds.

    `maybe_delivered` says the request may have reached the target (a timeout after sending,
    a 500): retrying then risks doing it twice, so the engine retries only idempotent actions.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered
        super().__init__(message)


class PermanentError(ActionError):
    """A failure that retrying will not fix."""


class PreconditionError(ActionError):
    """The action cannot run as configured or as the world stands."""


class VerificationError(ActionError):
    """An effect that was applied is not observably in place; the message says what is off."""
