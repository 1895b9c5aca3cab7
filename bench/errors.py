"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class BenchError(Exception):
    """A user-facing failure: bad input, missing data, a refused checkpoint.

    The message is one line that names the file involved and the command or action that fixes it.
    The CLI prints it as `error: <message>` and exits with status 2; it never shows a traceback.
    """
