"""Tiny fixed-seed debug models for tests and smoke runs: point clouds and text (``models``), meshes
(``mesh_models``); adapters and their one-file checkpoints in ``adapter``."""
