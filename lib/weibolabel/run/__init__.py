"""How a job runs: config, launch and preemption, the run directory and its locks, the device."""
