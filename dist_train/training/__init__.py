"""Training: the loop (loop.py), one epoch and validation (engine.py), optimizer and schedules,
metrics files, and the preemption agreement between ranks."""
