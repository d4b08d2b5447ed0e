"""Python client for Cairn (see README.md). ``cairn_client.gen`` holds the
generated messages and stubs; they are re-exported here under short names."""

from .client import Client, ErrorDetails, error_details, from_struct, to_struct
from .gen.cairn.v1 import job_pb2, keyvalue_pb2, metric_pb2, resolution_pb2, session_pb2, trace_pb2, transaction_pb2
from .gen.google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Client",
    "ErrorDetails",
    "error_details",
    "from_struct",
    "to_struct",
    "job_pb2",
    "keyvalue_pb2",
    "metric_pb2",
    "resolution_pb2",
    "session_pb2",
    "trace_pb2",
    "transaction_pb2",
    "error_details_pb2",
    "status_pb2",
]
