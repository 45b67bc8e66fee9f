"""The judge service: scores completed trajectories side by side and publishes their rewards,
with a scorer of the deployment's choosing (simulated, judge models, or a package's)."""
