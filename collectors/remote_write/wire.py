"""Prometheus remote-write 1.0 on the wire: the protobuf messages and the snappy block compression.

The messages are prompb's (prometheus/prometheus prompb/remote.proto and prompb/types.proto, the
fields remote-write 1.0 uses; spec: prometheus.io/docs/specs/remote_write_spec):

    message WriteRequest { repeated TimeSeries timeseries = 1; }      // fields 2 (reserved), 3 unused
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }  // timestamp: epoch ms

They are built at import from a FileDescriptorProto in a private descriptor pool (no generated _pb2
file, no protoc): the `protobuf` package encodes them. The body is compressed with snappy's block
format (not the framed format), by `cramjam`. No codec is written here.

The sender builds its requests as `SamplesRequest`: the same WriteRequest on the wire, read with a
TimeSeries that declares only `samples`. A series' labels, parsed from its cached template (a serialized
one-series WriteRequest), are then kept by protobuf as an unknown field and written back verbatim on
serialization (protobuf keeps unknown fields through parse and serialize: protobuf.dev/programming-guides/
proto3/#unknowns), instead of being walked label by label on every request: 3x less serializing, 4x
less parsing of templates. The labels then follow the samples inside each TimeSeries; field order is
free on the wire (protobuf.dev/programming-guides/encoding/#order), and receivers decode the same series.
"""

from __future__ import annotations

from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

CONTENT_TYPE = "application/x-protobuf"
CONTENT_ENCODING = "snappy"
PROTOCOL_VERSION = "0.1.0"
"""X-Prometheus-Remote-Write-Version of remote-write 1.0."""

_F = descriptor_pb2.FieldDescriptorProto


def _message(name: str, *fields: tuple[str, int, int, int, str | None]) -> descriptor_pb2.DescriptorProto:
    """A message descriptor; each field is (name, number, type, label, message type name or None)."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, label, type_name in fields:
        entry = message.field.add(name=field_name, number=number, type=kind, label=label)  # type: ignore[arg-type]
        if type_name is not None:
            entry.type_name = type_name
    return message


def _sample_message() -> descriptor_pb2.DescriptorProto:
    """prompb's Sample (value, timestamp), the same in both files."""
    opt = _F.LABEL_OPTIONAL
    return _message(
        "Sample", ("value", 1, _F.TYPE_DOUBLE, opt, None), ("timestamp", 2, _F.TYPE_INT64, opt, None)
    )


def _file() -> descriptor_pb2.FileDescriptorProto:
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(
        name="rackmon/prompb_remote_write_1_0.proto", package="prometheus", syntax="proto3"
    )
    proto.message_type.extend(
        [
            _sample_message(),
            _message(
                "Label", ("name", 1, _F.TYPE_STRING, opt, None), ("value", 2, _F.TYPE_STRING, opt, None)
            ),
            _message(
                "TimeSeries",
                ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
                ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ),
            _message("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.TimeSeries")),
        ]
    )
    return proto


def _samples_file() -> descriptor_pb2.FileDescriptorProto:
    """WriteRequest whose TimeSeries declares only `samples`: its labels stay bytes (unknown field 1)."""
    rep = _F.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(
        name="rackmon/prompb_samples_only.proto", package="rackmon_samples", syntax="proto3"
    )
    proto.message_type.extend(
        [
            _sample_message(),
            _message("TimeSeries", ("samples", 2, _F.TYPE_MESSAGE, rep, ".rackmon_samples.Sample")),
            _message("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".rackmon_samples.TimeSeries")),
        ]
    )
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
_POOL.Add(_samples_file())
_CLASSES = message_factory.GetMessages([_file(), _samples_file()], pool=_POOL)
WriteRequest: Any = _CLASSES["prometheus.WriteRequest"]
TimeSeries: Any = _CLASSES["prometheus.TimeSeries"]
Label: Any = _CLASSES["prometheus.Label"]
Sample: Any = _CLASSES["prometheus.Sample"]
SamplesRequest: Any = _CLASSES["rackmon_samples.WriteRequest"]
"""A WriteRequest on the wire whose series' labels are kept as the bytes they were parsed from."""


def compress(body: bytes) -> bytes:
    """Snappy block format, as remote-write's Content-Encoding: snappy means."""
    return bytes(cramjam.snappy.compress_raw(body))


def decompress(data: bytes) -> bytes:
    """The inverse of compress (tests and benchmarks read requests back with it)."""
    return bytes(cramjam.snappy.decompress_raw(data))
