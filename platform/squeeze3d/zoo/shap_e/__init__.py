"""Shap-E: the mini text-conditioned mesh generator (``model``), diffusers' ShapEPipeline as a
generator (``pipeline``), marching cubes for the renderer (``marching_cubes``); adapters in ``adapter``."""
