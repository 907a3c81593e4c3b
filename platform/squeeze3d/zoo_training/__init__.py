"""How the mini zoo was trained and measured: recipes (``recipes``: ``train_zoo``, ``benchmark_zoo``),
one training module per model (``lion``, ``nerfmae``, ``meshanything``, ``shap_e``), their data caches
(``*_data``) and the mesh zoo benchmark (``bench_mesh``). Model code lives in ``squeeze3d.zoo``;
nothing in the zoo imports this package."""
