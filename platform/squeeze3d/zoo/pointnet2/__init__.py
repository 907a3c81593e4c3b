"""PointNet++ (SSG classifier) as an encoder: the model and its weights (``model``), the adapter
functions the pair files name (``adapter``)."""
