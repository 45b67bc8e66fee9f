"""The agent-worker: executes invoke decisions concurrently and, run with the
judge role, scores completed trajectories."""
