"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing failure: bad input, missing data, a refused checkpoint.

    The message is one line that names the file involved and the command or action that fixes it.
    The CLI prints it as `error: <message>` and exits with status 2; it never shows a traceback. Text taken
    from elsewhere (an OpenCV or OS message) may hold line breaks: `str()` folds them, so the one line holds.
    """

    def __str__(self) -> str:
        # BaseException's text is the message itself; OSError's (WriteFailed) would show only its errno.
        return one_line(BaseException.__str__(self))


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(text.split())
