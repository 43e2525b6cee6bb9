"""The operator console: server-rendered pages over the same handlers as everything else."""
