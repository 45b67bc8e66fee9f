"""The agent-worker (DESIGN.md §1): executes invoke decisions concurrently and, run with the
judge role, scores completed trajectories."""
