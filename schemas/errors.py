"""Exceptions of the schemas package, grouped by how the caller reacts.

Every class here is a ``DeadLetter``: the message can never succeed, however often it is retried,
so the worker sends the original bytes to the dead-letter topic with ``reason`` and ``detail`` in
the headers and moves on.  Transient and fatal faults belong to the runtime, not to decoding.
"""

from __future__ import annotations


class DeadLetter(Exception):
    """A message that can never be processed; ``reason`` is a short machine code."""

    reason: str = "dead_letter"

    MAX_DETAIL = 300  # it travels in a dead-letter header: a sentence, not the payload

    def __init__(self, detail: str) -> None:
        detail = detail if len(detail) <= self.MAX_DETAIL else detail[: self.MAX_DETAIL - 1] + "…"
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class UndecodableError(DeadLetter):
    """The bytes are not a single well-formed, reasonably sized JSON object."""

    reason = "undecodable"


class UnknownEventError(DeadLetter):
    """No event type, or one this code does not know."""

    reason = "unknown_event"


class UnknownVersionError(DeadLetter):
    """A known event type in a version with no schema (or no upgrade path)."""

    reason = "unknown_version"


class SchemaViolationError(DeadLetter):
    """The JSON object fails the JSON Schema of its type and version."""

    reason = "schema_violation"


class RuleViolationError(DeadLetter):
    """Valid against the schema, but breaks an input rule a schema cannot express."""

    reason = "rule_violation"


def reasons() -> list[str]:
    """The reason of every DeadLetter class defined so far, sorted: those of the modules imported
    by now (a worker asks once its handler is built, so the classes of its own modules count)."""
    found, todo = set(), DeadLetter.__subclasses__()
    while todo:
        cls = todo.pop()
        found.add(cls.reason)
        todo += cls.__subclasses__()
    return sorted(found)
