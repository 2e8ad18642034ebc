"""Typed errors. Library code raises these; only the CLI turns them into `error: ...` and exit 2."""


class MlmtuneError(Exception):
    """A problem with the user's input: the message names it and says how to fix it."""

    exit_code = 2


class ConfigError(MlmtuneError):
    """A flag, config file or config value is wrong."""


class DataError(MlmtuneError):
    """A corpus cannot be read, is empty, or lacks the text column."""


class ModelError(MlmtuneError):
    """A model or tokenizer cannot be loaded or does not fit the run."""


class CheckpointError(MlmtuneError):
    """A checkpoint is missing, incomplete, damaged or from another config."""


class OutputError(MlmtuneError):
    """The output folder cannot be written (disk full, read-only, permissions); nothing half-written stays."""


class InputError(MlmtuneError):
    """A text given to fill-mask is unusable (no mask token, too long, ...)."""


class TrainingError(MlmtuneError):
    """Training cannot go on (a non-finite loss); the last good checkpoint stays."""

    exit_code = 1


class Interrupted(MlmtuneError):
    """SIGINT/SIGTERM: the current step finished and a checkpoint was saved."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class HubError(MlmtuneError):
    """The Hugging Face Hub cannot be reached, or refused an upload; the local output folder stays complete."""
