"""kcnn: explicit cross-correlation CNNs on Keras 3.

Subpackages: ``kcnn.layers`` (the maths), ``kcnn.models`` (builders), ``kcnn.data`` (data sets and
the input pipeline), ``kcnn.training`` (``model.fit`` with recipes; also ``kcnn.train``),
``kcnn.bench`` (``kcnn-bench``), ``kcnn.cli`` (the console scripts), ``kcnn.plots`` and
``kcnn.export`` (ONNX export, inference and serving).
"""
from kcnn.export.metadata import kcnn_version as _kcnn_version

# One source of truth: the version pyproject.toml gives the installed distribution.
__version__ = _kcnn_version()
