"""Who may do what on the broker: one SCRAM principal per service and per kind of camera, and
the ACLs each gets, derived from the service table (``visionline/services_table.py``).

A service reads the topics it consumes, writes (and reads back, for the outbox's read-back
after a restart) the topics it produces and the dead-letter topic, and owns the consumer
groups named after it (``visionline-<service>``, Faust's app id, and ``visionline-<service>-*``
for its own readers). A camera writes the raw-frames topic and nothing else. Anything not
granted is refused (``allow.everyone.if.no.acl.found=false``); the admin principal is a super
user. Pure: ``visionline.stack.broker_security`` applies the table with an AdminClient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from visionline.messages import Topic
from visionline.services_table import SERVICES, ServiceSpec, service

ADMIN_PRINCIPAL = "admin"  # the super user: the broker itself, topic and user provisioning
# Principals that are not services: what each may write. ``lines`` (the conveyor-line
# simulator) also plays the labeller when it sends late labels.
CLIENT_PRINCIPALS: dict[str, tuple[Topic, ...]] = {
    "camera": (Topic.RAW_FRAMES,),
    "lines": (Topic.RAW_FRAMES, Topic.LABELS_FEEDBACK),
}
GROUP_PREFIX = "visionline-"

Operation = Literal["READ", "WRITE", "DESCRIBE"]


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``User:<principal>`` may ``operation`` the resource from any host."""

    principal: str
    resource: Literal["TOPIC", "GROUP"]
    name: str
    pattern: Literal["LITERAL", "PREFIXED"]
    operation: Operation

    @property
    def user(self) -> str:
        return f"User:{self.principal}"


def _topic(principal: str, topic: Topic, *operations: Operation) -> list[Acl]:
    return [Acl(principal, "TOPIC", str(topic), "LITERAL", op) for op in operations]


def service_acls(spec: ServiceSpec) -> tuple[Acl, ...]:
    """What ``spec`` may do: read what it consumes, write what it produces (and read it back),
    write dead letters, and use its own consumer groups."""
    name = spec.name
    acls: list[Acl] = []
    for topic in spec.consumes:
        acls += _topic(name, topic, "READ", "DESCRIBE")
    for topic in (*spec.produces, Topic.DEAD_LETTER):
        acls += _topic(name, topic, "WRITE", "READ", "DESCRIBE")
    group = f"{GROUP_PREFIX}{name}"
    acls += [
        Acl(name, "GROUP", group, "LITERAL", "READ"),
        Acl(name, "GROUP", f"{group}-", "PREFIXED", "READ"),
    ]
    return tuple(sorted(set(acls)))


def acls_for(principal: str) -> tuple[Acl, ...]:
    """The ACLs of a principal: a service of the table or one of ``CLIENT_PRINCIPALS``
    (KeyError for any other; the admin needs none)."""
    if principal in CLIENT_PRINCIPALS:
        writes = CLIENT_PRINCIPALS[principal]
        return tuple(sorted({a for t in writes for a in _topic(principal, t, "WRITE", "DESCRIBE")}))
    return service_acls(service(principal))


def principals() -> tuple[str, ...]:
    """Every principal but the admin: the services in start order, then the cameras."""
    return (*(s.name for s in SERVICES), *CLIENT_PRINCIPALS)


def all_acls() -> tuple[Acl, ...]:
    return tuple(acl for name in principals() for acl in acls_for(name))
