# The Python client against a live daemon (TLS, bearer tokens, namespaces).
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from cairn_client import (
    error_details,
    from_struct,
    job_pb2,
    session_pb2,
    to_struct,
    trace_pb2,
)


def fails(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def test_create_and_get(admin):
    created = admin.sessions.CreateSession(
        session_pb2.CreateSessionRequest(
            session=session_pb2.Session(agent_id="py-agent", labels={"team": "red"}, state=to_struct({"counter": 1, "nested": {"ok": True}})),
            request_id=str(uuid.uuid4()),
        )
    )
    assert created.version == 1
    assert created.status == session_pb2.SESSION_STATUS_ACTIVE
    got = admin.sessions.GetSession(session_pb2.GetSessionRequest(session_id=created.session_id))
    assert got == created
    assert from_struct(got.state) == {"counter": 1.0, "nested": {"ok": True}}
    assert dict(got.labels) == {"team": "red"}


def test_version_conflict_and_bad_request_details(admin):
    created = admin.sessions.CreateSession(session_pb2.CreateSessionRequest(session=session_pb2.Session(agent_id="a")))
    update = session_pb2.UpdateSessionRequest(
        session=session_pb2.Session(session_id=created.session_id, state=to_struct({"step": 2})),
        update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        expected_version=created.version,
    )
    assert admin.sessions.UpdateSession(update).version == 2
    # The same expected_version again: the session has moved on.
    error = fails(admin.sessions.UpdateSession, update)
    assert error.code() == grpc.StatusCode.ABORTED
    details = error_details(error)
    assert details.reason == "VERSION_CONFLICT"
    assert details.error_info.domain
    assert details.metadata["current_version"] == "2"

    error = fails(admin.sessions.CreateSession, session_pb2.CreateSessionRequest(session=session_pb2.Session()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session.agent_id" in error_details(error).fields


def test_token_and_namespace(daemon, connect, namespace):
    # writer-svc: writer in team-red (its default namespace), reader in shared.
    writer = connect(token=daemon["writer_token"])
    created = writer.sessions.CreateSession(session_pb2.CreateSessionRequest(session=session_pb2.Session(agent_id="w")))
    red = connect(token=daemon["admin_token"], namespace="team-red")
    assert red.sessions.GetSession(session_pb2.GetSessionRequest(session_id=created.session_id)).agent_id == "w"

    # Another namespace sees nothing of team-red.
    other = connect(token=daemon["admin_token"], namespace=namespace)
    error = fails(other.sessions.GetSession, session_pb2.GetSessionRequest(session_id=created.session_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # A call's own metadata wins over the client's namespace.
    again = other.sessions.GetSession(session_pb2.GetSessionRequest(session_id=created.session_id), metadata=[("x-cairn-namespace", "team-red")])
    assert again.session_id == created.session_id

    # A reader may not write; no token at all is not a caller.
    shared = connect(token=daemon["writer_token"], namespace="shared")
    error = fails(shared.sessions.CreateSession, session_pb2.CreateSessionRequest(session=session_pb2.Session(agent_id="w")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(error).metadata.get("required_role") == "writer"
    error = fails(connect().sessions.GetSession, session_pb2.GetSessionRequest(session_id=created.session_id))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_subscribe_receives_an_appended_event(admin):
    trace_id = "trace-" + uuid.uuid4().hex
    # From the beginning of this trace, so the event arrives whether the
    # subscription is established before or after the append.
    stream = admin.traces.SubscribeEvents(trace_pb2.SubscribeEventsRequest(trace_id=trace_id, start_offset=0), timeout=20)
    try:
        appended = admin.traces.AppendEvents(
            trace_pb2.AppendEventsRequest(
                events=[trace_pb2.TraceEvent(trace_id=trace_id, event_type="tool_call", payload=to_struct({"tool": "search"}))]
            )
        )
        [result] = appended.results
        for message in stream:
            if message.WhichOneof("message") == "event":
                assert message.event.offset == result.offset
                assert message.event.sequence == 1
                assert from_struct(message.event.payload) == {"tool": "search"}
                break
    finally:
        stream.cancel()


def test_lease_and_complete_a_job(admin):
    queue = "q-" + uuid.uuid4().hex[:8]
    enqueued = admin.jobs.EnqueueJob(job_pb2.EnqueueJobRequest(job=job_pb2.Job(queue=queue, payload=to_struct({"n": 7}))))
    leased = admin.jobs.LeaseJobs(
        job_pb2.LeaseJobsRequest(
            queue=queue,
            worker_id="py-worker",
            max_jobs=1,
            lease_duration=duration_pb2.Duration(seconds=30),
            wait=duration_pb2.Duration(seconds=5),
        )
    )
    [lease] = leased.leases
    assert lease.job.job_id == enqueued.job.job_id
    assert lease.job.state == job_pb2.JOB_STATE_RUNNING
    assert from_struct(lease.job.payload) == {"n": 7.0}
    done = admin.jobs.CompleteJob(job_pb2.CompleteJobRequest(job_id=lease.job.job_id, lease_token=lease.lease_token, result=to_struct({"sum": 8})))
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED
    assert from_struct(done.result) == {"sum": 8.0}
    # The lease is spent: completing again fails with details.
    error = fails(admin.jobs.CompleteJob, job_pb2.CompleteJobRequest(job_id=lease.job.job_id, lease_token=lease.lease_token))
    assert error.code() != grpc.StatusCode.OK
    assert error_details(error).reason
