"""Which witnesses cosign the log of writers and how many must: RG_AUDIT_WITNESSES and
`verify --witness-policy FILE`, the JSON

    {"k": 1, "witnesses": [{"url": "http://host:port", "key": "<verifier key>"}]}

`url` is the prefix before `/add-checkpoint`, `key` the witness's cosignature verifier key
(app/integrity/witness.py reads it), `k` how many of them must cosign a checkpoint.
"""

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.integrity.witness import WitnessError, WitnessKey

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


class WitnessSetting(BaseModel):
    """One witness: where it answers and the key its cosignatures verify with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(description="the prefix before /add-checkpoint")]
    key: Annotated[str, Field(description="the witness's cosignature verifier key")]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _URL.fullmatch(value):
            raise ValueError(f"url is an http(s) URL without query: {value[:80]!r}")
        return value.rstrip("/")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        WitnessKey.parse(value)
        return value.strip()

    @property
    def verifier(self) -> WitnessKey:
        """The parsed key."""
        return WitnessKey.parse(self.key)


class WitnessPolicy(BaseModel):
    """RG_AUDIT_WITNESSES / `verify --witness-policy`: the witnesses and the quorum `k`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: Annotated[int, Field(ge=1)]
    witnesses: Annotated[list[WitnessSetting], Field(min_length=1, max_length=32)]

    @model_validator(mode="after")
    def _quorum(self) -> "WitnessPolicy":
        if self.k > len(self.witnesses):
            raise ValueError(f"k={self.k} is more than the {len(self.witnesses)} witnesses")
        names = [w.verifier.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise ValueError("two witnesses have the same key name")
        return self

    @classmethod
    def parse(cls, text: str) -> "WitnessPolicy":
        """Read the JSON policy; WitnessError naming what is wrong."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
                for e in exc.errors()
            )
            raise WitnessError(problems) from None

    def witness_keys(self) -> list[WitnessKey]:
        """The witnesses' keys."""
        return [w.verifier for w in self.witnesses]
