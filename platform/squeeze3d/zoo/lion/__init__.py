"""LION: the mini LION-style generator (``model``), its training-free adapters (``adapter``), the
official LION network in its published layout (``official``, ``official_pvcnn``, ``official_ops``) and
the conversion between the two layouts (``checkpoint``)."""
