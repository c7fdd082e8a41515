"""One module per command group (`dlq`, `seed`, ...); each has `register(commands)` (see leadflow_ops.cli)."""
