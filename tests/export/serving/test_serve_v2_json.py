"""The KServe V2 JSON tensor fast route (kcnn.export.serving.v2_json): for every request, fuzzed
or not, the same batch or the same error (status and message) as the plain route (orjson for the
whole request, then numpy.asarray)."""
import json
import types

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcnn.export.serving import kserve_v2
from kcnn.export.serving.requests import RequestError
from kcnn.export.serving.v2_json import nested_shape, parse_header

INPUT_SHAPE = (2, 3, 1)
MODEL = types.SimpleNamespace(predictor=types.SimpleNamespace(
    input_name="images", input_shape=INPUT_SHAPE, output_name="logits"))


def _parse(body, plain=False):
    """(batch, outputs, id) or ("error", status, message) for ``body``."""
    def plain_parse(part):
        return orjson.loads(part)

    with pytest.MonkeyPatch.context() as patch:
        if plain:
            patch.setattr(kserve_v2, "parse_header", plain_parse)
        try:
            header, tail = kserve_v2.split_body(body, None)
            return kserve_v2.parse_infer_request(header, tail, MODEL, max_instances=4)
        except RequestError as err:
            return ("error", err.status, err.message)


def _same(body):
    fast, plain = _parse(body), _parse(body, plain=True)
    if isinstance(plain[0], str):
        assert fast == plain, body[:200]
    else:
        assert fast[0].dtype == np.float32 and np.array_equal(fast[0], plain[0], equal_nan=True)
        assert fast[1:] == plain[1:]
    return fast


@pytest.mark.parametrize("nested", [False, True])
def test_valid_tensors_equal_the_plain_route(nested):
    x = np.random.default_rng(0).random((3, *INPUT_SHAPE), dtype=np.float32)
    data = x.tolist() if nested else x.reshape(-1).tolist()
    body = json.dumps({"id": "a", "inputs": [{"name": "images", "shape": list(x.shape),
                                              "datatype": "FP32", "data": data}]}).encode()
    batch, outputs, request_id = _same(body)
    np.testing.assert_array_equal(batch, x)
    assert outputs == [("logits", False)] and request_id == "a"


@pytest.mark.parametrize("span,shape", [
    (b"[1, 2]", (2,)), (b"[[1,2],[3,4],[5,6]]", (3, 2)), (b"[ [ [1] ] , [ [2] ] ]", (2, 1, 1)),
    (b"[[1,2],[3]]", None), (b"[[1,2],3]", None), (b"[[[1]],[2]]", None),
    (b"[[1],[]]", (2, 1)),  # brackets alone cannot tell [] from [1]: the number count does
])
def test_nested_shape(span, shape):
    assert nested_shape(span) == shape


@pytest.mark.parametrize("data", [
    b"[[[1],[2],[3]],[[4],[5],[06]]]", b"[[[1],[2],[3]],[[4],[5]]]",
    b"[[[1],[2],[3]],[[4],[5],[.5]]]",
    b"[[[1],[2],[3]],[[4],[5],[1e400]]]", b"[[[1],[2],[3]],[[4],[5],[]]]",
    b"[[[1],[2],[3]],[[4],[5],[6,]]]", b"[[[1],[2],[3]],[[4],[5],[-0]]]",
])
def test_odd_nested_lists_get_the_plain_routes_answer(data):
    body = (b'{"inputs": [{"name": "images", "shape": [1, 2, 3, 1], "datatype": "FP32", '
            b'"data": ' + data + b"}]}")
    _same(body)


def test_a_data_key_elsewhere_is_left_to_the_plain_route():
    body = (b'{"parameters": {"data": [[1]]}, "inputs": [{"name": "images", "datatype": "FP32",'
            b' "shape": [1, 2, 3, 1], "data": [1, 2, 3, 4, 5, 6]}]}')
    assert _same(body)[0].shape == (1, *INPUT_SHAPE)
    body = b'{"id": "x\\"data\\": [[1]]", "inputs": [{"data": [[1, 2]]}]}'
    assert parse_header(body)["id"] == 'x"data": [[1]]'
    _same(body)


_NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
                     st.integers(-10, 10).map(str),
                     st.sampled_from(["01", ".5", "+1", "1e400", "-0", "1.", "1e", "--1", "", " 2 ",
                                      "true", '"3"']))


@st.composite
def _requests(draw):
    """V2 JSON requests whose ``data`` is a nested list, sometimes ragged, odd or mislabelled."""
    dims = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))

    def build(depth):
        if depth == len(dims):
            return draw(_NUMBERS)
        n = dims[depth] + draw(st.sampled_from([0, 0, 0, 1, -1]))
        return "[" + ",".join(build(depth + 1) for _ in range(max(n, 0))) + "]"

    shape = draw(st.sampled_from([[1, 2, 3, 1], [2, 2, 3, 1], [1, 6], [5, 2, 3, 1]]))
    name = draw(st.sampled_from(["images", "x"]))
    ws = draw(st.sampled_from(["", " ", "\n  "]))
    text = (f'{{"inputs":{ws}[{{"name": "{name}", "shape": {json.dumps(shape)}, "datatype": '
            f'"FP32", "data":{ws}{build(0)}}}]}}')
    return text.encode()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_requests())
def test_fuzzed_requests_get_the_plain_routes_answer(body):
    _same(body)
