"""``agensbus demo``: replay a simulated scenario through the running services, epoch by
epoch, and report what each arm (fixed pipeline, learned policy) achieved."""
