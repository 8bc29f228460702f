"""``/metrics``: the Prometheus exposition parses, moves with traffic, and is served where the
flags say (the admin port; the public port only with ``public_metrics``; nowhere without
``metrics``)."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway import Counters, metric_fields
from gateway._counters import counter
from protocol import ErrorCode

from .conftest import TCP_GUARD, Harness, start_tcp

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int | None) -> Samples:
    async with httpx.AsyncClient(timeout=TCP_GUARD) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[("trio_sessions_" + name, tuple(sorted(labels.items())))]


async def test_the_exposition_parses_and_moves_with_traffic(
    nursery: trio.Nursery, tmp_path
) -> None:
    harness = await start_tcp(nursery, store=f"sqlite:{tmp_path / 's.db'}")
    admin = harness.server.admin_port
    before = await scrape(admin)
    assert value(before, "sessions_live") == 0 and value(before, "connections_open") == 0

    host, (participant,), _ = await harness.session(participants=1)
    await host.ok("session:createRoom", room="r", kind="chat")
    await participant.event("session:roomCreated")
    for i in range(3):
        await participant.ok("room:message", room="r", data=i)
    assert (await host.error("session:join", code="ZZZZZZ"))["code"] == "not_found"
    await participant.drop()
    await host.event("session:roomCreated")
    await harness.resume(participant.seat, participant.last_seq)
    await host.ok("state:set", state={"a": 1}, durable=True)  # replied once committed

    after = await scrape(admin)
    assert value(after, "sessions_live") == 1 and value(after, "sessions_created_total") == 1
    assert value(after, "sessions", status="active") == 1
    assert value(after, "sessions", status="hibernating") == 0
    assert value(after, "participants_seated") == 2
    assert value(after, "participants_connected") == 2
    assert value(after, "connections_open") == 2  # the host and the resumed participant
    assert value(after, "connections_accepted_total") == 3
    received = value(after, "frames_received_total") - value(before, "frames_received_total")
    assert received >= 3 + 3 + 2  # hellos, joins and creates, messages, the bad join
    assert value(after, "frames_sent_total") > value(before, "frames_sent_total")
    assert value(after, "errors_total", code="not_found") == 1
    assert value(after, "events_total", type="room:message") == 3
    assert value(after, "events_total", type="session:participantJoined") == 1
    assert value(after, "resumes_total", outcome="replayed") == 1
    assert value(after, "store_batches_total") >= 1 and value(after, "store_changes_total") >= 1
    assert value(after, "inbox_depth_max") == 0
    assert value(after, "gc_pause_seconds_bucket", le="+Inf") == value(
        after, "gc_pause_seconds_count"
    )
    assert ("trio_sessions_fanout_latency_seconds_count", ()) in after


async def test_metrics_live_on_the_admin_port_unless_made_public(nursery: trio.Nursery) -> None:
    private = await start_tcp(nursery)
    public = await start_tcp(nursery, public_metrics=True)
    async with httpx.AsyncClient(timeout=TCP_GUARD) as http:
        response = await http.get(f"http://127.0.0.1:{private.server.port}/metrics")
        assert response.status_code == 404
    assert ("trio_sessions_sessions_live", ()) in await scrape(private.server.admin_port)
    assert ("trio_sessions_sessions_live", ()) in await scrape(public.server.port)
    assert ("trio_sessions_sessions_live", ()) in await scrape(public.server.admin_port)


async def test_metrics_false_turns_them_off_everywhere(nursery: trio.Nursery) -> None:
    harness = await start_tcp(nursery, metrics=False, public_metrics=True)
    async with httpx.AsyncClient(timeout=TCP_GUARD) as http:
        for port in (harness.server.port, harness.server.admin_port):
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert response.status_code == 404
        ready = await http.get(f"http://127.0.0.1:{harness.server.port}/readyz")
        assert ready.status_code == 200  # health is not a metric


async def test_connection_counters_show_by_label_and_histogram(tcp: Harness) -> None:
    counters = tcp.server.counters
    counters.count_request("session:join")
    counters.count_request("session:join")
    counters.count_error(ErrorCode.SESSION_FULL)
    counters.observe_fanout(0.002)
    counters.observe_fanout(3.0)
    samples = await scrape(tcp.server.admin_port)
    assert value(samples, "requests_total", type="session:join") == 2
    assert value(samples, "errors_total", code="session_full") == 1
    assert value(samples, "fanout_latency_seconds_bucket", le="0.001") == 0
    assert value(samples, "fanout_latency_seconds_bucket", le="0.0025") == 1
    assert value(samples, "fanout_latency_seconds_bucket", le="1.0") == 1
    assert value(samples, "fanout_latency_seconds_bucket", le="+Inf") == 2
    assert value(samples, "fanout_latency_seconds_count") == 2
    assert value(samples, "fanout_latency_seconds_sum") == 3.002


def test_a_counter_is_one_line() -> None:
    @attrs.define
    class More(Counters):
        abuse_reports: int = counter("Abuse reports")

    fields: dict[str, Any] = dict(metric_fields(More))
    assert set(fields) - set(dict(metric_fields(Counters))) == {"abuse_reports"}
    spec = fields["abuse_reports"]
    assert (spec.name, spec.kind, spec.help) == ("abuse_reports", "counter", "Abuse reports")
    assert dict(metric_fields(Counters))["open"].name == "connections_open"
