"""Small exported classifiers for the serving tests (seconds to export on every backend)."""


def export_tiny_classifier(path, *, labels, model_name="tiny", seed=2):
    """A 28x28x1 conv + dense classifier with ``len(labels)`` classes, exported to ``path``."""
    import keras

    from kcnn.export import export_onnx

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((28, 28, 1), name="images"),
                              keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(len(labels))])
    export_onnx(model, str(path), labels=list(labels), model_name=model_name)
    return path
