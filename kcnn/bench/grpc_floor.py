"""The floor under any Python KServe V2 gRPC server, for ``kcnn-bench --section serving``.

A bare ``grpc.aio`` server whose ``ModelInfer`` answers one fixed, pre-serialized response (no
parsing, validation, model or batching), driven by the same load as kcnn-serve's ``grpc`` row: what
grpcio itself costs per call on this machine. Every Python model server on grpcio (kcnn-serve,
KServe's, MLServer's) pays it before its own work, so kcnn-serve's CPU per call over this floor is
the share it can still cut, and the floor's throughput is the most any of them reaches beside the
same load generator on the same cores.

Run as ``python -m kcnn.bench.grpc_floor``: prints its port, serves on 127.0.0.1 until SIGTERM.
"""
from __future__ import annotations

import asyncio
import signal

SERVICE = "inference.GRPCInferenceService"


def response_bytes() -> bytes:
    """A serialized ``ModelInferResponse``: LeNet's 10 float32 logits for one image."""
    import numpy as np

    from kcnn.export.serving.grpc_v2 import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse(model_name="floor", model_version="1",
                                     raw_output_contents=[np.zeros(10, np.float32).tobytes()])
    response.outputs.add(name="logits", datatype="FP32", shape=[1, 10])
    return response.SerializeToString()


async def serve(ready=print) -> None:
    """Serve ``ModelInfer`` on an ephemeral 127.0.0.1 port (``ready(port)`` once listening) until
    SIGTERM or SIGINT."""
    import grpc

    answer = response_bytes()

    async def model_infer(request: bytes, context) -> bytes:
        return answer

    server = grpc.aio.server()
    # No (de)serializers: the request stays bytes, the answer is already bytes.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready(port)
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    """Entry point of ``python -m kcnn.bench.grpc_floor``."""
    asyncio.run(serve(lambda port: print(port, flush=True)))


if __name__ == "__main__":
    main()
