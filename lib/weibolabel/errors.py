"""The one exception type a user sees as a message, never as a traceback."""


class UserError(Exception):
    """Bad input or setup the user can fix; the jobs print the message and exit with status 2."""
