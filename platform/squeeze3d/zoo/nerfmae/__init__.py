"""NeRF-MAE: the mini 3D autoencoder on radiance grids (``model``) and the published Swin-3D network in
its own layout (``swin3d``); adapter functions in ``adapter``."""
