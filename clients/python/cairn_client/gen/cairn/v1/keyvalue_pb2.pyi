from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
WATCH_EVENT_TYPE_DELETE: WatchEventType
WATCH_EVENT_TYPE_EXPIRE: WatchEventType
WATCH_EVENT_TYPE_PUT: WatchEventType
WATCH_EVENT_TYPE_UNSPECIFIED: WatchEventType

class BatchDeleteRequest(_message.Message):
    __slots__ = ["keys"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchDeleteResponse(_message.Message):
    __slots__ = ["deleted_count"]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class BatchGetRequest(_message.Message):
    __slots__ = ["keys", "read_mask"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class BatchGetResponse(_message.Message):
    __slots__ = ["entries"]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class BatchPutRequest(_message.Message):
    __slots__ = ["requests"]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[PutRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[PutRequest, _Mapping]]] = ...) -> None: ...

class BatchPutResponse(_message.Message):
    __slots__ = ["entries"]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ["prefix", "value_contains"]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    VALUE_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    value_contains: _struct_pb2.Value
    def __init__(self, prefix: _Optional[str] = ..., value_contains: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ["count"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ["expected_version", "key"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    key: str
    def __init__(self, key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ["deleted"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ["bytes_value", "create_time", "expire_time", "json_value", "key", "mod_revision", "session_id", "update_time", "version"]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    bytes_value: bytes
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    json_value: _struct_pb2.Value
    key: str
    mod_revision: int
    session_id: str
    update_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, key: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., json_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., version: _Optional[int] = ..., mod_revision: _Optional[int] = ..., session_id: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ["key", "read_mask"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    key: str
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, key: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class IncrementRequest(_message.Message):
    __slots__ = ["delta", "key", "ttl"]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    delta: int
    key: str
    ttl: _duration_pb2.Duration
    def __init__(self, key: _Optional[str] = ..., delta: _Optional[int] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ["keys_only", "page_size", "page_token", "prefix", "read_mask", "value_contains"]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    VALUE_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    keys_only: bool
    page_size: int
    page_token: str
    prefix: str
    read_mask: _field_mask_pb2.FieldMask
    value_contains: _struct_pb2.Value
    def __init__(self, prefix: _Optional[str] = ..., keys_only: bool = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., value_contains: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ["entries", "next_page_token"]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PurgeExpiredRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class PurgeExpiredResponse(_message.Message):
    __slots__ = ["deleted_count"]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ["entry", "expected_version", "ttl"]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    expected_version: int
    ttl: _duration_pb2.Duration
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ["entry", "revision", "type"]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    revision: int
    type: WatchEventType
    def __init__(self, type: _Optional[_Union[WatchEventType, str]] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchProgress(_message.Message):
    __slots__ = ["revision"]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ["prefix", "start_revision"]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    start_revision: int
    def __init__(self, prefix: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ["event", "progress"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    event: WatchEvent
    progress: WatchProgress
    def __init__(self, event: _Optional[_Union[WatchEvent, _Mapping]] = ..., progress: _Optional[_Union[WatchProgress, _Mapping]] = ...) -> None: ...

class WatchEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
