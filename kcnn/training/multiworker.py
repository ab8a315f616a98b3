"""``MultiWorkerMirroredStrategy`` that Keras 3's TensorFlow trainer can ``fit`` with.

Keras 3.15's TF trainer (``keras/src/backend/tensorflow/trainer.py``) calls
``Strategy.reduce`` in two ways that ``tf.distribute.MultiWorkerMirroredStrategy`` (TF 2.21)
rejects once there is more than one worker (keras-team/keras#20585):

1. ``TensorFlowTrainer._maybe_symbolic_build`` reduces the whole first batch, a nest
   ``(x, y)`` of ``PerReplica`` values, in one call. ``Strategy.reduce`` takes a single value
   (TensorFlow's own docstring says nests are a TODO); ``MirroredStrategy`` tolerates the nest,
   the collective strategy passes it to ``convert_to_tensor`` and fails with "Attempt to
   convert a value (PerReplica: ...) with an unsupported type".
2. ``reduce_per_replica`` averages the step's metric results with ``axis=0`` in multi-worker
   mode, but those results are scalars: "Invalid reduction dimension 0 for input with 0
   dimensions". (Its ``"sum"`` branch also omits the required ``axis`` argument.)

:class:`MultiWorkerMirroredStrategy` overrides ``reduce`` only: it maps over nests, reduces
scalars across replicas (``axis=None``, which is what the single-worker path of
``reduce_per_replica`` computes) and makes ``axis`` optional. Everything else, including
every other ``reduce`` call, is the TensorFlow class unchanged, so ``model.fit``, ``evaluate``
and ``predict`` run as Keras wrote them. It is used only for ``--distribute multiworker``;
drop it once Keras's trainer handles these cases.
"""
from __future__ import annotations

import tensorflow as tf

__all__ = ["MultiWorkerMirroredStrategy"]


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``tf.distribute.MultiWorkerMirroredStrategy`` whose ``reduce`` accepts what Keras 3 passes.

    Same constructor arguments as the TensorFlow class (it reads ``TF_CONFIG``).
    """

    def reduce(self, reduce_op, value, axis=None):
        """``Strategy.reduce`` applied to every leaf of ``value``.

        Leaves whose per-replica values are scalars are reduced across replicas only
        (``axis`` is ignored for them, as a scalar has no axis to reduce along).
        """
        parent = super()

        def one(leaf):
            local = self.experimental_local_results(leaf)[0]
            rank = getattr(getattr(local, "shape", None), "rank", None)
            return parent.reduce(reduce_op, leaf, None if rank == 0 else axis)

        return tf.nest.map_structure(one, value)
