"""Where data keys live: the `KeyStore` seam and `KafkaKeyStore`, the compacted topic
`<audit topic>.keys` every replica reads.

Records of the keys topic (UTF-8 JSON values):

- key `key/<subject hash>/<kid>`: `{"v": 1, "subject", "kid", "wrapped"}`, a data key wrapped by
  the KEK (`app.privacy.sealing`); a tombstone (null value) under the same key destroys it;
- key `erased/<subject hash>`: `{"v": 1, "subject", "kids", "erasure"}`, which erasure record
  destroyed which keys (no key material: kept, so reads can name the erasure).

Keyed by `<subject hash>/<kid>` rather than by subject alone: two replicas that meet a new
subject at once each write a key, and compaction, which keeps one record per key, must not
destroy either (records sealed under both exist). A subject's key for new records is the
smallest kid known, so the replicas converge.

The topic is compacted with a short segment roll, no compaction lag and a small dirty ratio,
so a destroyed key leaves the segments within seconds of the next roll (`roll()` appends a
record that makes the broker roll the segment). A reader task on every replica follows the
topic from its beginning into memory; a key is used only while the reader was caught up within
`fresh_s` (RG_ERASURE_KEY_CACHE_S): a replica that cannot read the topic refuses writes and
reads of sealed fields instead of using a key erased meanwhile elsewhere. That is the bound on
how long an erasure on one replica takes to be honoured by another.

A KMS would replace this seam: `KeyStore` is what `app.privacy.erasure` uses; an
implementation keeps the same records but has the KMS wrap and unwrap (or hold) the keys.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from app.connection import admin_config, consumer_config, producer_config
from app.errors import ErasureKeysUnavailableError as KeyStoreUnavailableError
from app.privacy.sealing import DataKey, Kek, SealingError
from app.settings import Settings

logger = logging.getLogger(__name__)

# The keys topic's configuration: compacted, and quick to drop what a tombstone destroys.
KEYS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "1000",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    # Long enough that a reader behind by less than RG_ERASURE_KEY_CACHE_S sees the tombstone.
    "delete.retention.ms": "600000",
    # Segments the cleaner replaced are deleted from disk after this, not after a minute.
    "file.delete.delay.ms": "1000",
}
ROLL_KEY = b"roll"
_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36


class KekMismatchError(SealingError):
    """A key of the keys topic does not unwrap: RG_ERASURE_KEK_FILE is not the KEK that wrapped
    it."""


class KeyStore(Protocol):
    """The data keys as `app.privacy.erasure` uses them (see the module docstring)."""

    async def start(self) -> None:
        """Load every key (a key that does not unwrap is `KekMismatchError`) and follow."""

    async def close(self) -> None:
        """Stop following."""

    async def key_for(self, subject_hash: str) -> DataKey:
        """The subject's key for new records; a new one is stored (acks=all) first."""

    def key_by_kid(self, kid: str) -> DataKey | None:
        """The key `kid` names; None when unknown or destroyed. `KeyStoreUnavailableError`
        while the store is not fresh."""

    def erasure_of(self, kid: str) -> str | None:
        """The event id of the erasure record that destroyed `kid`, if any."""

    def erasure(self, erasure_id: str) -> tuple[str, list[str]] | None:
        """The subject hash and kids an erasure record destroyed; None when unknown."""

    def kids_of(self, subject_hash: str) -> list[str]:
        """The live keys of a subject."""

    async def destroy(self, subject_hash: str, erasure_id: str) -> list[str]:
        """Tombstone every key of the subject, note the erasure; the kids destroyed."""

    async def still_stored(self, subject_hash: str, kids: list[str]) -> bool:
        """Whether a record of any of `kids` is still in the topic's segments."""


@dataclass
class _State:
    keys: dict[str, DataKey] = field(default_factory=dict)
    by_subject: dict[str, set[str]] = field(default_factory=dict)
    erased: dict[str, str] = field(default_factory=dict)
    erasures: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    caught_up_at: float | None = None


class KafkaKeyStore:
    """`KeyStore` on the compacted `<audit topic>.keys` topic (see the module docstring)."""

    def __init__(self, settings: Settings, kek: Kek, *, fresh_s: float) -> None:
        self._settings = settings
        self.topic = f"{settings.audit_topic}.keys"
        self._kek = kek
        self._fresh_s = fresh_s
        self._state = _State()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        # Set by close(): the loops end on it too, since a cancellation can be swallowed
        # (asyncio.wait_for returns the inner result when both meet) and close() waits for them.
        self._closing = False
        self._lock = asyncio.Lock()
        # Set when a write failed: the next write first replaces the producer (see `_send`).
        self._producer_failed = False
        # Keys read at start that unwrapped, and the errors of those that did not.
        self._unwrapped = 0
        self._not_unwrapped: list[str] = []
        self._renewing = asyncio.Lock()
        # Called with the kids an erasure destroyed, this replica's or another's (the service
        # purges GET /messages of their records).
        self.on_erased: Callable[[list[str]], object] | None = None

    # --- start and follow ------------------------------------------------------------------

    async def start(self) -> None:
        """Create or check the topic, read it to its end (every key unwrapped), then follow it
        in the background. `KekMismatchError` when a key does not unwrap. When the broker does
        not answer, the start goes on in the background (logged); the store is not fresh, so
        writes are refused, until it is read."""
        try:
            await self._load()
        except KekMismatchError:
            await self._stop_clients()
            raise
        except Exception as exc:
            logger.warning("erasure keys topic %s not read yet: %s; retrying", self.topic, exc)
            await self._stop_clients()
            self._task = asyncio.create_task(self._load_later(), name="erasure-keys-loader")

    async def _load_later(self) -> None:
        while not self._closing:
            await asyncio.sleep(2.0)
            try:
                await self._load()
            except KekMismatchError as exc:
                logger.error("%s", exc)
                await self._stop_clients()
                return
            except Exception as exc:
                logger.warning("erasure keys topic %s not read yet: %s", self.topic, exc)
                await self._stop_clients()
            else:
                return

    async def _stop_clients(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None

    async def _load(self) -> None:
        await self.ensure_topic()
        self._producer = self._new_producer()
        await self._producer.start()
        consumer = AIOKafkaConsumer(
            **consumer_config(
                self._settings, topics=[self.topic], auto_offset_reset="earliest"
            ).to_aiokafka()
        )
        await consumer.start()
        self._consumer = consumer
        partitions = consumer.partitions_for_topic(self.topic) or {0}
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        self._unwrapped, self._not_unwrapped = 0, []
        while await self._behind(consumer, ends):
            await self._poll(strict=True)
        self._check_kek()
        self._state.caught_up_at = time.monotonic()
        self._follower = asyncio.create_task(self._follow(), name="erasure-keys-reader")

    def _new_producer(self) -> AIOKafkaProducer:
        kwargs = producer_config(self._settings).to_aiokafka()
        kwargs.update(acks="all", enable_idempotence=True, linger_ms=0)
        return AIOKafkaProducer(**kwargs)

    async def close(self) -> None:
        """Stop the reader, close the clients."""
        self._closing = True
        tasks = [task for task in (self._task, self._follower) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Not `await task`: that would also swallow a cancellation of close() itself.
            await asyncio.wait(tasks)
        await self._stop_clients()

    async def ensure_topic(self) -> None:
        """Create the keys topic with `KEYS_TOPIC_CONFIGS` when missing; refuse one that is
        not compacted (`UnavailableError` naming the setting): a deleted topic would lose keys
        of records still kept."""
        admin = AIOKafkaAdminClient(**admin_config(self._settings))
        await admin.start()
        try:
            brokers = len((await admin.describe_cluster())["brokers"])
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=self.topic,
                        num_partitions=1,
                        # As the audit topic: three copies where there are three brokers.
                        replication_factor=min(3, brokers),
                        topic_configs=KEYS_TOPIC_CONFIGS,
                    )
                ]
            )
            code = response.topic_errors[0][1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise KeyStoreUnavailableError(
                    f"Kafka refused to create the keys topic {self.topic!r} (error {code})"
                )
            configs = await self._configs(admin)
        finally:
            await admin.close()
        if configs.get("cleanup.policy") != "compact":
            raise KeyStoreUnavailableError(
                f"the keys topic {self.topic!r} has cleanup.policy="
                f"{configs.get('cleanup.policy')}: it must be compact (and not delete: keys of "
                "records still kept would be lost)"
            )

    async def _configs(self, admin: AIOKafkaAdminClient) -> dict[str, str]:
        # A topic just created may not be described yet (unknown topic): ask again, briefly.
        for _ in range(50):
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, self.topic)]
            )
            (resource,) = response.to_object()["resources"]
            if resource["error_code"] == 0 and resource["config_entries"]:
                return {
                    entry["config_names"]: entry["config_value"] or ""
                    for entry in resource["config_entries"]
                }
            await asyncio.sleep(0.1)
        raise KeyStoreUnavailableError(f"the keys topic {self.topic!r} cannot be described")

    async def _follow(self) -> None:
        while not self._closing:
            try:
                await self._poll(strict=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following; freshness lapses meanwhile
                logger.warning("erasure keys reader: %s", exc)
                await asyncio.sleep(1.0)

    async def _poll(self, *, strict: bool) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - started
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                self._apply(record.key, record.value, strict=strict)
        # The end offsets asked of the broker, not the last fetch's high watermark: a broker
        # gone away answers no fetch, and a stale watermark would look caught up.
        ends = await asyncio.wait_for(
            consumer.end_offsets(list(consumer.assignment())), timeout=self._fresh_s / 2
        )
        if not await self._behind(consumer, ends):
            self._state.caught_up_at = time.monotonic()

    def _check_kek(self) -> None:
        """After reading the topic at start: `KekMismatchError` when keys were found and none
        unwraps (RG_ERASURE_KEK_FILE is not the KEK that wrapped them). Some that do not among
        others that do were not wrapped by this service (anyone who may write the topic can
        put one there), or were changed: logged and skipped, not a start refused for good."""
        failed = self._not_unwrapped
        if failed and not self._unwrapped:
            raise KekMismatchError(
                f"RG_ERASURE_KEK_FILE: no key of topic {self.topic} unwraps ({failed[0]});"
                " this is not the KEK the keys were wrapped with"
            )
        if failed:
            logger.error(
                "erasure keys topic %s: %d keys do not unwrap with the KEK while %d do; those "
                "are skipped (not wrapped by this service, or changed): %s",
                self.topic,
                len(failed),
                self._unwrapped,
                failed[0],
            )

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return True
        return False

    def _apply(self, key: bytes | None, value: bytes | None, *, strict: bool) -> None:
        name = (key or b"").decode("utf-8", "replace")
        kind, _, rest = name.partition("/")
        state = self._state
        if kind == "key":
            subject, _, kid = rest.partition("/")
            if value is None:
                state.keys.pop(kid, None)
                state.by_subject.get(subject, set()).discard(kid)
                return
            wrapped = _entry(value).get("wrapped")
            if not isinstance(wrapped, str):
                _skip(name, "no key entry")
                return
            try:
                data_key = self._kek.unwrap(subject, kid, wrapped)
            except SealingError as exc:
                if strict:  # judged once the topic is read (`_check_kek`)
                    self._not_unwrapped.append(str(exc))
                else:
                    logger.error("erasure keys reader: %s", exc)
                return
            except ValueError:  # not base64url: no wrapped key, whatever the KEK
                _skip(name, "no key entry")
                return
            self._unwrapped += 1
            state.keys[kid] = data_key
            state.by_subject.setdefault(subject, set()).add(kid)
        elif kind == "erased" and value is not None:
            body = _entry(value)
            erasure, kids = body.get("erasure"), body.get("kids", [])
            if not (
                isinstance(erasure, str)
                and isinstance(kids, list)
                and all(isinstance(kid, str) for kid in kids)
            ):
                _skip(name, "no erasure entry")
                return
            state.erasures[erasure] = (rest, list(kids))
            for kid in kids:
                state.erased[kid] = erasure
                state.keys.pop(kid, None)
            state.by_subject.pop(rest, None)
            if self.on_erased is not None:
                self.on_erased(list(kids))

    # --- use -------------------------------------------------------------------------------

    def _check_fresh(self) -> None:
        at = self._state.caught_up_at
        if at is None or time.monotonic() - at > self._fresh_s:
            raise KeyStoreUnavailableError(
                f"the erasure keys topic {self.topic} was not read within {self._fresh_s:g}s; "
                "nothing is written unsealed"
            )

    async def key_for(self, subject_hash: str) -> DataKey:
        """See `KeyStore.key_for`."""
        self._check_fresh()
        known = self._state.by_subject.get(subject_hash)
        if known:
            return self._state.keys[min(known)]
        async with self._lock:  # one new key per subject from this replica
            known = self._state.by_subject.get(subject_hash)
            if known:
                return self._state.keys[min(known)]
            data_key = self._kek.new_key(subject_hash)
            body = {"v": 1, "subject": subject_hash, "kid": data_key.kid}
            body["wrapped"] = self._kek.wrap(data_key)
            await self._send(f"key/{subject_hash}/{data_key.kid}", body)
            self._state.keys[data_key.kid] = data_key
            self._state.by_subject.setdefault(subject_hash, set()).add(data_key.kid)
            return data_key

    def key_by_kid(self, kid: str) -> DataKey | None:
        """See `KeyStore.key_by_kid`."""
        self._check_fresh()
        return self._state.keys.get(kid)

    def erasure_of(self, kid: str) -> str | None:
        """See `KeyStore.erasure_of`."""
        return self._state.erased.get(kid)

    def erasure(self, erasure_id: str) -> tuple[str, list[str]] | None:
        """See `KeyStore.erasure`."""
        return self._state.erasures.get(erasure_id)

    def kids_of(self, subject_hash: str) -> list[str]:
        """See `KeyStore.kids_of`."""
        return sorted(self._state.by_subject.get(subject_hash, ()))

    async def destroy(self, subject_hash: str, erasure_id: str) -> list[str]:
        """See `KeyStore.destroy`: the note first (so a reader names the erasure), then a
        tombstone per key, then a record that rolls the segment so compaction can drop them."""
        self._check_fresh()
        kids = self.kids_of(subject_hash)
        note = {"v": 1, "subject": subject_hash, "kids": kids, "erasure": erasure_id}
        await self._send(f"erased/{subject_hash}", note)
        self._state.erasures[erasure_id] = (subject_hash, kids)
        for kid in kids:
            await self._send(f"key/{subject_hash}/{kid}", None)
            self._state.keys.pop(kid, None)
            self._state.erased[kid] = erasure_id
        self._state.by_subject.pop(subject_hash, None)
        asyncio.get_running_loop().call_later(1.5, self._roll_soon)
        return kids

    def _roll_soon(self) -> None:
        # A segment rolls only when a record arrives after segment.ms: one more, a tombstone of
        # a key that holds nothing, makes the tombstones' segment eligible for compaction.
        task = asyncio.ensure_future(self.roll())
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def roll(self) -> None:
        """Append a record that holds nothing, so the broker rolls the active segment."""
        await self._send(ROLL_KEY.decode(), None)

    async def still_stored(self, subject_hash: str, kids: list[str]) -> bool:
        """Read the keys topic from its beginning with a fresh consumer: True while a record
        with a value (the wrapped key) of one of `kids` is still there. Compaction rewrites
        segments, so what a read from offset 0 returns is what the segments hold (the
        tombstones themselves stay for delete.retention.ms; they hold no key)."""
        wanted = {f"key/{subject_hash}/{kid}".encode() for kid in kids}
        consumer = AIOKafkaConsumer(
            **consumer_config(
                self._settings, topics=[self.topic], auto_offset_reset="earliest"
            ).to_aiokafka()
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=500)
                for record in batches.get(tp, []):
                    if record.key in wanted and record.value is not None:
                        return True
            return False
        finally:
            await consumer.stop()

    async def _send(self, key: str, body: dict[str, Any] | None) -> None:
        if self._producer is not None and self._producer_failed:
            await self._renew_producer()
        producer = self._producer
        if producer is None:
            raise KeyStoreUnavailableError("the erasure keys store is not started")
        value = None if body is None else json.dumps(body, sort_keys=True).encode()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(self.topic, value=value, key=key.encode()),
                timeout=self._fresh_s,
            )
        except (KafkaError, TimeoutError) as exc:
            # An idempotent producer whose write failed for good (the broker refused it) is
            # out of step on its sequence numbers: every later write would fail
            # (OutOfOrderSequenceNumber) until a restart. The next write uses a new one.
            self._producer_failed = True
            raise KeyStoreUnavailableError(
                f"the erasure keys topic {self.topic} did not take a key: {exc!r}; nothing is "
                "written unsealed"
            ) from None

    async def _renew_producer(self) -> None:
        async with self._renewing:
            if not self._producer_failed:
                return
            fresh = self._new_producer()
            try:
                await asyncio.wait_for(fresh.start(), timeout=self._fresh_s)
            except (KafkaError, TimeoutError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await fresh.stop()
                raise KeyStoreUnavailableError(
                    f"the erasure keys topic {self.topic} cannot be written: {exc!r}; nothing "
                    "is written unsealed"
                ) from None
            old, self._producer = self._producer, fresh
            self._producer_failed = False
            if old is not None:
                # A write of it still pending may land yet: a key the reader then learns, a
                # tombstone the erasure's retry (it answered 503) writes again anyway.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.stop(), timeout=1.0)


def _entry(value: bytes) -> dict[str, Any]:
    """A record's JSON object; empty for bytes that are none (anyone who may write the keys
    topic chooses them: JSON nested past the parser's limit included)."""
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _skip(name: str, what: str) -> None:
    # One such record must not stop the reading of those after it: a start that never ends
    # leaves the store stale and every write of the service refused.
    logger.error("erasure keys topic: the record %r is %s; skipped", name[:200], what)
