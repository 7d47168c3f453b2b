"""Keeps the service from writing audit records into a topic that would not keep them.

With a signing key the checkpoints topic goes through the same creation and check
(`AuditTopics`), so readiness covers both.

Once the producer is connected, the guard creates or checks the audit topic (`AuditTopic`),
retrying with backoff while that fails. Until it has succeeded `/readyz` says why (503
`audit_topic_unavailable`), and writes are refused too while Kafka answers: a record written
before the topic exists would have the broker auto-create it with its seven-day default. With
the broker away writes go on as before (503, or the spool), since nothing reaches the broker.

A noncompliant topic (`RG_AUDIT_TOPIC_CHECK=enforce`, the default) keeps `/readyz` and writes at
503 `audit_topic_noncompliant`: an audit record written into a topic that deletes it is a record
lost. The guard checks again every half minute, so fixing the topic's settings is enough, no
restart. `warn` logs the findings and serves; `off` neither creates nor checks anything.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from app.connection import ProducerConnection
from app.errors import AuditTopicNoncompliantError, AuditTopicUnavailableError
from app.ingest.audit_topic import AuditTopic, AuditTopicError, AuditTopics, Compliance
from app.settings import Settings
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

# How often a noncompliant topic is looked at again in enforce mode.
RECHECK_S = 30.0


class AuditTopicGuard:
    """Runs the create-or-check in the background and answers `problem()` for `/readyz` and
    the write routes."""

    def __init__(
        self,
        settings: Settings,
        connection: ProducerConnection,
        *,
        topic: AuditTopic | AuditTopics,
    ) -> None:
        self._settings = settings
        self._connection = connection
        self._topic = topic
        self._task = BackgroundTask("audit-topic", self._run)
        self._then: Sequence[Callable[[], None]] = ()
        self._error = "not checked yet"
        self.compliance: Compliance | None = None
        # Set after the first attempt, whatever its outcome: the lifespan waits that long.
        self.attempted = asyncio.Event()

    @property
    def mode(self) -> str:
        """RG_AUDIT_TOPIC_CHECK: enforce, warn or off."""
        return self._settings.audit_topic_check

    @property
    def compliant(self) -> bool:
        """True once the check found the topic compliant (the metric's 1)."""
        return self.compliance is not None and self.compliance.compliant

    async def start(self, *, then: Sequence[Callable[[], None]], wait_s: float) -> None:
        """Begin in the background; each of `then` runs once the topic exists (whatever its
        settings), for the clients that must not be first to ask for it. When Kafka answers
        already, wait up to `wait_s` for the first attempt, so the first request finds it done."""
        if self.mode == "off":
            self.attempted.set()
            for start in then:
                start()
            return
        self._then = then
        self._task.start()
        if self._connection.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.attempted.wait(), wait_s)

    async def close(self) -> None:
        """Stop checking."""
        await self._task.close()

    def problem(self) -> AuditTopicUnavailableError | AuditTopicNoncompliantError | None:
        """Why the service should not be ready now (the error to raise), or None."""
        if self.mode == "off":
            return None
        if self.compliance is None:
            return AuditTopicUnavailableError(
                f"audit topic {self._settings.audit_topic!r} not ready: {self._error}"
            )
        if self.compliance.compliant or self.mode == "warn":
            return None
        findings = self.compliance.findings
        return AuditTopicNoncompliantError(
            f"audit topic {self.compliance.topic!r} would not keep audit records: "
            + "; ".join(str(f) for f in findings),
            details=[f.as_detail() for f in findings],
        )

    def write_problem(self) -> AuditTopicUnavailableError | AuditTopicNoncompliantError | None:
        """Why writes are refused now, or None. While the producer is not connected nothing
        reaches the broker: writes fail or spool as they always have."""
        if not self._connection.connected:
            return None
        return self.problem()

    async def _run(self) -> None:
        backoff = Backoff(max_s=RECHECK_S)
        while not await self._connection.wait_connected(60.0):
            await backoff.wait()  # the connection logs its own retries
        backoff.reset()
        started = False
        while True:
            try:
                compliance = await self._topic.ensure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no permission, or Kafka not answering: try again
                self._error = str(exc) or type(exc).__name__
                level = logging.ERROR if isinstance(exc, AuditTopicError) else logging.WARNING
                logger.log(
                    level,
                    "audit topic %r not ready: %s; retrying in %.1fs",
                    self._topic.name,
                    self._error,
                    backoff.delay_s,
                )
            else:
                self._report(compliance)
                if not started:
                    started = True
                    for start in self._then:
                        start()
                if compliance.compliant or self.mode == "warn":
                    self.attempted.set()
                    return
                backoff = Backoff(initial_s=RECHECK_S, max_s=RECHECK_S)
            self.attempted.set()
            await backoff.wait()

    def _report(self, compliance: Compliance) -> None:
        before, self.compliance = self.compliance, compliance
        if compliance.created:
            logger.info(
                "created audit topic %r: %d partitions, replication %d",
                compliance.topic,
                compliance.partitions,
                compliance.replication,
            )
        if compliance.compliant:
            if before is not None or not compliance.created:
                logger.info("audit topic %r is compliant", compliance.topic)
            return
        if before is not None and before.findings == compliance.findings:
            return  # said already
        for finding in compliance.findings:
            if self.mode == "warn":
                logger.warning(
                    "audit topic %r is noncompliant, accepted by RG_AUDIT_TOPIC_CHECK=warn: %s",
                    compliance.topic,
                    finding,
                )
            else:
                logger.error(
                    "audit topic %r is noncompliant, the service is not ready and refuses "
                    "writes (RG_AUDIT_TOPIC_CHECK=enforce): %s",
                    compliance.topic,
                    finding,
                )
