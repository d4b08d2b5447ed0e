#!/usr/bin/python3
"""An independent gRPC client (Python, gRPC C-core) that knows nothing of
Cairn's protos: it learns every service through server reflection alone, the
way grpcurl does, then describes and calls every method.

Usage: reflection_client.py HOST:PORT [v1|v1alpha]
Prints one JSON document: the services, each method's resolved types, and the
outcome of every call.

Usage: reflection_client.py HOST:PORT call SERVICE/METHOD JSON [TIMEOUT]
Calls one method with a request written as grpcurl 1.8 takes it after -d
(see grpcurl_json) and prints its outcome as JSON: {"code", "response" or
"responses", "message"}; a request grpcurl would refuse to parse gives the
code "JSON_PARSE". test/readme-grpcurl.test.ts replays the README's commands so.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

ADDRESS = sys.argv[1]
REPLAY = sys.argv[2:3] == ["call"]
REFLECTION_VERSION = sys.argv[2] if len(sys.argv) > 2 and not REPLAY else "v1"


def reflection_messages(package):
    """The reflection protocol's messages, declared here by hand (field
    numbers from grpc/reflection/v1/reflection.proto) so that nothing of the
    server's own files is used to talk to it."""
    f = descriptor_pb2.FileDescriptorProto(name=f"client_side_{package}.proto", package=package, syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def message(name, *fields):
        m = f.message_type.add(name=name)
        for number, fname, ftype, label, type_name, oneof in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = f".{package}.{type_name}"
            if oneof is not None:
                fd.oneof_index = oneof
        return m

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    req = message("ServerReflectionRequest",
                  (1, "host", T.TYPE_STRING, opt, None, None),
                  (3, "file_by_filename", T.TYPE_STRING, opt, None, 0),
                  (4, "file_containing_symbol", T.TYPE_STRING, opt, None, 0),
                  (7, "list_services", T.TYPE_STRING, opt, None, 0))
    req.oneof_decl.add(name="message_request")
    message("FileDescriptorResponse", (1, "file_descriptor_proto", T.TYPE_BYTES, rep, None, None))
    message("ServiceResponse", (1, "name", T.TYPE_STRING, opt, None, None))
    message("ListServiceResponse", (1, "service", T.TYPE_MESSAGE, rep, "ServiceResponse", None))
    message("ErrorResponse", (1, "error_code", T.TYPE_INT32, opt, None, None),
            (2, "error_message", T.TYPE_STRING, opt, None, None))
    resp = message("ServerReflectionResponse",
                   (1, "valid_host", T.TYPE_STRING, opt, None, None),
                   (4, "file_descriptor_response", T.TYPE_MESSAGE, opt, "FileDescriptorResponse", 0),
                   (6, "list_services_response", T.TYPE_MESSAGE, opt, "ListServiceResponse", 0),
                   (7, "error_response", T.TYPE_MESSAGE, opt, "ErrorResponse", 0))
    resp.oneof_decl.add(name="message_response")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    get = lambda n: factory.GetPrototype(pool.FindMessageTypeByName(f"{package}.{n}"))
    return get("ServerReflectionRequest"), get("ServerReflectionResponse")


class Reflector:
    def __init__(self, channel, version):
        package = f"grpc.reflection.{version}"
        self.Request, self.Response = reflection_messages(package)
        self.call = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.Response.FromString,
        )
        self.files = {}  # name -> FileDescriptorProto

    def ask(self, **kwargs):
        [response] = list(self.call(iter([self.Request(**kwargs)]), timeout=10))
        if response.HasField("error_response"):
            raise LookupError(f"{kwargs}: {response.error_response.error_message}")
        return response

    def services(self):
        return [s.name for s in self.ask(list_services="").list_services_response.service]

    def _remember(self, response):
        for raw in response.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.files[fd.name] = fd

    def load_symbol(self, symbol):
        self._remember(self.ask(file_containing_symbol=symbol))
        # Like grpcurl: fetch any dependency the server did not send along.
        missing = [d for f in list(self.files.values()) for d in f.dependency if d not in self.files]
        while missing:
            self._remember(self.ask(file_by_filename=missing.pop()))
            missing = [d for f in list(self.files.values()) for d in f.dependency if d not in self.files]

    def pool(self):
        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):
            if name in added:
                return
            for dep in self.files[name].dependency:
                add(dep)
            pool.Add(self.files[name])
            added.add(name)

        for name in self.files:
            add(name)
        return pool


def snake_to_camel(path):
    head, *rest = path.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def grpcurl_json(descriptor, value):
    """`value` (a request for `descriptor`, as grpcurl 1.8 reads it) in the
    form Python's json_format parses. They differ in one place: grpcurl 1.8
    (golang/protobuf jsonpb) takes a FieldMask only as {"paths": [...]} and
    refuses the proto3 JSON string form, which json_format alone accepts.
    So the string form is refused here as grpcurl would, and the object form
    turned into the string."""
    if descriptor.full_name == "google.protobuf.FieldMask":
        if not isinstance(value, dict) or set(value) - {"paths"}:
            raise json_format.ParseError(f'grpcurl 1.8 takes a FieldMask only as {{"paths": [...]}}, not {json.dumps(value)}')
        return ",".join(snake_to_camel(p) for p in value.get("paths", []))
    if descriptor.full_name.startswith("google.protobuf.") or not isinstance(value, dict):
        return value  # well-known JSON forms (Struct, Duration, ...) and scalars: the same in both
    fields = {f.name: f for f in descriptor.fields}
    fields.update({f.json_name: f for f in descriptor.fields})
    out = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None or field.message_type is None:
            out[key] = item  # unknown names are left for json_format to refuse
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {k: grpcurl_json(value_field.message_type, v) for k, v in item.items()} if value_field.message_type else item
        elif field.label == field.LABEL_REPEATED and isinstance(item, list):
            out[key] = [grpcurl_json(field.message_type, v) for v in item]
        else:
            out[key] = grpcurl_json(field.message_type, item)
    return out


def main():
    channel = grpc.insecure_channel(ADDRESS)
    reflector = Reflector(channel, REFLECTION_VERSION)
    services = reflector.services()
    for name in services:
        reflector.load_symbol(name)
    pool = reflector.pool()
    factory = message_factory.MessageFactory(pool)
    cls = lambda desc: factory.GetPrototype(desc)

    described = {}
    methods = {}
    for name in services:
        service = pool.FindServiceByName(name)
        for m in service.methods:
            full = f"{name}/{m.name}"
            methods[full] = m
            described[full] = {
                "input": m.input_type.full_name,
                "output": m.output_type.full_name,
                "client_streaming": m.client_streaming,
                "server_streaming": m.server_streaming,
                # Resolving every field type proves the dependencies (Struct,
                # Timestamp, ...) arrived through reflection.
                "input_fields": {f.name: (f.message_type.full_name if f.message_type else f.type) for f in m.input_type.fields},
            }

    def call(full, request_json, timeout=10):
        m = methods[full]
        if REPLAY:
            try:
                request = json_format.ParseDict(grpcurl_json(m.input_type, request_json), cls(m.input_type)())
            except (json_format.ParseError, ValueError, TypeError) as e:
                return {"code": "JSON_PARSE", "message": str(e)}
        else:
            request = json_format.ParseDict(request_json, cls(m.input_type)())
        path = f"/{full}"
        ser = lambda msg: msg.SerializeToString()
        de = cls(m.output_type).FromString
        out = []
        try:
            if not m.client_streaming and not m.server_streaming:
                resp = channel.unary_unary(path, request_serializer=ser, response_deserializer=de)(request, timeout=timeout)
                return {"code": "OK", "response": json_format.MessageToDict(resp)}
            if m.client_streaming:
                stub = channel.stream_stream(path, request_serializer=ser, response_deserializer=de)
                responses = stub(iter([request]), timeout=timeout)
            else:
                stub = channel.unary_stream(path, request_serializer=ser, response_deserializer=de)
                responses = stub(request, timeout=timeout)
            for r in responses:
                out.append(json_format.MessageToDict(r))
            return {"code": "OK", "responses": out}
        except grpc.RpcError as e:
            return {"code": e.code().name, "message": e.details(), "responses": out}

    if REPLAY:
        full, body = sys.argv[3], json.loads(sys.argv[4])
        if full not in methods:
            print(json.dumps({"code": "UNKNOWN_METHOD", "message": f"{full} is not served (reflection lists {sorted(methods)})"}))
            return
        timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10
        print(json.dumps(call(full, body, timeout=timeout), sort_keys=True))
        return

    S = "cairn.v1.SessionService/"
    calls = {}
    created = call(S + "CreateSession", {"session": {"agentId": "py-agent", "labels": {"lang": "python"},
                                                     "state": {"counter": 1, "nested": {"ok": True}}},
                                         "requestId": f"py-req-{REFLECTION_VERSION}"})
    calls["CreateSession"] = created
    sid = created.get("response", {}).get("sessionId", "missing")
    calls["CreateSession(retry)"] = call(S + "CreateSession", {"session": {"agentId": "py-agent", "labels": {"lang": "python"},
                                                                          "state": {"counter": 1, "nested": {"ok": True}}},
                                                              "requestId": f"py-req-{REFLECTION_VERSION}"})
    calls["GetSession"] = call(S + "GetSession", {"sessionId": sid})
    calls["UpdateSession"] = call(S + "UpdateSession", {"session": {"sessionId": sid, "state": {"counter": 2}},
                                                        "updateMask": "state", "expectedVersion": "1"})
    calls["UpdateSession(conflict)"] = call(S + "UpdateSession", {"session": {"sessionId": sid, "state": {"counter": 3}},
                                                                  "updateMask": "state", "expectedVersion": "1"})
    calls["ListSessions"] = call(S + "ListSessions", {"filter": {"agentId": "py-agent", "stateContains": {"counter": 2}},
                                                      "orderBy": "create_time desc", "pageSize": 10})
    calls["CountSessions"] = call(S + "CountSessions", {"filter": {"labels": {"lang": "python"}}})
    calls["BatchCreateSessions"] = call(S + "BatchCreateSessions", {"requests": [
        {"sessionId": f"py-b1-{REFLECTION_VERSION}", "session": {"agentId": "py-agent"}},
        {"sessionId": f"py-b2-{REFLECTION_VERSION}", "session": {"agentId": "py-agent", "status": "SESSION_STATUS_ENDED"}}]})
    calls["BatchGetSessions"] = call(S + "BatchGetSessions", {"sessionIds": [f"py-b1-{REFLECTION_VERSION}", f"py-b2-{REFLECTION_VERSION}", sid]})
    calls["GetSessionStats"] = call(S + "GetSessionStats", {"filter": {"agentId": "py-agent"}})
    calls["AppendMessages"] = call(S + "AppendMessages", {"sessionId": sid, "messages": [
        {"role": "user", "content": "hi", "metadata": {"lang": "en"}}, {"role": "assistant", "content": "hello"}]})
    calls["ListMessages"] = call(S + "ListMessages", {"sessionId": sid})
    imported = f"py-imp-{REFLECTION_VERSION}"
    calls["ImportSessions"] = call(S + "ImportSessions", {
        "sessions": [{"sessionId": imported, "agentId": f"py-imp-agent-{REFLECTION_VERSION}", "status": "SESSION_STATUS_ENDED", "state": {"step": 1},
                      "createTime": "2025-01-02T03:04:05Z", "endTime": "2025-01-02T04:04:05Z"}],
        "messages": [{"sessionId": imported, "sequence": "7", "role": "user", "content": "old"}]})
    calls["BatchUpdateSessions"] = call(S + "BatchUpdateSessions", {"requests": [{"session": {"sessionId": imported},
                                                                                   "statePatch": {"step": 2}}]})
    calls["ListSessionVersions"] = call(S + "ListSessionVersions", {"sessionId": imported, "readMask": "version,state"})
    calls["ForkSession"] = call(S + "ForkSession", {"sessionId": imported, "version": "1", "newSessionId": imported + "-fork"})
    calls["DeleteMessages"] = call(S + "DeleteMessages", {"sessionId": imported})
    calls["BatchDeleteSessions"] = call(S + "BatchDeleteSessions", {"sessionIds": [f"py-b1-{REFLECTION_VERSION}", f"py-b2-{REFLECTION_VERSION}"]})
    calls["DeleteSession"] = call(S + "DeleteSession", {"sessionId": sid, "expectedVersion": "2"})
    calls["GetSession(deleted)"] = call(S + "GetSession", {"sessionId": sid})
    calls["grpc.health.v1.Health/Check"] = call("grpc.health.v1.Health/Check", {"service": "cairn.v1.SessionService"})

    T = "cairn.v1.TraceEventService/"
    trace = f"py-trace-{REFLECTION_VERSION}"
    ev = lambda i: {"traceId": trace, "sessionId": f"py-s-{REFLECTION_VERSION}", "eventType": "py.step",
                    "severity": "SEVERITY_WARNING", "time": "2026-11-22T08:20:29.123456Z", "payload": {"i": i}}
    calls["AppendEvents"] = call(T + "AppendEvents", {"events": [ev(1), ev(2)]})
    calls["IngestEvents"] = call(T + "IngestEvents", {"batchId": "py-b", "events": [ev(3)]})
    calls["ListTraceEvents"] = call(T + "ListTraceEvents", {"traceId": trace})
    calls["ListSessionEvents"] = call(T + "ListSessionEvents", {"sessionId": f"py-s-{REFLECTION_VERSION}",
                                                                "minSeverity": "SEVERITY_WARNING"})
    # A subscription never ends by itself: read what arrives within a second.
    calls["SubscribeEvents"] = call(T + "SubscribeEvents", {"traceId": trace}, timeout=1.5)
    calls["VerifyTrace"] = call(T + "VerifyTrace", {"traceId": trace})

    R = "cairn.v1.ResolutionService/"
    res = {"requestId": "agent-req-1", "agentId": f"py-ragent-{REFLECTION_VERSION}", "sessionId": "py-s", "decision": "DECISION_PARTIAL",
           "contextBlocks": [{"doc": 1}], "allowedActions": [{"a": "read"}], "deniedActions": [], "policiesApplied": [{"p": 1}]}
    calls["CreateResolution"] = call(R + "CreateResolution", {"resolution": res, "ttl": "60s",
                                                              "requestId": f"py-res-{REFLECTION_VERSION}"})
    rid = calls["CreateResolution"].get("response", {}).get("resolutionId", "missing")
    calls["BatchCreateResolutions"] = call(R + "BatchCreateResolutions", {"requests": [{"resolution": res}, {"resolution": res}]})
    calls["GetResolution"] = call(R + "GetResolution", {"resolutionId": rid})
    calls["ListResolutions"] = call(R + "ListResolutions", {"agentId": f"py-ragent-{REFLECTION_VERSION}", "decisions": ["DECISION_PARTIAL"]})
    calls["DeleteResolution"] = call(R + "DeleteResolution", {"resolutionId": rid})
    calls["PurgeExpiredResolutions"] = call(R + "PurgeExpiredResolutions", {})
    calls["ImportResolutions"] = call(R + "ImportResolutions", {"resolutions": [
        dict(res, resolutionId=f"py-imp-r-{REFLECTION_VERSION}", createTime="2025-01-01T00:00:00Z", expireTime="2025-01-02T00:00:00Z")]})

    K = "cairn.v1.KeyValueService/"
    kp = f"py/{REFLECTION_VERSION}/"
    calls["Put"] = call(K + "Put", {"entry": {"key": kp + "doc", "jsonValue": {"a": [1, "b"]}}, "ttl": "3600s"})
    calls["Put(bytes)"] = call(K + "Put", {"entry": {"key": kp + "raw", "bytesValue": "AAH+"}, "expectedVersion": "0"})
    calls["Get"] = call(K + "Get", {"key": kp + "doc"})
    calls["BatchPut"] = call(K + "BatchPut", {"requests": [{"entry": {"key": kp + "x", "jsonValue": 1}},
                                                           {"entry": {"key": kp + "y", "jsonValue": "two"}}]})
    calls["BatchGet"] = call(K + "BatchGet", {"keys": [kp + "x", kp + "nope", kp + "y"]})
    calls["Increment"] = call(K + "Increment", {"key": kp + "n", "delta": "41"})
    calls["List"] = call(K + "List", {"prefix": kp, "keysOnly": True})
    calls["Count"] = call(K + "Count", {"prefix": kp, "valueContains": {"a": [1]}})
    first_rev = calls["Put"].get("response", {}).get("modRevision", "1")
    calls["Watch"] = call(K + "Watch", {"prefix": kp, "startRevision": first_rev}, timeout=1.5)
    calls["Delete"] = call(K + "Delete", {"key": kp + "doc"})
    calls["BatchDelete"] = call(K + "BatchDelete", {"keys": [kp + "x", kp + "y"]})
    calls["PurgeExpired"] = call(K + "PurgeExpired", {})

    J = "cairn.v1.JobService/"
    jq = f"py-jobs-{REFLECTION_VERSION}"
    calls["EnqueueJob"] = call(J + "EnqueueJob", {"job": {"queue": jq, "payload": {"x": 1}, "priority": 5,
                                                          "backoff": {"initialDelay": "0.5s", "maxDelay": "10s", "multiplier": 3}},
                                                  "requestId": f"py-job-{REFLECTION_VERSION}"})
    calls["BatchEnqueueJobs"] = call(J + "BatchEnqueueJobs", {"requests": [{"job": {"queue": jq}}, {"job": {"queue": jq}}]})
    calls["PauseQueue"] = call(J + "PauseQueue", {"queue": jq})
    calls["ResumeQueue"] = call(J + "ResumeQueue", {"queue": jq})
    calls["LeaseJobs"] = call(J + "LeaseJobs", {"queue": jq, "workerId": "py", "maxJobs": 2, "leaseDuration": "30s", "wait": "1s"})
    leases = calls["LeaseJobs"].get("response", {}).get("leases", [])
    first, second = (leases + [{"job": {}}, {"job": {}}])[:2]
    calls["ExtendLease"] = call(J + "ExtendLease", {"jobId": first["job"].get("jobId", "x"), "leaseToken": first.get("leaseToken", ""),
                                                    "leaseDuration": "60s"})
    calls["CompleteJob"] = call(J + "CompleteJob", {"jobId": first["job"].get("jobId", "x"), "leaseToken": first.get("leaseToken", ""),
                                                    "result": {"ok": True}})
    calls["FailJob"] = call(J + "FailJob", {"jobId": second["job"].get("jobId", "x"), "leaseToken": second.get("leaseToken", ""),
                                            "error": {"message": "nope"}, "retry": False})
    calls["RetryJob"] = call(J + "RetryJob", {"jobId": second["job"].get("jobId", "x")})
    calls["StreamJobs"] = call(J + "StreamJobs", {"queue": jq, "workerId": "py-stream", "maxInFlight": 1}, timeout=1.5)
    streamed = (calls["StreamJobs"].get("responses") or [{}])[0]
    calls["BatchCompleteJobs"] = call(J + "BatchCompleteJobs", {"requests": [{"jobId": streamed.get("job", {}).get("jobId", "x"),
                                                                              "leaseToken": streamed.get("leaseToken", "")}]})
    calls["CancelJob"] = call(J + "CancelJob", {"jobId": second["job"].get("jobId", "x")})
    calls["GetJob"] = call(J + "GetJob", {"jobId": first["job"].get("jobId", "x")})
    calls["ListJobs"] = call(J + "ListJobs", {"queue": jq})
    calls["GetQueueStats"] = call(J + "GetQueueStats", {"queue": jq})

    calls["GetQueueConfig"] = call(J + "GetQueueConfig", {"queue": jq})
    calls["UpdateQueueConfig"] = call(J + "UpdateQueueConfig", {"config": {"queue": jq + "-cfg", "maxRunning": 3, "fair": True}})
    sched = f"py-sched-{REFLECTION_VERSION}"
    calls["CreateSchedule"] = call(J + "CreateSchedule", {"scheduleId": sched, "schedule": {
        "queue": jq + "-sched", "cron": "0 0 1 1 *", "timeZone": "Europe/Paris", "job": {"payload": {"report": True}}}})
    calls["GetSchedule"] = call(J + "GetSchedule", {"scheduleId": sched})
    calls["ListSchedules"] = call(J + "ListSchedules", {"queue": jq + "-sched"})
    calls["UpdateSchedule"] = call(J + "UpdateSchedule", {"schedule": {"scheduleId": sched, "cron": "0 0 2 1 *"},
                                                          "updateMask": "cron"})
    calls["PauseSchedule"] = call(J + "PauseSchedule", {"scheduleId": sched})
    calls["ResumeSchedule"] = call(J + "ResumeSchedule", {"scheduleId": sched})
    calls["TriggerSchedule"] = call(J + "TriggerSchedule", {"scheduleId": sched})
    calls["DeleteSchedule"] = call(J + "DeleteSchedule", {"scheduleId": sched})

    calls["Commit"] = call("cairn.v1.TransactionService/Commit", {"operations": [
        {"put": {"entry": {"key": kp + "tx", "jsonValue": True}}},
        {"enqueueJob": {"job": {"queue": jq + "-tx", "payload": {"from": "commit"}}}}]})
    M = "cairn.v1.MetricService/"
    calls["RecordMetrics"] = call(M + "RecordMetrics", {"points": [{"name": "tokens", "entity": f"py-agent-{REFLECTION_VERSION}", "value": 3},
                                                                   {"name": "tokens", "entity": f"py-agent-{REFLECTION_VERSION}", "value": 5}]})
    calls["QueryMetrics"] = call(M + "QueryMetrics", {"name": "tokens", "entity": f"py-agent-{REFLECTION_VERSION}",
                                                      "startTime": "2020-01-01T00:00:00Z", "aggregation": "AGGREGATION_SUM"})

    # Every method of every service was called above.
    called = {name.split("(")[0] for name in calls}
    uncalled = [full for full in methods if full.split("/")[1] not in called and full not in calls
                and not full.startswith("grpc.")]

    print(json.dumps({"services": services, "methods": described, "calls": calls, "uncalled": uncalled}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
