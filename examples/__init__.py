"""Example plugins for convcheck (importable from the repository root, e.g.
``--plugin examples.direct_conv_backend:DirectConv``)."""
