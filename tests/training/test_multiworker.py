"""kcnn.training.multiworker: the ``reduce`` Keras 3's TF trainer needs from the multi-worker strategy.

Without ``TF_CONFIG`` the strategy runs as one local worker, which is enough to check the
reduction rules in-process; the real two-worker ``model.fit`` is exercised end to end by
tests/cli/test_cli_train.py::test_multiworker_with_two_local_workers.
"""
import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="MultiWorkerMirroredStrategy is a tf.distribute strategy (tensorflow backend only)")


@pytest.fixture(scope="module")
def strategy():
    import os

    saved = os.environ.pop("TF_CONFIG", None)
    try:
        from kcnn.training.multiworker import MultiWorkerMirroredStrategy

        yield MultiWorkerMirroredStrategy()
    finally:
        if saved is not None:
            os.environ["TF_CONFIG"] = saved


def _per_replica(strategy):
    """What a train step returns per replica: a scalar metric and a batch-shaped tensor."""
    import tensorflow as tf

    return strategy.run(lambda: {"loss": tf.constant(2.5),
                                 "batch": tf.reshape(tf.range(6, dtype=tf.float32), (3, 2))})


def test_is_the_tensorflow_strategy(strategy):
    import tensorflow as tf

    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    assert strategy.num_replicas_in_sync == 1


@pytest.mark.parametrize("op, batch", [("MEAN", [2.0, 3.0]), ("SUM", [6.0, 9.0])])
def test_reduces_a_nest_with_scalars_and_batches(strategy, op, batch):
    # Keras's reduce_per_replica asks for axis=0 on scalar metric results in multi-worker mode.
    out = strategy.reduce(op, _per_replica(strategy), axis=0)
    assert set(out) == {"loss", "batch"}
    np.testing.assert_allclose(np.asarray(out["loss"]), 2.5)
    np.testing.assert_allclose(np.asarray(out["batch"]), batch)


def test_axis_defaults_to_none(strategy):
    # Keras's "sum" reduction calls strategy.reduce("SUM", v) without an axis.
    out = strategy.reduce("SUM", _per_replica(strategy))
    np.testing.assert_allclose(np.asarray(out["batch"]), np.arange(6.0).reshape(3, 2))


def test_the_tensorflow_reduce_rejects_axis_0_on_scalars(strategy):
    # The reason for the override: TensorFlow's own reduce fails on what Keras passes.
    import tensorflow as tf

    loss = _per_replica(strategy)["loss"]
    with pytest.raises(ValueError, match="dimension"):
        tf.distribute.MultiWorkerMirroredStrategy.reduce(strategy, "MEAN", loss, axis=0)
