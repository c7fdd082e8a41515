"""Pure routing logic: no I/O, no clock of its own."""
