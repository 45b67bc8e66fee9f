"""The learner: joins trajectories with rewards, learns the policy graph, publishes
snapshots (DESIGN.md §1, §3.3)."""
