from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DECISION_ALLOW: Decision
DECISION_DENY: Decision
DECISION_PARTIAL: Decision
DECISION_UNSPECIFIED: Decision
DESCRIPTOR: _descriptor.FileDescriptor

class BatchCreateResolutionsRequest(_message.Message):
    __slots__ = ["requests"]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateResolutionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateResolutionRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateResolutionsResponse(_message.Message):
    __slots__ = ["resolutions"]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    resolutions: _containers.RepeatedCompositeFieldContainer[Resolution]
    def __init__(self, resolutions: _Optional[_Iterable[_Union[Resolution, _Mapping]]] = ...) -> None: ...

class CreateResolutionRequest(_message.Message):
    __slots__ = ["request_id", "resolution", "ttl"]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    resolution: Resolution
    ttl: _duration_pb2.Duration
    def __init__(self, resolution: _Optional[_Union[Resolution, _Mapping]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteResolutionRequest(_message.Message):
    __slots__ = ["resolution_id"]
    RESOLUTION_ID_FIELD_NUMBER: _ClassVar[int]
    resolution_id: str
    def __init__(self, resolution_id: _Optional[str] = ...) -> None: ...

class GetResolutionRequest(_message.Message):
    __slots__ = ["resolution_id"]
    RESOLUTION_ID_FIELD_NUMBER: _ClassVar[int]
    resolution_id: str
    def __init__(self, resolution_id: _Optional[str] = ...) -> None: ...

class ImportResolutionsRequest(_message.Message):
    __slots__ = ["resolutions"]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    resolutions: _containers.RepeatedCompositeFieldContainer[Resolution]
    def __init__(self, resolutions: _Optional[_Iterable[_Union[Resolution, _Mapping]]] = ...) -> None: ...

class ImportResolutionsResponse(_message.Message):
    __slots__ = ["resolutions"]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    resolutions: _containers.RepeatedCompositeFieldContainer[Resolution]
    def __init__(self, resolutions: _Optional[_Iterable[_Union[Resolution, _Mapping]]] = ...) -> None: ...

class ListResolutionsRequest(_message.Message):
    __slots__ = ["agent_id", "created_after", "created_before", "decisions", "include_expired", "page_size", "page_token", "request_id", "session_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    decisions: _containers.RepeatedScalarFieldContainer[Decision]
    include_expired: bool
    page_size: int
    page_token: str
    request_id: str
    session_id: str
    def __init__(self, agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., request_id: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[Decision, str]]] = ..., created_after: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., include_expired: bool = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResolutionsResponse(_message.Message):
    __slots__ = ["next_page_token", "resolutions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    resolutions: _containers.RepeatedCompositeFieldContainer[Resolution]
    def __init__(self, resolutions: _Optional[_Iterable[_Union[Resolution, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PurgeExpiredResolutionsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class PurgeExpiredResolutionsResponse(_message.Message):
    __slots__ = ["deleted_count"]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ["agent_id", "allowed_actions", "context_blocks", "create_time", "decision", "denied_actions", "expire_time", "metadata", "policies_applied", "request_id", "resolution_id", "session_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DENIED_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    POLICIES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    allowed_actions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    context_blocks: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    create_time: _timestamp_pb2.Timestamp
    decision: Decision
    denied_actions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    expire_time: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    policies_applied: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    request_id: str
    resolution_id: str
    session_id: str
    def __init__(self, resolution_id: _Optional[str] = ..., request_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., context_blocks: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., allowed_actions: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., denied_actions: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., policies_applied: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
