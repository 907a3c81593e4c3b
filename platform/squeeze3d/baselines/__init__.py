"""Classical codecs per asset kind: the baselines the evaluation compares against, and the
quality-gated fallback of the .sq3d codec.

- ``draco``: Draco point-cloud coding (DracoPy), fewest bits meeting a D1-PSNR floor;
- ``grid``: radiance-field grids, raw f16 + zstd, uniform quantisation ``qz-<bits>``, VQRF-style VQ.

This package sits below both ``squeeze3d.assets`` (whose handlers call it) and ``squeeze3d.codec``
(whose compressor and evaluation reach it through the handlers). It imports numpy, torch and the
metrics only; its one import upward is ``ContainerError`` from ``squeeze3d.codec.container`` (a leaf
module), see the comment at each import.
"""
