"""A trail for evidence-bundle tests: a real service run on the session broker that writes
PER_USER records of each of USERS, signed, and the key files of its signing key."""

import asyncio
import os
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.main import create_app
from app.settings import Settings

ORIGIN = "ractogateway-kafka/bundle-tests"
USERS = [f"user-{i}" for i in range(4)]
PER_USER = 5


def trail_env(bootstrap: str, topic: str, private: Path) -> dict[str, str]:
    """The environment of a console script that reads the trail as its service would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    return env | {
        "RG_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RG_AUDIT_TOPIC": topic,
        "RG_AUDIT_SIGNING_KEY_FILE": str(private),
        "RG_AUDIT_LOG_ORIGIN": ORIGIN,
    }


def pem_files(folder: Path) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A signing key as `keys generate` writes one (owner-only), and its public key."""
    key = Ed25519PrivateKey.generate()
    private, public = folder / "signing.key.pem", folder / "signing.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(private, 0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


async def service_run(bootstrap: str, topic: str, key: Path) -> None:
    """The service writes PER_USER records of each user and waits until a checkpoint covers
    them all (their proofs are served); its shutdown writes the last checkpoint and stop."""
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers=[bootstrap],
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_checkpoint_s=0.2,
        audit_writers_s=0.2,
        audit_log_origin=ORIGIN,
    )
    async with LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=60) as m:
        transport = httpx.ASGITransport(app=m.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            receipts = []
            for i in range(PER_USER):
                for user in USERS:
                    event = {"user_id": user, "model": "m", "prompt": f"p{i}", "response": "r"}
                    answer = await client.post("/audit", json=event)
                    assert answer.status_code == 201, answer.text
                    receipts.append(answer.json())
            last = receipts[-1]
            for _ in range(300):
                answer = await client.get(
                    "/audit/proof", params={"writer": last["writer"], "seq": last["seq"]}
                )
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200, answer.text
