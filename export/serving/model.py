"""The model as the server sees it: an :class:`~kcnn.export.OnnxPredictor` behind one adapter.

Route handlers use :class:`ServedModel` only: images in (one at a time, errors as 422), batches
through onnxruntime, JSON-ready predictions and metadata out.
"""
from __future__ import annotations

import os

import numpy as np

from kcnn.export.serving.requests import RequestError


class ServedModel:
    """The :class:`~kcnn.export.OnnxPredictor` as the server uses it: one image at a time in,
    batches through onnxruntime, JSON-ready predictions out."""

    def __init__(self, predictor, name: str | None = None, version: str = "1"):
        self.predictor = predictor
        #: The version every protocol names the model by (``--model-version``).
        self.version = str(version)
        self.labels = [str(label) for label in predictor.labels]
        self.num_classes = len(self.labels)
        path = getattr(predictor, "path", None)
        self.name = (name or predictor.metadata.get("kcnn.model")
                     or (os.path.splitext(os.path.basename(str(path)))[0] if path else "model"))

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """One image → float32 batch of one; the predictor's ValueError/TypeError become 422."""
        try:
            batch = self.predictor.preprocess(image)
        except (ValueError, TypeError) as exc:
            raise RequestError(422, str(exc)) from None
        if batch.shape[0] != 1:
            raise RequestError(422, f"each instance must be ONE image; received an array of shape "
                                    f"{image.shape}, which holds {batch.shape[0]}")
        return batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs for a preprocessed batch (runs in the micro-batcher's thread)."""
        return self.predictor.run(batch)

    def postprocess(self, outputs: np.ndarray, top_k: int) -> list[dict]:
        """Model outputs → ``[{"label", "index", "score", "top_k": [...]}, ...]``, ranked exactly
        as :meth:`OnnxPredictor.predict` ranks them."""
        ranked_lists = self.predictor.postprocess(outputs, top_k=top_k).to_list()
        return [{**ranked[0], "top_k": ranked} for ranked in ranked_lists]

    def metadata(self) -> dict:
        """What ``GET /v1/metadata`` describes: labels, preprocessing, input/output, provider."""
        p = self.predictor
        extra = {k: v for k, v in p.metadata.items()
                 if k not in ("kcnn.labels", "kcnn.preprocessing")}
        return {
            "model": self.name,
            "model_version": self.version,
            "labels": self.labels,
            "num_classes": self.num_classes,
            "preprocessing": p.preprocessing,
            "inputs": [{"name": p.input_name, "shape": [None, *p.input_shape],
                        "type": "tensor(float)"}],
            "outputs": [{"name": p.output_name, "shape": [None, self.num_classes],
                         "type": "tensor(float)",
                         "kind": getattr(p, "output_kind", "logits")}],
            "provider": p.provider,
            "properties": extra,
        }
