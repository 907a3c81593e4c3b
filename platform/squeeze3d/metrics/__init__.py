"""Asset metrics (point clouds, images) and the normalisation assets go through."""
