from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
JOB_STATE_AVAILABLE: JobState
JOB_STATE_BLOCKED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_DEAD: JobState
JOB_STATE_RETRYING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SCHEDULED: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_UNSPECIFIED: JobState
OVERLAP_ALLOW: Overlap
OVERLAP_SKIP: Overlap
OVERLAP_UNSPECIFIED: Overlap
RATE_LIMIT_SCOPE_GROUP: RateLimitScope
RATE_LIMIT_SCOPE_QUEUE: RateLimitScope
RATE_LIMIT_SCOPE_UNSPECIFIED: RateLimitScope

class Backoff(_message.Message):
    __slots__ = ["initial_delay", "max_delay", "multiplier"]
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    initial_delay: _duration_pb2.Duration
    max_delay: _duration_pb2.Duration
    multiplier: float
    def __init__(self, initial_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ...) -> None: ...

class BatchCompleteJobsRequest(_message.Message):
    __slots__ = ["requests"]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CompleteJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CompleteJobRequest, _Mapping]]] = ...) -> None: ...

class BatchCompleteJobsResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CompleteJobResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CompleteJobResult, _Mapping]]] = ...) -> None: ...

class BatchEnqueueJobsRequest(_message.Message):
    __slots__ = ["read_mask", "requests"]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    read_mask: _field_mask_pb2.FieldMask
    requests: _containers.RepeatedCompositeFieldContainer[EnqueueJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[EnqueueJobRequest, _Mapping]]] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class BatchEnqueueJobsResponse(_message.Message):
    __slots__ = ["jobs"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ["job_id"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CompleteJobRequest(_message.Message):
    __slots__ = ["job_id", "lease_token", "result"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_token: str
    result: _struct_pb2.Struct
    def __init__(self, job_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CompleteJobResult(_message.Message):
    __slots__ = ["job_id", "ok", "reason"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    ok: bool
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., ok: bool = ..., reason: _Optional[str] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ["request_id", "schedule", "schedule_id"]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    schedule: Schedule
    schedule_id: str
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., schedule_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ["expected_version", "schedule_id"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class EnqueueJobRequest(_message.Message):
    __slots__ = ["job", "request_id"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job: Job
    request_id: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class EnqueueJobResponse(_message.Message):
    __slots__ = ["deduplicated", "job"]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    deduplicated: bool
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., deduplicated: bool = ...) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ["job_id", "lease_duration", "lease_token", "progress"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_duration: _duration_pb2.Duration
    lease_token: str
    progress: _struct_pb2.Struct
    def __init__(self, job_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., progress: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FailJobRequest(_message.Message):
    __slots__ = ["error", "job_id", "lease_token", "retry", "retry_after"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    error: JobError
    job_id: str
    lease_token: str
    retry: bool
    retry_after: _duration_pb2.Duration
    def __init__(self, job_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., retry: bool = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ["job_id", "read_mask"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, job_id: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class GetQueueConfigRequest(_message.Message):
    __slots__ = ["queue"]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ["queue"]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ["counts", "held_back_count", "oldest_available_time", "paused", "running_by_group"]
    class CountsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RunningByGroupEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    HELD_BACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AVAILABLE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_BY_GROUP_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.ScalarMap[str, int]
    held_back_count: int
    oldest_available_time: _timestamp_pb2.Timestamp
    paused: bool
    running_by_group: _containers.ScalarMap[str, int]
    def __init__(self, counts: _Optional[_Mapping[str, int]] = ..., oldest_available_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., paused: bool = ..., running_by_group: _Optional[_Mapping[str, int]] = ..., held_back_count: _Optional[int] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ["schedule_id"]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ["attempt", "backoff", "create_time", "dedupe_key", "depends_on", "finish_time", "group_key", "job_id", "last_error", "lease_expire_time", "max_attempts", "payload", "priority", "progress", "queue", "result", "run_time", "session_id", "state", "update_time", "worker_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    backoff: Backoff
    create_time: _timestamp_pb2.Timestamp
    dedupe_key: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    finish_time: _timestamp_pb2.Timestamp
    group_key: str
    job_id: str
    last_error: JobError
    lease_expire_time: _timestamp_pb2.Timestamp
    max_attempts: int
    payload: _struct_pb2.Struct
    priority: int
    progress: _struct_pb2.Struct
    queue: str
    result: _struct_pb2.Struct
    run_time: _timestamp_pb2.Timestamp
    session_id: str
    state: JobState
    update_time: _timestamp_pb2.Timestamp
    worker_id: str
    def __init__(self, job_id: _Optional[str] = ..., queue: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., priority: _Optional[int] = ..., run_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., backoff: _Optional[_Union[Backoff, _Mapping]] = ..., dedupe_key: _Optional[str] = ..., session_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[_Union[JobError, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., progress: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., group_key: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ["details", "message"]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    details: _struct_pb2.Struct
    message: str
    def __init__(self, message: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class JobLease(_message.Message):
    __slots__ = ["job", "lease_token"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job: Job
    lease_token: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., lease_token: _Optional[str] = ...) -> None: ...

class JobTemplate(_message.Message):
    __slots__ = ["backoff", "group_key", "max_attempts", "payload", "priority"]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    backoff: Backoff
    group_key: str
    max_attempts: int
    payload: _struct_pb2.Struct
    priority: int
    def __init__(self, payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ..., max_attempts: _Optional[int] = ..., backoff: _Optional[_Union[Backoff, _Mapping]] = ..., group_key: _Optional[str] = ...) -> None: ...

class LeaseJobsRequest(_message.Message):
    __slots__ = ["lease_duration", "max_jobs", "queue", "wait", "worker_id"]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    lease_duration: _duration_pb2.Duration
    max_jobs: int
    queue: str
    wait: _duration_pb2.Duration
    worker_id: str
    def __init__(self, queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., max_jobs: _Optional[int] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeaseJobsResponse(_message.Message):
    __slots__ = ["leases"]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[JobLease]
    def __init__(self, leases: _Optional[_Iterable[_Union[JobLease, _Mapping]]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "queue", "read_mask", "states"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    queue: str
    read_mask: _field_mask_pb2.FieldMask
    states: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, queue: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ["jobs", "next_page_token"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "queue"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    queue: str
    def __init__(self, queue: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ["next_page_token", "schedules"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseQueueRequest(_message.Message):
    __slots__ = ["queue"]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ["schedule_id"]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class QueueConfig(_message.Message):
    __slots__ = ["fair", "max_running", "max_running_per_group", "queue", "rate_limit", "update_time", "version"]
    FAIR_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_PER_GROUP_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    fair: bool
    max_running: int
    max_running_per_group: int
    queue: str
    rate_limit: RateLimit
    update_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, queue: _Optional[str] = ..., max_running: _Optional[int] = ..., max_running_per_group: _Optional[int] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., fair: bool = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ["count", "period", "scope"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    count: int
    period: _duration_pb2.Duration
    scope: RateLimitScope
    def __init__(self, count: _Optional[int] = ..., period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., scope: _Optional[_Union[RateLimitScope, str]] = ...) -> None: ...

class ResumeQueueRequest(_message.Message):
    __slots__ = ["queue"]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class ResumeScheduleRequest(_message.Message):
    __slots__ = ["schedule_id"]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class RetryJobRequest(_message.Message):
    __slots__ = ["job_id"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ["catch_up_limit", "create_time", "cron", "job", "last_fire_time", "next_fire_time", "overlap", "paused", "queue", "schedule_id", "time_zone", "update_time", "version"]
    CATCH_UP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    catch_up_limit: int
    create_time: _timestamp_pb2.Timestamp
    cron: str
    job: JobTemplate
    last_fire_time: _timestamp_pb2.Timestamp
    next_fire_time: _timestamp_pb2.Timestamp
    overlap: Overlap
    paused: bool
    queue: str
    schedule_id: str
    time_zone: str
    update_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, schedule_id: _Optional[str] = ..., queue: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., job: _Optional[_Union[JobTemplate, _Mapping]] = ..., overlap: _Optional[_Union[Overlap, str]] = ..., paused: bool = ..., next_fire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_fire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., catch_up_limit: _Optional[int] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamJobsRequest(_message.Message):
    __slots__ = ["lease_duration", "max_in_flight", "queue", "worker_id"]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    lease_duration: _duration_pb2.Duration
    max_in_flight: int
    queue: str
    worker_id: str
    def __init__(self, queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., max_in_flight: _Optional[int] = ..., lease_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TriggerScheduleRequest(_message.Message):
    __slots__ = ["schedule_id"]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class TriggerScheduleResponse(_message.Message):
    __slots__ = ["deduplicated", "job", "schedule"]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    deduplicated: bool
    job: Job
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., deduplicated: bool = ...) -> None: ...

class UpdateQueueConfigRequest(_message.Message):
    __slots__ = ["config", "expected_version", "update_mask"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    config: QueueConfig
    expected_version: int
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, config: _Optional[_Union[QueueConfig, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpdateScheduleRequest(_message.Message):
    __slots__ = ["expected_version", "schedule", "update_mask"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    schedule: Schedule
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class RateLimitScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Overlap(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
