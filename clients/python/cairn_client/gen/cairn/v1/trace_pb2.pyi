from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
SEVERITY_CRITICAL: Severity
SEVERITY_DEBUG: Severity
SEVERITY_ERROR: Severity
SEVERITY_INFO: Severity
SEVERITY_UNSPECIFIED: Severity
SEVERITY_WARNING: Severity

class AppendEventsRequest(_message.Message):
    __slots__ = ["events"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TraceEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TraceEvent, _Mapping]]] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AppendResult, _Mapping]]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ["duplicate", "event_id", "offset", "sequence"]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    event_id: str
    offset: int
    sequence: int
    def __init__(self, event_id: _Optional[str] = ..., sequence: _Optional[int] = ..., offset: _Optional[int] = ..., duplicate: bool = ...) -> None: ...

class IngestEventsAck(_message.Message):
    __slots__ = ["accepted", "batch_id", "duplicates", "last_offset"]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    batch_id: str
    duplicates: int
    last_offset: int
    def __init__(self, batch_id: _Optional[str] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., last_offset: _Optional[int] = ...) -> None: ...

class IngestEventsRequest(_message.Message):
    __slots__ = ["batch_id", "events"]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    events: _containers.RepeatedCompositeFieldContainer[TraceEvent]
    def __init__(self, batch_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TraceEvent, _Mapping]]] = ...) -> None: ...

class ListSessionEventsRequest(_message.Message):
    __slots__ = ["after_time", "before_time", "event_types", "min_severity", "page_size", "page_token", "read_mask", "session_id"]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    after_time: _timestamp_pb2.Timestamp
    before_time: _timestamp_pb2.Timestamp
    event_types: _containers.RepeatedScalarFieldContainer[str]
    min_severity: Severity
    page_size: int
    page_token: str
    read_mask: _field_mask_pb2.FieldMask
    session_id: str
    def __init__(self, session_id: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., min_severity: _Optional[_Union[Severity, str]] = ..., after_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., before_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ListSessionEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TraceEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[TraceEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTraceEventsRequest(_message.Message):
    __slots__ = ["after_sequence", "page_size", "page_token", "read_mask", "trace_id"]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    page_size: int
    page_token: str
    read_mask: _field_mask_pb2.FieldMask
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ListTraceEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TraceEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[TraceEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubscribeEventsRequest(_message.Message):
    __slots__ = ["event_types", "from_now", "min_severity", "session_id", "start_offset", "trace_id"]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedScalarFieldContainer[str]
    from_now: bool
    min_severity: Severity
    session_id: str
    start_offset: int
    trace_id: str
    def __init__(self, session_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., min_severity: _Optional[_Union[Severity, str]] = ..., start_offset: _Optional[int] = ..., from_now: bool = ...) -> None: ...

class SubscribeEventsResponse(_message.Message):
    __slots__ = ["event", "progress"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    event: TraceEvent
    progress: SubscribeProgress
    def __init__(self, event: _Optional[_Union[TraceEvent, _Mapping]] = ..., progress: _Optional[_Union[SubscribeProgress, _Mapping]] = ...) -> None: ...

class SubscribeProgress(_message.Message):
    __slots__ = ["offset"]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class TraceEvent(_message.Message):
    __slots__ = ["event_hash", "event_id", "event_type", "ingest_time", "offset", "payload", "prev_hash", "sequence", "session_id", "severity", "time", "trace_id"]
    EVENT_HASH_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    event_hash: str
    event_id: str
    event_type: str
    ingest_time: _timestamp_pb2.Timestamp
    offset: int
    payload: _struct_pb2.Struct
    prev_hash: str
    sequence: int
    session_id: str
    severity: Severity
    time: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, event_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., session_id: _Optional[str] = ..., event_type: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., sequence: _Optional[int] = ..., offset: _Optional[int] = ..., ingest_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., prev_hash: _Optional[str] = ..., event_hash: _Optional[str] = ...) -> None: ...

class VerifyTraceRequest(_message.Message):
    __slots__ = ["trace_id"]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ...) -> None: ...

class VerifyTraceResponse(_message.Message):
    __slots__ = ["event_count", "first_invalid_sequence", "head_hash", "reason", "valid"]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_INVALID_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    event_count: int
    first_invalid_sequence: int
    head_hash: str
    reason: str
    valid: bool
    def __init__(self, valid: bool = ..., event_count: _Optional[int] = ..., head_hash: _Optional[str] = ..., first_invalid_sequence: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
