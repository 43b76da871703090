"""The error type for a user's mistake in the model's configuration: shown as one line, no traceback."""


class ConfigError(ValueError):
    """A bad setting: the message says what was wrong and how to fix it."""
