"""A run on disk: its folder and lock, atomic link-refusing files, the checkpoint protocol,
preemption, refused commands, per-epoch loggers, figures and the memory budget."""
