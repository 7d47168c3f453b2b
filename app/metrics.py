"""The service's Prometheus metrics, in a registry of its own (one per app, so tests and
embedders can build several apps in one process).

Gauges read at scrape time take callables (`watch_*`), never the objects that know the
numbers: this module sits below `app.ingest`, `app.recent` and `app.integrity` (they count
through `ServiceMetrics`) and imports none of them."""

import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.errors import problem_for
from app.kafka import KafkaClientError, KafkaProduceResult
from app.kafka.delivery import DeliveryCallback

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Produce latencies with acks=all on a healthy cluster are milliseconds; the top buckets catch
# leader elections and the broker-down timeouts.
_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TopicGauge = Callable[[], Mapping[str, float]]


class _TopicGauges(Collector):
    """Gauges read at scrape time from the objects that know the numbers."""

    def __init__(self, gauges: Mapping[str, tuple[str, TopicGauge]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, read) in self._gauges.items():
            family = GaugeMetricFamily(name, documentation, labels=["topic"])
            for topic, value in sorted(read().items()):
                family.add_metric([topic], value)
            yield family


class _Refusals(Collector):
    """`rg_overloaded_total`: 503 overloaded answers, by the bound that refused."""

    def __init__(self, refused: Callable[[], Mapping[str, int]]) -> None:
        self._refused = refused

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "rg_overloaded",
            "Requests and records refused with 503 overloaded, by bound (bytes, records).",
            labels=["bound"],
        )
        refused = self._refused()
        for bound in ("bytes", "records"):
            family.add_metric([bound], refused[bound])
        yield family


class _Skipped(Collector):
    """`rg_messages_records_skipped_total`: records of the GET /messages topics not kept."""

    def __init__(self, read: Callable[[], Mapping[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "rg_messages_records_skipped",
            "Records the GET /messages reader did not keep, by reason: oversized (alone above "
            "RG_MESSAGES_BUFFER_BYTES), failed (taking it in raised), checkpoint_ignored (a "
            "record of the checkpoints topic that is no trusted checkpoint).",
            labels=["reason"],
        )
        for reason, count in sorted(self._read().items()):
            family.add_metric([reason], count)
        yield family


class _Streams(Collector):
    """GET /messages/stream clients let go: cut off behind, or closed for not reading."""

    def __init__(self, cut: Callable[[], int], timed_out: Callable[[], int]) -> None:
        self._cut = cut
        self._timed_out = timed_out

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "rg_messages_stream_cut",
            "GET /messages/stream subscribers cut off (backlog dropped, stream ended) for "
            "falling 1,000 records or RG_MESSAGES_BUFFER_BYTES bytes behind.",
            value=self._cut(),
        )
        yield CounterMetricFamily(
            "rg_messages_stream_send_timeouts",
            "GET /messages/stream connections closed: the client read nothing for "
            "RG_MESSAGES_STREAM_SEND_TIMEOUT_S while an event waited.",
            value=self._timed_out(),
        )


class _Chain(Collector):
    """The writer's chain: its id, the last position assigned, the positions lost."""

    def __init__(
        self, writer: Callable[[], str], seq: Callable[[], int], lost: Callable[[], int]
    ) -> None:
        self._writer = writer
        self._seq = seq
        self._lost = lost

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "rg_audit_writer_info",
            "1, labelled with this process's writer id (rg-writer of its audit records).",
            labels=["writer"],
        )
        info.add_metric([self._writer()], 1)
        yield info
        yield GaugeMetricFamily(
            "rg_audit_chain_seq",
            "The last chain position (rg-seq) assigned by this writer; -1 before the first.",
            value=self._seq(),
        )
        yield CounterMetricFamily(
            "rg_audit_chain_lost",
            "Chain positions assigned to records that were neither stored nor spooled "
            "(the void of the checkpoints).",
            value=self._lost(),
        )


class _Checkpoints(Collector):
    """`rg_audit_checkpoints_total` and `rg_audit_checkpoint_seq`, read from the checkpointer."""

    def __init__(self, written: Callable[[], int], seq: Callable[[], int]) -> None:
        self._written = written
        self._seq = seq

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "rg_audit_checkpoints",
            "Signed checkpoints written to the checkpoints topic.",
            value=self._written(),
        )
        yield GaugeMetricFamily(
            "rg_audit_checkpoint_seq",
            "Last seq the latest signed checkpoint covers (-1 before the first).",
            value=self._seq(),
        )


class _Timestamps(Collector):
    """`rg_audit_tsa_*`, read from the stamper of the log of writers (app/integrity/stamper.py)."""

    def __init__(
        self,
        tokens: Callable[[], int],
        last_age_s: Callable[[], float | None],
        failures: Callable[[], Mapping[str, int]],
    ) -> None:
        self._tokens, self._last_age_s, self._failures = tokens, last_age_s, failures

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "rg_audit_tsa_tokens",
            "Timestamp tokens over the log of writers kept on the checkpoints topic.",
            value=self._tokens(),
        )
        age = self._last_age_s()
        yield GaugeMetricFamily(
            "rg_audit_tsa_last_token_age_seconds",
            "Seconds since the last timestamp token was kept (-1 before the first).",
            value=-1.0 if age is None else age,
        )
        family = CounterMetricFamily(
            "rg_audit_tsa_failures",
            "Requests to a timestamp authority that gave no token that checks (down, slow, "
            "refused, or a token that does not chain to RG_AUDIT_TSA_CA_FILE).",
            labels=["tsa"],
        )
        for url, count in sorted(self._failures().items()):
            family.add_metric([url], count)
        yield family


class _Witnesses(Collector):
    """The witnesses of the log of writers (app/integrity/cosigner.py), per witness key name."""

    def __init__(self, read: Callable[[], Mapping[str, Mapping[str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        status = self._read()
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(
                "rg_audit_witness_cosigned_size",
                "Size of the latest checkpoint of the log of writers the witness cosigned.",
                labels=["witness"],
            ),
            GaugeMetricFamily(
                "rg_audit_witness_age_seconds",
                "Seconds the oldest checkpoint the witness has not cosigned has waited (0 when "
                "it cosigned the latest).",
                labels=["witness"],
            ),
            CounterMetricFamily(
                "rg_audit_witness_failures",
                "Submissions to the witness that failed (down, timeout, error answer).",
                labels=["witness"],
            ),
            CounterMetricFamily(
                "rg_audit_witness_refusals",
                "Checkpoints the witness refused (not consistent with what it saw, or our "
                "key not trusted): an alarm.",
                labels=["witness"],
            ),
        ]
        fields = ("cosigned_size", "age_seconds", "failures", "refusals")
        for witness, values in sorted(status.items()):
            for family, name in zip(families, fields, strict=True):
                family.add_metric([witness], values[name])
        yield from families


class ServiceMetrics:
    """Request counts and durations, produce latency and outcomes, and the recent-records
    buffer. `route` labels are path templates (`/audit`), never raw paths, so the number of
    series stays bounded whatever clients send."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rg_http_requests_total",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "rg_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=self.registry,
        )
        self.produce_duration = Histogram(
            "rg_kafka_produce_duration_seconds",
            "Time from handing a record to the producer to Kafka's acknowledgement.",
            ["endpoint"],
            buckets=_PRODUCE_BUCKETS,
            registry=self.registry,
        )
        self.produced = Counter(
            "rg_kafka_records_produced_total",
            "Records Kafka acknowledged.",
            ["endpoint"],
            registry=self.registry,
        )
        self._produce_series: dict[str, tuple[Counter, Histogram]] = {}
        self.spooled = Counter(
            "rg_spool_appended_total",
            "Audit records written to the disk spool (answered 202 spooled).",
            registry=self.registry,
        )
        self.forwarded = Counter(
            "rg_spool_forwarded_total",
            "Spooled audit records Kafka acknowledged.",
            registry=self.registry,
        )
        self.failed = Counter(
            "rg_kafka_records_failed_total",
            "Records Kafka did not acknowledge, by error code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.requests_timed_out = Counter(
            "rg_http_requests_timed_out_total",
            "Requests cut off: head or body not received within RG_REQUEST_READ_TIMEOUT_S.",
            registry=self.registry,
        )
        self.redactions = Counter(
            "rg_redactions_total",
            "Values replaced by a placeholder before publish (RG_REDACTION), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.otlp_items = Counter(
            "rg_otlp_items_total",
            "Spans and log records received over OTLP, by signal and outcome (recorded as "
            "audit records, rejected, or ignored: not a GenAI operation).",
            ["signal", "outcome"],
            registry=self.registry,
        )
        self.proxied = Counter(
            "rg_proxy_calls_total",
            "Calls through the recording proxy (/openai/v1/...), by endpoint (other: passed "
            "through unrecorded) and outcome (recorded, queued: fail-open, refused: 503 as the "
            "trail did not take the record, passed, not_recorded: a fail-open record refused).",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "rg_http_connections_refused_total",
            "Connections refused with 503 beyond RG_MAX_CONNECTIONS.",
            registry=self.registry,
        )

    def watch_checkpoints(self, written: Callable[[], int], seq: Callable[[], int]) -> None:
        """Report the signed checkpoints written and the seq of the latest on every scrape."""
        self.registry.register(_Checkpoints(written, seq))

    def watch_timestamps(
        self,
        *,
        tokens: Callable[[], int],
        last_age_s: Callable[[], float | None],
        failures: Callable[[], Mapping[str, int]],
    ) -> None:
        """Report the timestamp tokens kept, the last one's age and each authority's failures
        on every scrape."""
        self.registry.register(_Timestamps(tokens, last_age_s, failures))

    def watch_witnesses(
        self, read: Callable[[], Mapping[str, Mapping[str, float]]]
    ) -> Callable[[float], None]:
        """Report each witness's cosigned size, lag, failures and refusals on every scrape;
        returns what observes the seconds from a checkpoint's signing to its quorum."""
        self.registry.register(_Witnesses(read))
        quorum = Histogram(
            "rg_audit_witness_quorum_seconds",
            "Seconds from a checkpoint of the log of writers being signed to its quorum of "
            "cosignatures (RG_AUDIT_WITNESSES k).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        return quorum.observe

    def watch_connections(self, read: Callable[[], int]) -> None:
        """Report the client connections open (within RG_MAX_CONNECTIONS) on every scrape."""
        Gauge(
            "rg_http_connections", "Client connections open.", registry=self.registry
        ).set_function(read)

    def watch_spool(
        self,
        *,
        depth: Callable[[], int],
        size: Callable[[], int],
        oldest_age_s: Callable[[], float],
    ) -> None:
        """Report the spool's depth, size and oldest record on every scrape."""
        for name, documentation, read in (
            ("rg_spool_records", "Audit records in the disk spool.", depth),
            ("rg_spool_bytes", "Bytes of the records in the disk spool.", size),
            (
                "rg_spool_oldest_age_seconds",
                "Age of the oldest record in the disk spool (0 when empty).",
                oldest_age_s,
            ),
        ):
            Gauge(name, documentation, registry=self.registry).set_function(read)

    def watch_audit_topic(self, compliant: Callable[[], bool]) -> None:
        """Report whether the audit topic keeps its records on every scrape."""
        Gauge(
            "rg_audit_topic_compliant",
            "1 when the audit topic's retention, cleanup policy and replication were checked "
            "and keep audit records; 0 when noncompliant or not checked (yet).",
            registry=self.registry,
        ).set_function(lambda: 1.0 if compliant() else 0.0)

    def watch_chain(
        self, *, writer: Callable[[], str], seq: Callable[[], int], lost: Callable[[], int]
    ) -> None:
        """Report the writer id, its last chain position (-1 before the first) and its lost
        positions on every scrape."""
        self.registry.register(_Chain(writer, seq, lost))

    def watch_in_flight(
        self,
        *,
        held: Callable[[], int],
        high_water: Callable[[], int],
        limit: Callable[[], int],
        refused: Callable[[], Mapping[str, int]],
    ) -> None:
        """Report the bytes requests in progress hold, their highest level, their bound and
        the refusals of the in-flight bounds (`refused`: by bound, `bytes` and `records`) on
        every scrape."""
        for name, documentation, read in (
            (
                "rg_in_flight_bytes",
                "Bytes requests in progress hold: bodies, and records waiting for Kafka.",
                held,
            ),
            (
                "rg_in_flight_bytes_high_water",
                "The most bytes requests in progress held at once since the start.",
                high_water,
            ),
            (
                "rg_in_flight_bytes_limit",
                "RG_MAX_IN_FLIGHT_BYTES.",
                limit,
            ),
        ):
            Gauge(name, documentation, registry=self.registry).set_function(read)
        self.registry.register(_Refusals(refused))

    def track_produce(self, endpoint: str) -> DeliveryCallback:
        """A delivery callback for one record, started now: on success it counts the record
        and observes its latency, on failure it counts the error's code."""
        started = time.perf_counter()
        # The labelled series, looked up once per endpoint rather than per record.
        series = self._produce_series.get(endpoint)
        if series is None:
            series = self._produce_series[endpoint] = (
                self.produced.labels(endpoint),
                self.produce_duration.labels(endpoint),
            )
        produced, duration = series

        def settled(_: KafkaProduceResult | None, error: KafkaClientError | None) -> None:
            if error is None:
                produced.inc()
                duration.observe(time.perf_counter() - started)
            else:
                self.failed.labels(endpoint, problem_for(error).code).inc()

        return settled

    def watch_recent(
        self,
        *,
        records: TopicGauge,
        size: TopicGauge,
        lag: TopicGauge,
        connected: Callable[[], bool],
    ) -> None:
        """Report the recent-records buffer, whether its consumer follows the topics and its
        lag on every scrape."""
        Gauge(
            "rg_messages_consumer_connected",
            "1 while the GET /messages consumer is connected and following its topics; 0 while "
            "it reconnects (the buffer, the stream and the lag are then stale).",
            registry=self.registry,
        ).set_function(lambda: 1.0 if connected() else 0.0)
        self.registry.register(
            _TopicGauges(
                {
                    "rg_messages_buffer_records": ("Records kept for GET /messages.", records),
                    "rg_messages_buffer_bytes": ("Bytes kept for GET /messages.", size),
                    "rg_messages_consumer_lag": (
                        "Records the GET /messages consumer is behind the end of the topic.",
                        lag,
                    ),
                }
            )
        )

    def watch_skipped(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Report the records the GET /messages reader skipped, by reason, on every scrape."""
        self.registry.register(_Skipped(read))

    def watch_streams(self, *, cut: Callable[[], int], timed_out: Callable[[], int]) -> None:
        """Report the GET /messages/stream clients let go on every scrape."""
        self.registry.register(_Streams(cut, timed_out))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
