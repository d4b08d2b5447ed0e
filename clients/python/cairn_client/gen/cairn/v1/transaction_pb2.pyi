from ...cairn.v1 import job_pb2 as _job_pb2
from ...cairn.v1 import keyvalue_pb2 as _keyvalue_pb2
from ...cairn.v1 import resolution_pb2 as _resolution_pb2
from ...cairn.v1 import session_pb2 as _session_pb2
from ...cairn.v1 import trace_pb2 as _trace_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommitRequest(_message.Message):
    __slots__ = ["conditions", "operations", "request_id"]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    request_id: str
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OperationResult]
    def __init__(self, results: _Optional[_Iterable[_Union[OperationResult, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ["entry", "job", "session"]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    entry: EntryCondition
    job: JobCondition
    session: SessionCondition
    def __init__(self, session: _Optional[_Union[SessionCondition, _Mapping]] = ..., entry: _Optional[_Union[EntryCondition, _Mapping]] = ..., job: _Optional[_Union[JobCondition, _Mapping]] = ...) -> None: ...

class EntryCondition(_message.Message):
    __slots__ = ["expected_version", "key"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    key: str
    def __init__(self, key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class JobCondition(_message.Message):
    __slots__ = ["job_id", "states"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    states: _containers.RepeatedScalarFieldContainer[_job_pb2.JobState]
    def __init__(self, job_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_job_pb2.JobState, str]]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ["append_events", "append_messages", "complete_job", "create_resolution", "create_session", "delete", "delete_session", "enqueue_job", "fail_job", "increment", "put", "update_session"]
    APPEND_EVENTS_FIELD_NUMBER: _ClassVar[int]
    APPEND_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_JOB_FIELD_NUMBER: _ClassVar[int]
    CREATE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    DELETE_SESSION_FIELD_NUMBER: _ClassVar[int]
    ENQUEUE_JOB_FIELD_NUMBER: _ClassVar[int]
    FAIL_JOB_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    append_events: _trace_pb2.AppendEventsRequest
    append_messages: _session_pb2.AppendMessagesRequest
    complete_job: _job_pb2.CompleteJobRequest
    create_resolution: _resolution_pb2.CreateResolutionRequest
    create_session: _session_pb2.CreateSessionRequest
    delete: _keyvalue_pb2.DeleteRequest
    delete_session: _session_pb2.DeleteSessionRequest
    enqueue_job: _job_pb2.EnqueueJobRequest
    fail_job: _job_pb2.FailJobRequest
    increment: _keyvalue_pb2.IncrementRequest
    put: _keyvalue_pb2.PutRequest
    update_session: _session_pb2.UpdateSessionRequest
    def __init__(self, create_session: _Optional[_Union[_session_pb2.CreateSessionRequest, _Mapping]] = ..., update_session: _Optional[_Union[_session_pb2.UpdateSessionRequest, _Mapping]] = ..., delete_session: _Optional[_Union[_session_pb2.DeleteSessionRequest, _Mapping]] = ..., append_messages: _Optional[_Union[_session_pb2.AppendMessagesRequest, _Mapping]] = ..., create_resolution: _Optional[_Union[_resolution_pb2.CreateResolutionRequest, _Mapping]] = ..., append_events: _Optional[_Union[_trace_pb2.AppendEventsRequest, _Mapping]] = ..., put: _Optional[_Union[_keyvalue_pb2.PutRequest, _Mapping]] = ..., delete: _Optional[_Union[_keyvalue_pb2.DeleteRequest, _Mapping]] = ..., increment: _Optional[_Union[_keyvalue_pb2.IncrementRequest, _Mapping]] = ..., enqueue_job: _Optional[_Union[_job_pb2.EnqueueJobRequest, _Mapping]] = ..., complete_job: _Optional[_Union[_job_pb2.CompleteJobRequest, _Mapping]] = ..., fail_job: _Optional[_Union[_job_pb2.FailJobRequest, _Mapping]] = ...) -> None: ...

class OperationResult(_message.Message):
    __slots__ = ["append_events", "append_messages", "complete_job", "create_resolution", "create_session", "delete", "delete_session", "enqueue_job", "fail_job", "increment", "put", "update_session"]
    APPEND_EVENTS_FIELD_NUMBER: _ClassVar[int]
    APPEND_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_JOB_FIELD_NUMBER: _ClassVar[int]
    CREATE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    DELETE_SESSION_FIELD_NUMBER: _ClassVar[int]
    ENQUEUE_JOB_FIELD_NUMBER: _ClassVar[int]
    FAIL_JOB_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    append_events: _trace_pb2.AppendEventsResponse
    append_messages: _session_pb2.AppendMessagesResponse
    complete_job: _job_pb2.Job
    create_resolution: _resolution_pb2.Resolution
    create_session: _session_pb2.Session
    delete: _keyvalue_pb2.DeleteResponse
    delete_session: _empty_pb2.Empty
    enqueue_job: _job_pb2.EnqueueJobResponse
    fail_job: _job_pb2.Job
    increment: _keyvalue_pb2.Entry
    put: _keyvalue_pb2.Entry
    update_session: _session_pb2.Session
    def __init__(self, create_session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., update_session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., delete_session: _Optional[_Union[_empty_pb2.Empty, _Mapping]] = ..., append_messages: _Optional[_Union[_session_pb2.AppendMessagesResponse, _Mapping]] = ..., create_resolution: _Optional[_Union[_resolution_pb2.Resolution, _Mapping]] = ..., append_events: _Optional[_Union[_trace_pb2.AppendEventsResponse, _Mapping]] = ..., put: _Optional[_Union[_keyvalue_pb2.Entry, _Mapping]] = ..., delete: _Optional[_Union[_keyvalue_pb2.DeleteResponse, _Mapping]] = ..., increment: _Optional[_Union[_keyvalue_pb2.Entry, _Mapping]] = ..., enqueue_job: _Optional[_Union[_job_pb2.EnqueueJobResponse, _Mapping]] = ..., complete_job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., fail_job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class SessionCondition(_message.Message):
    __slots__ = ["exists", "expected_version", "session_id"]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    expected_version: int
    session_id: str
    def __init__(self, session_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., exists: bool = ...) -> None: ...
