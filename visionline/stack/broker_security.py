"""The local stack's broker in secure mode (``VISIONLINE_STACK_BROKER_SECURITY=sasl_ssl``):
its TLS material, the principals' passwords, and the SCRAM users and ACLs it is provisioned
with. Everything lives in ``<state>/kafka/security`` (mode 0700) and is made once per state
folder; nothing here is committed.

- ``tls_material``: a local CA and the broker's certificate (for the stack's host, 127.0.0.1
  and localhost), made with ``openssl``; PEM, as ``ssl.keystore.type=PEM`` reads them.
- ``Credentials``: a random password per principal (``visionline.kafka_acls.principals()``
  and the admin), kept in ``credentials.json`` (0600).
- ``provision``: as the admin, every principal's SCRAM-SHA-512 credential and its ACLs
  (``visionline.kafka_acls``). Idempotent: run at every start of the stack.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from visionline.kafka_acls import ADMIN_PRINCIPAL, Acl, all_acls, principals
from visionline.stack.kafka_server import SCRAM_MECHANISM, BrokerSecurity

SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096


@dataclass(frozen=True)
class SecurityFiles:
    root: Path  # <state>/kafka/security

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def keystore(self) -> Path:
        return self.root / "broker-keystore.pem"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-1000:]}")


def tls_material(files: SecurityFiles, host: str, days: int = 825) -> None:
    """The CA (``ca.pem``, ``ca.key``) and the broker's keystore (its key, certificate and the
    CA's), made once: the certificate names ``host``, 127.0.0.1 and localhost."""
    if files.keystore.exists() and files.ca_file.exists():
        return
    files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    subject = "/O=visionline/CN=visionline local CA"
    with tempfile.TemporaryDirectory(dir=files.root) as tmp:
        _make_ca(files, subject, days)
        _make_broker_cert(files, Path(tmp), host, days)


def _make_ca(files: SecurityFiles, subject: str, days: int) -> None:
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days), "-subj", subject),
        *("-keyout", str(files.ca_key), "-out", str(files.ca_file)),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )


def subject_alt_names(host: str) -> str:
    """The certificate's names: ``host`` (an address or a DNS name), 127.0.0.1, localhost."""
    try:
        own = f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        own = f"DNS:{host}"
    return ",".join(sorted({"IP:127.0.0.1", "DNS:localhost", own}))


def _make_broker_cert(files: SecurityFiles, work: Path, host: str, days: int) -> None:
    key, csr, cert, ext = (work / n for n in ("broker.key", "broker.csr", "broker.pem", "ext"))
    ext.write_text(
        f"subjectAltName={subject_alt_names(host)}\n"
        "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/O=visionline/CN={host}"),
        *("-keyout", str(key), "-out", str(csr)),
    )
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(files.ca_file)),
        *("-CAkey", str(files.ca_key), "-CAcreateserial", "-days", str(days)),
        *("-extfile", str(ext), "-out", str(cert)),
    )
    pem = key.read_text() + cert.read_text() + files.ca_file.read_text()
    _write_private(files.keystore, pem)


def _write_private(path: Path, text: str) -> None:
    """``text`` in ``path``, readable by its owner only from the first byte on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


class Credentials:
    """Every principal's password, made at the first start and kept in ``credentials.json``."""

    def __init__(self, files: SecurityFiles) -> None:
        self.files = files
        path = files.credentials
        self.passwords: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted = (ADMIN_PRINCIPAL, *principals())
        missing = [name for name in wanted if name not in self.passwords]
        if missing:
            self.passwords |= {name: secrets.token_urlsafe(24) for name in missing}
            files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(path, json.dumps(self.passwords, indent=1))

    def password(self, principal: str) -> str:
        return self.passwords[principal]

    def broker(self) -> BrokerSecurity:
        return BrokerSecurity(
            ADMIN_PRINCIPAL, self.password(ADMIN_PRINCIPAL), self.files.keystore, self.files.ca_file
        )


def client_config(files: SecurityFiles, user: str, password: str) -> dict[str, str]:
    """librdkafka settings of a client that logs in as ``user``: what a process given
    ``client_env`` makes (``visionline.kafka.security_config``)."""
    from visionline.kafka import security_config
    from visionline.settings import CommonSettings

    env = client_env(files, user, password)
    fields = {name.removeprefix("VISIONLINE_").lower(): value for name, value in env.items()}
    return security_config(CommonSettings.model_validate(fields))


def client_env(files: SecurityFiles, user: str, password: str) -> dict[str, str]:
    """The ``VISIONLINE_KAFKA_*`` variables of a process that logs in as ``user``."""
    return {
        "VISIONLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VISIONLINE_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "VISIONLINE_KAFKA_USERNAME": user,
        "VISIONLINE_KAFKA_PASSWORD": password,
        "VISIONLINE_KAFKA_CA_FILE": str(files.ca_file),
    }


def acl_binding(acl: Acl) -> Any:
    from confluent_kafka.admin import AclBinding

    return AclBinding(acl.resource, acl.name, acl.pattern, acl.user, "*", acl.operation, "ALLOW")


def provision(bootstrap: str, admin: dict[str, str], passwords: dict[str, str]) -> None:
    """As the admin (``admin``: its librdkafka settings): a SCRAM credential for each of
    ``passwords`` (set again: a rotated password takes effect) and every principal's ACLs."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    client = AdminClient({"bootstrap.servers": bootstrap, **admin})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in passwords.items()
    ]
    for future in client.alter_user_scram_credentials(upserts).values():
        future.result(30)
    for future in client.create_acls([acl_binding(acl) for acl in all_acls()]).values():
        future.result(30)


def files_of(state_dir: Path) -> SecurityFiles:
    return SecurityFiles(state_dir / "kafka" / "security")


def secure_components(specs: list[Any], settings: Any, paths: Any) -> None:
    """The local stack in secure mode (``StackSettings.broker_security="sasl_ssl"``): its
    Apache Kafka formatted and started with ``BrokerSecurity``, health-checked and provisioned
    (users, ACLs, topics) as the admin, and each worker logged in as its own principal (the
    service its group is named after; the camera simulators as ``camera`` and ``lines``).
    ``specs``: the stack's ``ComponentSpec``s, changed in place."""
    if settings.kafka_bootstrap:
        raise ValueError("broker_security=sasl_ssl secures the stack's own Apache Kafka only")
    from visionline.stack import health

    files, bootstrap = files_of(paths.root), settings.endpoints().kafka_bootstrap
    credentials = Credentials(files)
    admin: dict[str, Any] = client_config(
        files, ADMIN_PRINCIPAL, credentials.password(ADMIN_PRINCIPAL)
    )
    for spec in specs:
        if spec.name == "broker":
            spec.prepare = partial(_prepare, spec.prepare, files, settings.host, credentials)
            spec.check = partial(health.kafka_metadata, bootstrap, **admin)
            spec.provision = partial(
                _provision, bootstrap, settings.topic_partitions, admin, credentials
            )
        elif spec.kind == "worker" and spec.group in credentials.passwords:
            own = client_env(files, spec.group, credentials.password(spec.group))
            spec.env = {**spec.env, **own}


def _prepare(prepare: Any, files: SecurityFiles, host: str, credentials: Credentials) -> None:
    tls_material(files, host)
    prepare(security=credentials.broker())


def _provision(
    bootstrap: str, partitions: int, admin: dict[str, Any], credentials: Credentials
) -> None:
    from visionline.kafka import create_topics

    provision(bootstrap, admin, credentials.passwords)
    create_topics(bootstrap, partitions, **admin)
