"""Self-supervised learning pieces: the backbone of a zoo model, projection heads, the
EMA target network, SSL-SAT's per-image target bank, the losses, and the evaluation of
a representation (kNN, linear probe, collapse diagnostics). The training methods that
combine them are in :mod:`sat.methods.ssl`."""
