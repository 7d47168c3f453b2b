"""The OpenAI-compatible recording proxy behind `/openai/v1/...` (docs/proxy.md).

- `assembly`: what a call said (its request, its answer plain or streamed) as the fields of one
  audit event of record schema version 2;
- `upstream`: the pooled HTTP client to `RG_OPENAI_UPSTREAM_URL` and the headers that cross;
- `recorder`: writing the event through the audit trail, fail-closed or fail-open, and the
  receipt the answer carries in its headers.
"""
