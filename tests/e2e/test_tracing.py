"""One task's trace across every service: ``agensbus up`` and ``agensbus submit`` export their
spans by OTLP/HTTP to a receiver this test runs on loopback, and one trace id holds the
submission, the router's decisions, the workers' executions, the judgement and the backup."""

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.runtime.processes import HOST
from tests.e2e.support import total, wait_for
from tests.e2e.support_up import Up, clean_env, cli

READY_TIMEOUT_S = 120.0

#: Per trace id, the (service.name, span name) of its spans, and ("link", trace id) for
#: each trace one of its spans links to.
Spans = dict[str, set[tuple[str, str]]]


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Spans]]:
    """An OTLP/HTTP (protobuf) trace receiver; yields its base URL and the spans it got."""
    spans: Spans = defaultdict(set)
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body)
            with lock:
                for resource_spans in request.resource_spans:
                    attributes = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            trace = spans[span.trace_id.hex()]
                            trace.add((attributes["service.name"], span.name))
                            trace |= {("link", link.trace_id.hex()) for link in span.links}
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}", spans
    finally:
        server.shutdown()
        server.server_close()


def test_one_trace_follows_a_task_through_every_service(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    prefix = f"trace-{uuid.uuid4().hex[:8]}."
    group = prefix.rstrip(".")
    with otlp_receiver() as (endpoint, spans):
        env = clean_env(
            AGENSBUS_OTEL_ENDPOINT=endpoint,
            AGENSBUS_SNAPSHOT_INTERVAL_S="0.5",
            AGENSBUS_JUDGE_WINDOW_MS="50",
            **{
                f"AGENSBUS_{role.upper()}_GROUP": f"{group}.{role}"
                for role in ("router", "worker", "judge", "learner")
            },
        )
        args = ["--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
        up = Up([*args, "--run-dir", str(tmp_path / "run")], env, tmp_path / "up.err")
        try:
            up.wait_for("ready:", READY_TIMEOUT_S)
            tasks = tmp_path / "tasks.jsonl"
            tasks.write_text(
                '{"task_id": "traced-1", "goal": "Extract the fixed release", "task_class": "C1"}\n'
            )
            bus = env | {
                "AGENSBUS_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "AGENSBUS_TOPIC_PREFIX": prefix,
            }
            submitted = cli(bus, "submit", str(tasks))
            assert submitted.returncode == 0, submitted.stderr
            learner, router = up.value("learner"), up.value("router")
            wait_for(
                lambda: total(learner, "agensbus_learner_snapshots_published_total") >= 1,
                "the task to be learned from and snapshotted",
            )
            wait_for(
                lambda: total(router, "agensbus_router_policy_version") >= 1,
                "the router to adopt the snapshot",
            )
        except BaseException:
            up.kill()
            raise
        # Stopping flushes what each service still buffers.
        up.process.terminate()
        assert up.finish() == 0, up.output

    (submitted_in,) = [t for t, named in spans.items() if ("agensbus-cli", "submit") in named]
    trace = spans[submitted_in]
    assert {
        ("agensbus-router", "route"),
        ("agensbus-router", "decision"),
        ("agensbus-router", "trajectory completed"),
        ("agensbus-worker", "execution"),
        ("agensbus-judge", "judgement"),
        ("agensbus-learner", "backup"),
    } <= trace, trace
    # The snapshot is a trace of its own, linked to the backups it holds; routers adopt it
    # in that trace.
    snapshots = [named for named in spans.values() if ("agensbus-learner", "snapshot") in named]
    assert any(("link", submitted_in) in named for named in snapshots), snapshots
    assert any(("agensbus-router", "follow policy") in named for named in snapshots), snapshots
