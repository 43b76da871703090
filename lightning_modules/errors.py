"""The error type for a user's mistake in the model's configuration: shown as one line, no traceback."""


class ConfigError(ValueError):
    """A bad setting: the message says what was wrong and how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, truncated, corrupted, unsafe or for another model.

    The message is one line naming the file and what is wrong with it; the CLI prints it without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
