"""Console entry points of kcnn.export: kcnn-export, kcnn-predict, kcnn-serve (thin wrappers)."""


def serve_main(argv=None) -> int:
    """``kcnn-serve MODEL.onnx [--host H] [--port P] ...``: see :mod:`kcnn.export.serve`."""
    from kcnn.export.serve import main

    return main(argv)
