"""The few error types the pipeline raises: a shard's, recorded as its failure, and the
run's, each mapped to an exit code by the CLI."""


class ShardReadError(ValueError):
    """The shard itself is unreadable (corrupt container, wrong schema): it fails with
    class input, the run goes on."""


class ConfigError(ValueError):
    """The job config or the command line is wrong; the message names the field (exit 2)."""


class InputError(ValueError):
    """The input cannot be listed or holds nothing to process (exit 2)."""


class StorageAccessError(InputError):
    """The store refuses the URL or cannot be reached; the message says what to set (exit 2)."""


class OutputConflictError(RuntimeError):
    """The output holds results made with other settings (exit 2 unless --overwrite)."""


class OutputBusyError(RuntimeError):
    """Another run holds the output's lease (exit 2)."""
