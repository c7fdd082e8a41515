"""leadflow-ops: recovery tools for SREs (decision 0044)."""
