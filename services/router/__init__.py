"""The router: turns tasks into trajectories, one Decision per step, from the current policy
snapshot (DESIGN.md §1). ``core`` is the pure logic, ``app`` the Kafka service around it."""
