"""User-facing errors: raised for bad input, printed by the CLI as one line naming the key/file/step."""


class RlvrError(Exception):
    """An error caused by user input (config, data, paths); the message names what is wrong."""


class ConfigError(RlvrError):
    pass


class DataError(RlvrError):
    pass


class TrainingError(RlvrError):
    """A run-time guard fired (NaN loss, inf gradient, ...); the message names the step and term."""
