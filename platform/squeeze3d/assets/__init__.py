"""Asset kinds (point clouds, radiance-field grids): reading, writing, normalisation, quality, fallback
codecs, baselines and previews, one module per kind behind ``handler_for(kind)``."""

from squeeze3d.assets.base import (
    ASSET_KINDS,
    AssetHandler,
    Baseline,
    MetricColumn,
    UnsupportedAssetKind,
    handler_for,
)

__all__ = ["ASSET_KINDS", "AssetHandler", "Baseline", "MetricColumn", "UnsupportedAssetKind", "handler_for"]
