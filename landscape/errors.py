"""The exception the CLI turns into a one-line `error:` message and exit code 2, and the warning it shows as
one `warning:` line (and records with the result) when a run goes on with something the user should know."""
import warnings


class LandscapeError(Exception):
    """A problem with the user's input (file, data, option), reported without a traceback."""


class LandscapeWarning(UserWarning):
    """Input that was used, but not quite as given (e.g. --samples above the data size, clamped)."""


def warn(message: str) -> None:
    """Issue a `LandscapeWarning` with a one-line `message` (Python's `warnings`, so callers can filter it),
    attributed to the caller of the function that warns."""
    warnings.warn(message, LandscapeWarning, stacklevel=3)
