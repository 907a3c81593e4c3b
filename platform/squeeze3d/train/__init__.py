"""Training: the single-device loop (``loop``); Ray Train and Ray Tune wiring build on it."""
