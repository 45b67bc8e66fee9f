"""The learner: joins trajectories with rewards, learns the policy graph, publishes
snapshots (docs/architecture.md, Learner)."""
