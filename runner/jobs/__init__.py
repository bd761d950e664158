"""The child side of a run, what runner.launch.child starts: the train job (`train`), a tuning trial's
per-epoch hook (`trial`), and the frame every job runs in (`frame`, shared with the micro-benchmarks'
job in runner.micro.job). The parity job is the parity gate's own (runner.parity.gate.run_job)."""
