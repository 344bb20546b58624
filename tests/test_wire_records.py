"""The provider-neutral records: how they cross the pipe to the telemetry process."""

import dataclasses
import pickle
import sys
import types
from collections.abc import Iterator

import pytest

from tests.builders import finished_call
from wire.records import ApiRequest, ApiResult, ToolCall, Usage, pickled_by_name

MODULE = "records_as_another_process_has_them"


def record_class(*fields: tuple[str, object, object]) -> type:
    """A slotted record of these (name, type, default) fields, in MODULE, as pickle finds it."""
    spec = [(name, kind, dataclasses.field(default=default)) for name, kind, default in fields]
    cls: type = pickled_by_name(dataclasses.make_dataclass("Record", spec, slots=True, frozen=True, module=MODULE))
    setattr(sys.modules[MODULE], "Record", cls)  # noqa: B010
    return cls


@pytest.fixture(autouse=True)
def records_module() -> Iterator[None]:
    sys.modules[MODULE] = types.ModuleType(MODULE)
    yield
    del sys.modules[MODULE]


def test_values_land_in_the_fields_of_their_name_whatever_the_order_on_the_other_side():
    sent = pickle.dumps(record_class(("input_tokens", int, 0), ("output_tokens", int, 0))(10, 20))
    receiving = record_class(("output_tokens", int, 0), ("input_tokens", int, 0))
    assert pickle.loads(sent) == receiving(output_tokens=20, input_tokens=10)


def test_a_field_the_other_side_lacks_takes_its_default_and_an_unknown_one_fails():
    older = pickle.dumps(record_class(("input_tokens", int, 0))(10))
    newer = pickle.dumps(record_class(("input_tokens", int, 0), ("output_tokens", int, 0))(10, 20))
    receiving = record_class(("input_tokens", int, 0), ("reasoning_tokens", int | None, None))
    assert pickle.loads(older) == receiving(input_tokens=10, reasoning_tokens=None)
    with pytest.raises(TypeError, match="output_tokens"):
        pickle.loads(newer)


def test_the_names_are_written_once_per_batch():
    batch = pickle.dumps([Usage(input_tokens=n, output_tokens=n) for n in range(100)])
    assert batch.count(b"cache_write_5m_tokens") == 1


@pytest.mark.parametrize(
    "record",
    [
        Usage(input_tokens=3, output_tokens=4, input_modalities=(("text", 3),)),
        ToolCall("call_1", "get_weather"),
        ApiRequest(model="m", stream=True, attributes={"request.voice": "alloy"}),
        ApiResult(response_id="r", usage=Usage(input_tokens=1), tool_calls=(ToolCall("c", "n"),)),
    ],
)
def test_each_record_comes_back_equal(record: object):
    assert pickle.loads(pickle.dumps(record)) == record


@pytest.mark.parametrize(
    ("request_body", "response_body"), [(None, None), (b"{}", None), (None, b"{}"), (b"{}", b"{}")]
)
def test_a_call_comes_back_equal_with_or_without_bodies_to_parse(request_body, response_body):
    finished = finished_call(request_body=request_body, response_body=response_body, status_code=200)
    assert pickle.loads(pickle.dumps(finished)) == finished
