"""The one exception type that the CLI turns into a one-line `error:` message and exit code 2."""


class LandscapeError(Exception):
    """A problem with the user's input (file, data, option), reported without a traceback."""
