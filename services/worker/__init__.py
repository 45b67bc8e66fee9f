"""The agent-worker: executes the invoke decisions of the pipeline's cells concurrently, on
the deployment's backend (an ``agensbus.backends`` entry point)."""
