"""ServerSettings, the one settings object of kcnn-serve: validation, the CLI's flags into it, and
create_app built from it (metrics timer included without the /metrics route group)."""
import numpy as np
import pytest
from starlette.testclient import TestClient

from kcnn.cli.serve import build_parser, settings_from_args
from kcnn.export.serving import ServerSettings, create_app


@pytest.mark.parametrize("field,value,message", [
    ("port", 70000, "port must be an integer from 0 to 65535"),
    ("grpc_port", -1, "grpc_port must be an integer from 0 to 65535 or None"),
    ("max_instances", 0, "max_instances must be a positive integer"),
    ("grpc_max_message_bytes", 1.5, "grpc_max_message_bytes must be a positive integer"),
    ("read_timeout_s", float("nan"), "read_timeout_s must be a positive finite number"),
    ("max_wait_ms", -1, "max_wait_ms must be a finite number >= 0"),
])
def test_invalid_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message) as raised:
        ServerSettings(**{field: value})
    assert repr(value) in str(raised.value)


def test_replace_rejects_unknown_fields():
    with pytest.raises(TypeError, match="unknown server setting.*max_batches"):
        ServerSettings().replace(max_batches=3)
    assert ServerSettings().replace(max_batch=3).max_batch == 3


def test_cli_flags_become_settings():
    args = build_parser().parse_args([
        "m.onnx", "--port", "0", "--grpc-port", "9001", "--grpc-max-message-bytes", "1000",
        "--grpc-max-concurrency", "7", "--max-instances", "5", "--header-timeout", "2",
        "--providers", "CPUExecutionProvider, ", "--model-name", "m"])
    settings = settings_from_args(args)
    assert (settings.port, settings.grpc_port, settings.grpc_max_message_bytes) == (0, 9001, 1000)
    assert (settings.grpc_max_concurrency, settings.max_instances) == (7, 5)
    assert settings.header_timeout_s == 2.0 and settings.providers == ("CPUExecutionProvider",)
    assert settings.model_name == "m"
    assert build_parser().parse_args(["m.onnx"]).grpc_port is None


class _Predictor:
    """A stand-in onnxruntime predictor: three labels, logits = mean pixel times (1, 2, 3)."""

    labels, input_shape, input_name, output_name = ["a", "b", "c"], (2, 2, 1), "images", "logits"
    metadata, preprocessing, provider, path = {}, {}, "CPUExecutionProvider", "p.onnx"

    def preprocess(self, image):
        return np.asarray(image, np.float32).reshape(1, 2, 2, 1)

    def run(self, batch):
        with np.errstate(over="ignore"):  # 3e38 pixels overflow to inf: the 422 case
            return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) * np.arange(1, 4)


def scores_routes(ctx):
    """A route group as the README's "Adding routes" shows: inputs read as /v1/predict reads
    them, run through ``ctx.infer`` (micro-batcher, health, non-finite check)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def scores(request):
        batch, _ = await ctx.read_inputs(request)
        logits = await ctx.infer(batch)
        return JSONResponse({"scores": logits.tolist()})

    return [Route("/v1/scores", scores, methods=["POST"])]


def test_create_app_from_settings_times_every_route():
    settings = ServerSettings(max_instances=2, model_name="m")
    app = create_app(_Predictor(), settings, route_groups=[scores_routes], model_version="3")
    ctx = app.state.serving
    assert ctx.settings.max_instances == 2 and ctx.model.name == "m" and ctx.model.version == "3"
    with TestClient(app) as client:
        ok = client.post("/v1/scores", json={"instances": [[[[1], [1]], [[1], [1]]]]})
        assert ok.status_code == 200 and ok.json() == {"scores": [[1.0, 2.0, 3.0]]}
        over = client.post("/v1/scores", json={"instances": [[[[0]] * 2] * 2] * 3})
        assert over.status_code == 413
        huge = client.post("/v1/scores", json={"instances": [[[[3e38], [3e38]]] * 2]})
        assert huge.status_code == 422 and "non-finite" in huge.json()["error"]
    exposition = ctx.metrics.exposition().decode()
    assert 'kcnn_http_requests_total{method="POST",route="/v1/scores",status="200"}' in exposition
    assert 'status="413"' in exposition
