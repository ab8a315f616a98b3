"""Generated KServe V2 gRPC stubs (``inference.GRPCInferenceService``), checked in.

``grpc_predict_v2_pb2.py`` and ``grpc_predict_v2_pb2_grpc.py`` are generated from
``grpc_predict_v2.proto`` (next to them) by grpcio-tools 1.73.1 (protobuf gencode 6.31.0), once, and
committed: installing or running kcnn then needs no code-generation step and no grpcio-tools,
only the ``grpcio`` and ``protobuf`` runtimes (``protobuf>=6.31``, the gencode's version, and
``grpcio>=1.73.1``, in pyproject.toml). Two hand edits after generating, both marked ``kcnn:``:
the messages live in a private descriptor pool (so tritonclient's identically named
``inference.*`` messages can be imported in the same process), and the service module imports the
messages relatively. To regenerate::

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. grpc_predict_v2.proto
"""
