"""Errors shared across modules."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing file); printed without a traceback."""
