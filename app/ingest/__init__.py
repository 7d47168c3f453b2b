"""The write path: audit events and published records from the API to Kafka.

`audit_trail` decides what happens to an audit event (sent and acknowledged, spooled, refused)
and `audit_batch` to a batch of them, each answered with a receipt (`receipts`); `publisher` with
its `topic_policy` does the same for `POST /publish`; `idempotency` keeps retries from writing
twice, `backpressure` bounds what requests in progress hold, `spool` keeps audit records on disk
while Kafka is away and `forwarder` sends them on; `audit_topic` and its guard make sure the audit
topic exists and keeps its records.
"""
