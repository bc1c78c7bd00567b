"""Errors that reach a user as one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; the message says how."""

    exit_code = 2


class ServiceUnavailableError(UserError):
    """A service (Kafka, ClickHouse) cannot be reached."""

    exit_code = 3
