"""The router: turns tasks into trajectories, one Decision per step, from the current policy
snapshot. ``core`` is the pure logic, ``app`` the Kafka service around it."""
