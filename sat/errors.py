"""User-facing errors: one clear line, no traceback."""


class UserError(ValueError):
    """Bad input from the user (a config value, a path, a missing file).

    The entry points print the message alone and exit with status 2.
    """
