"""MeshAnything's shape encoder: the mini model (``model``) and the released checkpoint's layout
(``checkpoint``); adapters in ``adapter``."""
