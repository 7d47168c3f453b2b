"""The OpenAPI document's pure transforms, as committed in `openapi.json`.

`ractogateway-kafka openapi --output openapi.json` writes it (`app.main.openapi_document()`
builds it); a test fails when the file and the app disagree, so the document clients generate
code from is never stale.
"""

import json
from typing import Any


def without_null_parameters(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every parameter's `anyOf [<schema>, {"type": "null"}]` (FastAPI's form
    of an optional parameter) made `<schema>`: a query or header value is absent or a string on
    the wire, never null, so a nullable schema only misleads generated clients and fuzzers."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
                if len(branches) == 1 and len(schema["anyOf"]) == 2:
                    rest = {k: v for k, v in schema.items() if k != "anyOf"}
                    parameter["schema"] = {**branches[0], **rest}
    return document


def render(document: dict[str, Any]) -> str:
    """The document as committed: indented JSON with a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
