"""kcnn: explicit cross-correlation CNNs on Keras 3.

Subpackages: ``kcnn.layers`` (the maths), ``kcnn.models`` (builders),
``kcnn.data``, ``kcnn.train``, ``kcnn.plots`` and ``kcnn.export`` (ONNX).
"""

__version__ = "0.1.0"
