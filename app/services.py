"""The service's parts, built once from the settings and owned in one place.

`build_services(settings)` makes every long-lived part the routes and the lifespan use and
wires them together; `Services` holds them, typed, as `app.state.services` (routes reach it
through `app.api.deps.ServicesDep`). Building does no I/O, so `create_app` builds them at once:
the middleware that run before the lifespan (the body limit counting in the in-flight byte
budget, the request metrics) have their parts from the start. `start()` and `stop()` are the
lifespan's two halves:

- start: load the signing key (a key that cannot be used stops the start), open the spool
  (records of an earlier run are kept), connect the producer in the background and wait up to
  RG_READY_TIMEOUT_S for it (with a Schema Registry, the audit schema is checked and registered
  in the background meanwhile: app/ingest/contracts.py), then have the audit topic guard create
  or check the audit topic (and, with a signing key, the checkpoints topic); the GET /messages
  reader (with a key it reads the checkpoints topic too), the spool's forwarder and the
  checkpointer start once the topics exist (their metadata requests would have the broker
  auto-create them with its defaults: seven days of retention).
- stop: refuse new work, stop the guard, the forwarder and the reader; with a signing key or a
  spool flush (a signing key: then write the last checkpoint; a spool: then spool the records
  answered 202 the flush did not deliver); flush and close the producer (what was in flight is
  acknowledged, spooled records included: their removal is queued on the spool), then close
  the spool, saying what it keeps for the next start.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from app.auth import ApiKeys, is_loopback
from app.connection import ProducerConnection
from app.ingest.audit_topic import AuditTopic, AuditTopics
from app.ingest.audit_topic_guard import AuditTopicGuard
from app.ingest.audit_trail import AuditTrail
from app.ingest.backpressure import Backpressure, ByteBudget
from app.ingest.contracts import AuditSchemaGuard, TopicContracts, registry_client
from app.ingest.erasures import Erasures
from app.ingest.forwarder import SpoolForwarder
from app.ingest.idempotency import RecentReceipts
from app.ingest.publisher import Publisher
from app.ingest.receipts import receipt_codec
from app.ingest.redaction import Redactor
from app.ingest.spool import Spool
from app.ingest.topic_policy import TopicPolicy
from app.integrity import ChainWriter
from app.integrity.checkpointer import Checkpoints
from app.integrity.cosigner import Cosigner
from app.integrity.keys import insecure_key_file
from app.integrity.stamper import Stamper
from app.integrity.timestamp import load_tsa_roots
from app.integrity.witness import WitnessError
from app.integrity.witness_policy import WitnessPolicy
from app.kafka import KafkaAuditLogger, KafkaProducerClient, SchemaRegistryClient
from app.metrics import ServiceMetrics
from app.privacy.erasure import Erasure
from app.privacy.keystore import KafkaKeyStore, KekMismatchError
from app.privacy.sealing import Kek, SealingError, load_kek
from app.proxy.exchange import OpenAIProxy
from app.rates import RateHistory
from app.reachability import KafkaReachability
from app.recent.buffer import RecentRecords
from app.recent.coverage import CheckpointCoverage
from app.recent.proofs import ProofsReader
from app.recent.reader import RecentRecordsReader
from app.recent.search import RecordSearch
from app.runtime import return_big_blocks
from app.settings import Settings
from app.shutdown import Shutdown

logger = logging.getLogger(__name__)

# How long the start waits for the audit topic's first create-or-check once Kafka answers.
AUDIT_TOPIC_WAIT_S = 30.0


class StartupError(ValueError):
    """A setting the service cannot start with; the message names it and what to do. The
    console script prints it as one line and exits with status 3."""


@dataclass(frozen=True)
class Services:
    """Everything the routes and the lifespan use, built by `build_services`."""

    settings: Settings
    metrics: ServiceMetrics
    api_keys: ApiKeys
    shutdown: Shutdown
    # The bytes requests in progress hold; the body limit (a middleware) counts in it too.
    in_flight: ByteBudget
    connection: ProducerConnection
    audit_topic: AuditTopicGuard
    # This process's hash chain: every audit record takes a position on it.
    chain: ChainWriter
    audit_trail: AuditTrail
    publisher: Publisher
    recent: RecentRecords
    # Whether a signed checkpoint covers a record GET /messages shows.
    coverage: CheckpointCoverage
    reader: RecentRecordsReader
    # GET /audit/records: searches of the whole audit topic, a consumer each.
    search: RecordSearch
    # Both None without RG_SPOOL_DIR.
    spool: Spool | None
    forwarder: SpoolForwarder | None
    # The signing key, the public keys and the checkpointer (app/integrity/).
    checkpoints: Checkpoints
    # Records/s Kafka acknowledged, sampled for the /ui page's chart (app/rates.py).
    rates: RateHistory
    # Logs once when Kafka goes away and once when it is back (app/reachability.py).
    reachability: KafkaReachability
    # The recording proxy behind /openai/v1/... (its HTTP client made on its first call).
    proxy: OpenAIProxy
    # Both None without RG_SCHEMA_REGISTRY_URL (app/ingest/contracts.py).
    registry: SchemaRegistryClient | None = None
    audit_schema: AuditSchemaGuard | None = None
    # Every writer's tree for GET /audit/proof; None without a signing key (app/recent/proofs.py).
    proofs: ProofsReader | None = None
    # Timestamp tokens over the log of writers; None without RG_AUDIT_TSA_URLS or proofs.
    stamper: Stamper | None = None
    # Has the witnesses cosign the log of writers; None without RG_AUDIT_WITNESSES.
    cosigner: Cosigner | None = None
    # RG_ERASURE=on: the sealing and the erasures (app/privacy/, app/ingest/erasures.py).
    erasure: Erasure | None = None
    erasures: Erasures | None = None

    @property
    def producer(self) -> KafkaProducerClient:
        """The service's one producer (idempotent, acks=all)."""
        return self.connection.producer

    async def start(self) -> None:
        """Open the spool, connect to Kafka and check the audit topic, then start the readers
        (see the module docstring). With the broker up the service is ready from the first
        request; without it, it serves anyway (/readyz says 503) and keeps connecting."""
        settings = self.settings
        # A signing key that cannot be used stops the start here (exit status 3), naming it.
        self.checkpoints.open()
        return_big_blocks()
        logger.info("audit writer %s starts its chain at seq 0", self.chain.writer_id)
        # The console script checks this before anything starts; this covers an app served
        # some other way.
        check_unauthenticated(settings)
        if not self.api_keys.enabled and not is_loopback(settings.host):
            logger.warning(
                "authentication is off (RG_API_KEYS is empty, RG_ALLOW_UNAUTHENTICATED=true) "
                "while the API listens on %s: whoever reaches that address can write audit "
                "records and read messages",
                settings.host,
            )
        if self.spool is not None:
            await self.spool.open()
        self.rates.start()
        await self.connection.start()
        self.reachability.start()
        if self.audit_schema is not None:
            await self.audit_schema.start(wait_s=settings.ready_timeout_s)
        await self.connection.wait_connected(settings.ready_timeout_s)
        if self.erasure is not None:
            try:
                await start_erasure(self.erasure)
            except StartupError:
                await self.stop()  # the producer and the rest started so far, closed
                raise
        readers = [self.reader.start, self.checkpoints.start]
        if self.proofs is not None:
            readers.append(self.proofs.start)
        if self.stamper is not None:
            readers.append(self.stamper.start)
        if self.cosigner is not None:
            readers.append(self.cosigner.start)
        if self.forwarder is not None:
            readers.append(self.forwarder.start)
        await self.audit_topic.start(then=readers, wait_s=AUDIT_TOPIC_WAIT_S)

    async def stop(self) -> None:
        """Refuse new work, stop the background tasks, flush and close the producer, close the
        spool (see the module docstring)."""
        self.shutdown.begin()
        await self.rates.close()
        # Before the producer closes: fail-open records still on their way get their chance.
        await self.proxy.close(self.settings.shutdown_timeout_s)
        await self.reachability.close()
        await self.audit_topic.close()
        if self.audit_schema is not None:
            await self.audit_schema.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        await self.reader.close()
        if self.erasure is not None:
            await self.erasure.store.close()
        if self.stamper is not None:
            await self.stamper.close()
        if self.cosigner is not None:
            await self.cosigner.close()
        if self.proofs is not None:
            await self.proofs.close()
        await self._flush_at_stop()
        # Flushing acknowledges what was in flight, spooled records included (their removal
        # is queued on the spool, which close() then completes).
        await self.connection.close()
        if self.registry is not None:
            await self.registry.aclose()
        if self.spool is not None:
            await self.spool.close()
            if self.spool.depth:
                logger.warning(
                    "spool %s keeps %d record(s) for the next start",
                    self.spool.directory,
                    self.spool.depth,
                )

    async def _flush_at_stop(self) -> None:
        """With a signing key or a spool, flush (up to RG_PRODUCE_TIMEOUT_S): the last
        checkpoint covers what the flush acknowledged, and what it could not deliver of the
        records answered 202 goes to the spool."""
        signing = self.checkpoints.checkpointer is not None
        if not (signing or self.spool is not None) or not self.producer.started:
            return
        try:
            await self.producer.flush(timeout_s=self.settings.produce_timeout_s)
        except Exception as exc:  # the broker away: close() logs what is unacknowledged
            logger.warning("flush at shutdown: %s", exc)
        if self.spool is not None and (spooled := await self.audit_trail.spool_queued()):
            logger.warning(
                "%d record(s) answered 202 and not acknowledged by Kafka went to the spool",
                spooled,
            )
        if signing:
            await self.checkpoints.close()


def build_services(settings: Settings) -> Services:
    """Build and wire the service's parts from `settings`; nothing is started (no I/O)."""
    metrics = ServiceMetrics()
    chain = ChainWriter()
    metrics.watch_chain(
        writer=lambda: chain.writer_id, seq=lambda: chain.count - 1, lost=lambda: chain.lost
    )
    in_flight = ByteBudget(settings.max_in_flight_bytes)
    metrics.watch_in_flight(
        held=lambda: in_flight.held,
        high_water=lambda: in_flight.high_water,
        limit=lambda: in_flight.max_bytes,
        refused=lambda: {
            "bytes": in_flight.refusals.bytes,
            "records": in_flight.refusals.records,
        },
    )
    recent = RecentRecords(
        settings.recent_topics,
        max_records=settings.messages_buffer,
        max_bytes=settings.messages_buffer_bytes,
        audit_topic=settings.audit_topic,
    )
    connection = ProducerConnection(settings)
    producer = connection.producer
    topics: AuditTopic | AuditTopics = AuditTopic(settings)
    if settings.audit_signing_key_file is not None:
        # The checkpoints topic is kept like the audit topic; readiness covers both.
        checkpoints_topic = AuditTopic(settings, name=settings.checkpoints_topic, partitions=1)
        # The log of writers: one partition, one order of its entries for every reader.
        writers_topic = AuditTopic(settings, name=settings.writers_topic, partitions=1)
        topics = AuditTopics([AuditTopic(settings), checkpoints_topic, writers_topic])
    guard = AuditTopicGuard(settings, connection, topic=topics)
    metrics.watch_audit_topic(lambda: guard.compliant)
    audit_logger = KafkaAuditLogger(producer, topic=settings.audit_topic)
    spool: Spool | None = None
    forwarder: SpoolForwarder | None = None
    if settings.spool_dir is not None:
        spool = Spool(
            settings.spool_dir,
            max_bytes=settings.spool_max_bytes,
            min_free_bytes=settings.spool_min_free_bytes,
        )
        metrics.watch_spool(
            depth=lambda: spool.depth,
            size=lambda: spool.size_bytes,
            oldest_age_s=spool.oldest_age_s,
        )
        forwarder = SpoolForwarder(spool, audit_logger, on_forwarded=metrics.forwarded.inc)
    registry: SchemaRegistryClient | None = None
    audit_schema: AuditSchemaGuard | None = None
    contracts: TopicContracts | None = None
    if settings.schema_registry_url is not None:
        registry = registry_client(settings)
        framing = settings.schema_wire_format

        def registered(schema_id: int) -> None:
            if framing == "confluent":
                audit_logger.frame_schema_id = schema_id

        audit_schema = AuditSchemaGuard(settings, registry, on_registered=registered)
        contracts = TopicContracts(
            registry,
            cache_s=settings.schema_cache_s,
            required=settings.schema_required,
            framing=framing,
        )
    checkpoints = Checkpoints(settings, producer, chain=chain)
    coverage = CheckpointCoverage(checkpoints)
    reader = RecentRecordsReader(
        settings,
        recent,
        refresh_s=settings.messages_refresh_s,
        # With a key, other writers' coverage is read off the checkpoints topic (created then).
        coverage=coverage if settings.audit_signing_key_file is not None else None,
        registry=registry,
    )
    metrics.watch_recent(
        records=recent.counts, size=recent.sizes, lag=reader.lag, connected=reader.connected.is_set
    )
    metrics.watch_skipped(
        lambda: {
            "oversized": recent.skipped["oversized"],
            "failed": recent.skipped["failed"],
            "checkpoint_ignored": coverage.ignored,
        }
    )
    metrics.watch_streams(
        cut=lambda: recent.subscribers_cut, timed_out=lambda: recent.streams_timed_out
    )
    metrics.watch_checkpoints(lambda: checkpoints.written, lambda: checkpoints.latest_seq)
    backpressure = Backpressure(producer, max_in_flight=settings.max_in_flight, budget=in_flight)
    proofs = (
        ProofsReader(
            settings,
            checkpoints,
            directory=settings.proof_dir,
            refresh_s=settings.messages_refresh_s,
        )
        if settings.audit_signing_key_file is not None and settings.audit_proofs
        else None
    )
    cosigner = cosigner_of(settings, proofs, checkpoints, metrics)
    search = RecordSearch(settings, coverage.covers)
    erasure = erasure_of(settings, recent, search)
    audit_trail = build_audit_trail(
        audit_logger,
        metrics,
        backpressure,
        timeout_s=settings.produce_timeout_s,
        window_s=settings.idempotency_window_s,
        max_keys=settings.idempotency_max_keys,
        spool=spool,
        spool_after_s=settings.spool_after_s,
        chain=chain,
        redactor=redactor_of(settings, metrics),
        erasure=erasure,
    )
    return Services(
        settings=settings,
        metrics=metrics,
        api_keys=ApiKeys(settings.api_keys),
        shutdown=Shutdown(),
        in_flight=in_flight,
        connection=connection,
        audit_topic=guard,
        chain=chain,
        audit_trail=audit_trail,
        publisher=Publisher(
            producer,
            TopicPolicy(
                allow=settings.publish_topics,
                # The erasure keys topic too: a record written there could plant or drop keys.
                own=[
                    settings.audit_topic,
                    settings.checkpoints_topic,
                    settings.writers_topic,
                    f"{settings.audit_topic}.keys",
                ],
            ),
            metrics,
            timeout_s=settings.produce_timeout_s,
            backpressure=backpressure,
            contracts=contracts,
        ),
        recent=recent,
        coverage=coverage,
        reader=reader,
        search=search,
        spool=spool,
        forwarder=forwarder,
        checkpoints=checkpoints,
        rates=RateHistory(lambda: producer.stats.delivered),
        reachability=KafkaReachability(
            # One topic's metadata, as readiness asks: not every topic's every 2 s.
            lambda: producer.ping(timeout_s=settings.ready_timeout_s, topic=settings.audit_topic),
            connected=lambda: connection.connected,
            servers=",".join(settings.kafka_bootstrap_servers),
        ),
        proxy=OpenAIProxy(settings, audit_trail, metrics, erasure=erasure is not None),
        registry=registry,
        audit_schema=audit_schema,
        proofs=proofs,
        stamper=build_stamper(settings, checkpoints, proofs, metrics),
        cosigner=cosigner,
        erasure=erasure,
        erasures=(
            Erasures(erasure, audit_trail, purge=recent.purge_sealed)
            if erasure is not None
            else None
        ),
    )


def build_stamper(
    settings: Settings,
    checkpoints: Checkpoints,
    proofs: ProofsReader | None,
    metrics: ServiceMetrics,
) -> Stamper | None:
    """The stamper of the log of writers, when RG_AUDIT_TSA_URLS names authorities; it stamps
    the proof index's notes, so without that index it cannot run (a StartupError says so)."""
    if not settings.audit_tsa_urls or settings.audit_tsa_ca_file is None:
        return None
    if proofs is None:
        raise StartupError(
            "RG_AUDIT_TSA_URLS stamps the notes of the log of writers, which the proof index "
            "signs: it needs RG_AUDIT_SIGNING_KEY_FILE and RG_AUDIT_PROOFS=true"
        )
    try:
        roots = load_tsa_roots(settings.audit_tsa_ca_file)
    except ValueError as exc:
        raise StartupError(f"RG_AUDIT_TSA_CA_FILE: {exc}") from exc
    stamper = Stamper(
        proofs,
        checkpoints.write_timestamp,
        urls=settings.audit_tsa_urls,
        roots=roots,
        name=settings.log_origin,
        interval_s=settings.audit_tsa_interval_s,
    )
    metrics.watch_timestamps(
        tokens=lambda: stamper.tokens,
        last_age_s=stamper.last_token_age_s,
        failures=lambda: stamper.failures,
    )
    return stamper


def cosigner_of(
    settings: Settings,
    proofs: ProofsReader | None,
    checkpoints: Checkpoints,
    metrics: ServiceMetrics,
) -> Cosigner | None:
    """The cosigner RG_AUDIT_WITNESSES asks for, attached to the proof index's reader (which
    signs the notes of the log of writers); None when unset. `StartupError` for a value that
    does not parse, or without the signing key and proof index the notes come from."""
    if settings.audit_witnesses is None:
        return None
    try:
        policy = WitnessPolicy.parse(settings.audit_witnesses)
    except WitnessError as exc:
        raise StartupError(f"RG_AUDIT_WITNESSES: {exc}") from None
    if proofs is None:
        raise StartupError(
            "RG_AUDIT_WITNESSES needs the notes of the log of writers: set "
            "RG_AUDIT_SIGNING_KEY_FILE and keep RG_AUDIT_PROOFS=true"
        )
    cosigner = Cosigner(
        policy,
        proofs.latest_writers,
        checkpoints.write_cosignature,
        timeout_s=min(settings.produce_timeout_s, 10.0),
    )
    cosigner.on_quorum = metrics.watch_witnesses(cosigner.status)
    proofs.cosigner = cosigner
    return cosigner


def build_audit_trail(
    audit_logger: KafkaAuditLogger,
    metrics: ServiceMetrics,
    backpressure: Backpressure,
    *,
    timeout_s: float,
    window_s: float,
    max_keys: int,
    spool: Spool | None = None,
    spool_after_s: float = 2.0,
    chain: ChainWriter | None = None,
    redactor: Redactor | None = None,
    erasure: Erasure | None = None,
) -> AuditTrail:
    """The audit trail as the service wires it (the tests' too, so the two stay in step): its
    receipts kept packed for retries, `window_s` seconds and at most `max_keys` of them; the
    rest as `AuditTrail` takes it (without a `chain`, a new one; without a `redactor`, events
    as sent)."""
    return AuditTrail(
        audit_logger,
        metrics,
        timeout_s=timeout_s,
        receipts=RecentReceipts(window_s=window_s, max_entries=max_keys, codec=receipt_codec()),
        backpressure=backpressure,
        spool=spool,
        spool_after_s=spool_after_s,
        chain=chain,
        redactor=redactor,
        erasure=erasure,
    )


def check_unauthenticated(settings: Settings) -> None:
    """`StartupError` when the API would listen beyond loopback with authentication off and
    RG_ALLOW_UNAUTHENTICATED is not set: refusing is the safe default for an image or a chart
    that listens on every interface."""
    if settings.api_keys or is_loopback(settings.host) or settings.allow_unauthenticated:
        return
    raise StartupError(
        f"RG_HOST={settings.host} listens beyond this machine and RG_API_KEYS is empty: "
        "set RG_API_KEYS, or RG_ALLOW_UNAUTHENTICATED=true to let anyone in reach write and read"
    )


def check_key_file_mode(path: Path, setting: str, *, allow_insecure: bool) -> None:
    """`StartupError` when the private key file at `path` is exposed (`key_file_exposure`)
    and RG_ALLOW_INSECURE_KEY_FILES does not allow it: whoever reads the key can forge what it
    signs or keys."""
    refusal = insecure_key_file(path, setting, allow_insecure=allow_insecure)
    if refusal is not None:
        raise StartupError(refusal)


def redactor_of(settings: Settings, metrics: ServiceMetrics) -> Redactor | None:
    """The redactor RG_REDACTION asks for, counting into `metrics`; None when it is off.
    Reads the hash key from RG_REDACTION_KEY_FILE (a missing, empty, or group/other-readable
    file stops the start: `StartupError`)."""
    if settings.redaction == "off":
        return None
    key: bytes | None = None
    if settings.redaction == "hash":
        path = settings.redaction_key_file
        assert path is not None  # noqa: S101 - the settings require it
        check_key_file_mode(
            path, "RG_REDACTION_KEY_FILE", allow_insecure=settings.allow_insecure_key_files
        )
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise StartupError(
                f"RG_REDACTION_KEY_FILE {path}: cannot read the key: {exc.strerror or exc}"
            ) from None
        if not key:
            raise StartupError(f"RG_REDACTION_KEY_FILE {path}: the file is empty")
    return Redactor(
        settings.redaction,
        key=key,
        patterns=settings.redaction_patterns,
        metadata_fields=settings.redaction_metadata_fields,
        count=lambda kind, n: metrics.redactions.labels(kind=kind).inc(n),
    )


def erasure_of(
    settings: Settings, recent: RecentRecords | None = None, search: RecordSearch | None = None
) -> Erasure | None:
    """The sealing RG_ERASURE=on asks for, its keys on `<audit topic>.keys`; None when off.
    Reads the KEK from RG_ERASURE_KEK_FILE (a missing, unreadable or malformed file, or one
    others may read, stops the start: `StartupError`). The read paths given open sealed
    fields with it; `recent` also forgets an erased subject's records."""
    if settings.erasure == "off":
        return None
    path = settings.erasure_kek_file
    assert path is not None  # noqa: S101 - the settings require it
    check_key_file_mode(
        path, "RG_ERASURE_KEK_FILE", allow_insecure=settings.allow_insecure_key_files
    )
    try:
        kek = Kek(load_kek(path))
    except SealingError as exc:
        raise StartupError(f"RG_ERASURE_KEK_FILE {exc}") from None
    store = KafkaKeyStore(settings, kek, fresh_s=settings.erasure_key_cache_s)
    erasure = Erasure(
        store,
        kek,
        subject_field=settings.erasure_subject_field,
        fields=settings.erasure_fields,
    )
    if recent is not None:
        recent.opener = erasure.open_view
        store.on_erased = recent.purge_sealed
    if search is not None:
        search.opener = erasure.open_view
    return erasure


async def start_erasure(erasure: Erasure) -> None:
    """Load the erasure keys; a key the KEK does not unwrap stops the start (`StartupError`
    naming RG_ERASURE_KEK_FILE). A broker that does not answer leaves the store unfresh:
    writes answer 503 until it is read."""
    try:
        await erasure.store.start()
    except KekMismatchError as exc:
        raise StartupError(str(exc)) from None
