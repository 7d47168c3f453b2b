"""The OpenAPI document of the service, as committed in `openapi.json`.

`ractogateway-kafka openapi --output openapi.json` writes it; a test fails when the file and
the app disagree, so the document clients generate code from is never stale.
"""

import json
from typing import Any

from app.settings import Settings


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (it does not depend on the settings' values)."""
    from app.main import create_app  # noqa: PLC0415 - keeps `import app.api.openapi` light

    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return document


def render(document: dict[str, Any]) -> str:
    """The document as committed: indented JSON with a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
