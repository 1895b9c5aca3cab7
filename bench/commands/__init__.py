"""The `bench` verbs, one module each, and the cell formatting their tables share."""


def number(x: float | None, spec: str) -> str:
    """A table cell: `x` formatted with `spec`, or "-" when it could not be measured."""
    return "-" if x is None else format(x, spec)


def percent(share: float | None, spec: str) -> str:
    """A share as a percentage number without the sign ("-" when it could not be measured)."""
    return number(None if share is None else 100 * share, spec)
