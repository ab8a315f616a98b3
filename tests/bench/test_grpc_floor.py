"""The bare grpc.aio server of ``kcnn-bench --section serving``'s gRPC floor (backend-independent: no
Keras in it, so it runs the same under every backend)."""
import signal
import subprocess
import sys

import grpc
import numpy as np
import tritonclient.grpc as triton

from kcnn.bench import grpc_floor


def test_answers_model_infer_with_its_fixed_response_and_stops_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "kcnn.bench.grpc_floor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(f"/{grpc_floor.SERVICE}/ModelInfer")
            assert call(b"any bytes at all", timeout=10) == grpc_floor.response_bytes()
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        images = triton.InferInput("images", [1, 28, 28, 1], "FP32")
        images.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
        result = client.infer("lenet", [images])
        np.testing.assert_array_equal(result.as_numpy("logits"), np.zeros((1, 10), np.float32))
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read()
