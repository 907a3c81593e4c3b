"""Procedural corpora: the in-project "real objects" the mini zoo is trained and evaluated on.

``shapes`` builds the meshes; ``points`` turns them into unit-sphere point clouds with fixed
train/val/test splits; ``meshes`` the textured, captioned mesh corpus; ``radiance`` the (rgb, σ) grid
corpus; ``posterior`` the objects a generator reconstructs for its posterior training samples;
``plots`` PNG grids. The real-object corpus (downloaded packages) is ``squeeze3d.realcorpus``.
"""
