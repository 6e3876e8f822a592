"""Every ORDERBUS_* environment variable, declared once: its name, how its text is read (and the
error that names it when the text is wrong), its default, and what it means. The settings
(workers/runtime/settings.py), the local cluster and the command line read them through here;
the README's Configuration table is `table()` (tests/unit/test_variables.py holds them equal)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# what Kafka accepts in topic, group and group.instance.id names
NAME_CHARS = "A-Za-z0-9._-"
NAME = re.compile(f"[{NAME_CHARS}]+")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECURITY = ("sasl_ssl", "plaintext")


class SettingsError(ValueError):
    pass


Reader = Callable[[str, str], Any]  # (variable name, its text) -> value, or SettingsError


def text(name: str, raw: str) -> str:
    return raw


def integer(low: int | None = None, high: int | None = None, what: str = "") -> Reader:
    """An integer, within [low, high] where given; `what` names the bound in the error."""

    def read(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise SettingsError(f"{name}={value} must be {what}")
        return value

    return read


def seconds(zero_ok: bool) -> Reader:
    def read(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not (value >= 0 if zero_ok else value > 0):  # NaN fails both
            raise SettingsError(
                f"{name}={raw!r} must be a {'non-negative' if zero_ok else 'positive'} number of "
                "seconds"
            )
        return value

    return read


def one_of(choices: tuple[str, ...], upper: bool = False) -> Reader:
    def read(name: str, raw: str) -> str:
        value = raw.upper() if upper else raw
        if value not in choices:
            raise SettingsError(f"{name}={value!r}: one of {', '.join(choices)}")
        return value

    return read


def kafka_name(name: str, raw: str) -> str:
    if not NAME.fullmatch(raw):
        raise SettingsError(f"{name}={raw!r} may hold only letters, digits, '.', '_' and '-'")
    return raw


def heap(name: str, raw: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", raw):
        raise SettingsError(f"{name}={raw!r} is not a JVM heap size such as 512m or 2g")
    return raw


@dataclass(frozen=True)
class Variable:
    """One variable, or a family of them (`ORDERBUS_KAFKA_PASSWORD_<P>`: `of("INTAKE")` names
    one). `default` is the value when it is unset or empty, where that is fixed; a reader whose
    default depends on the cluster (`up`'s record of it) passes its own to `get`. `shown` is the
    default as the README states it, `meaning` what the README says of it."""

    name: str
    shown: str
    meaning: str
    read: Reader = text
    default: Any = None
    label: str = ""  # the README's first cell, when it is not just the name

    def get(self, env: Mapping[str, str], default: Any = None) -> Any:
        raw = env.get(self.name)
        if raw is None or raw == "":
            return self.default if default is None else default
        return self.read(self.name, raw)

    @property
    def family(self) -> str:
        """What every member's name starts with: the name up to its first placeholder."""
        return self.name.split("<", 1)[0]

    def of(self, *parts: str) -> str:
        """The name of one member of a family: the <...> placeholder replaced by `parts`."""
        name = self.name
        for part in parts:
            name = re.sub(r"<[A-Z]+>", part, name, count=1)
        return name


HOME = Variable(
    "ORDERBUS_HOME",
    "`./.orderbus`",
    "data, logs, pid files and generated secrets of the local services",
    default=".orderbus",
)
KAFKA_BOOTSTRAP = Variable(
    "ORDERBUS_KAFKA_BOOTSTRAP", "the local cluster", "bootstrap servers of any Kafka cluster"
)
DSN = Variable(
    "ORDERBUS_DSN_<D>",
    "the local instance",
    "one libpq DSN per service",
    label="`ORDERBUS_DSN_ORDERS`, `_COORDINATOR`, `_INVENTORY`, `_PAYMENTS`, `_SHIPPING`",
)
KAFKA_SECURITY = Variable(
    "ORDERBUS_KAFKA_SECURITY",
    "as `up` made the local cluster, else `sasl_ssl`",
    "`sasl_ssl` (SASL/SCRAM-SHA-512 over TLS) or `plaintext`",
    read=one_of(SECURITY),
)
KAFKA_CA = Variable(
    "ORDERBUS_KAFKA_CA",
    "`$ORDERBUS_HOME/kafka/tls/ca.pem`",
    "PEM file the brokers' certificates are verified against",
)
KAFKA_PASSWORD = Variable(
    "ORDERBUS_KAFKA_PASSWORD_<P>",
    "the password `up` generated under `$ORDERBUS_HOME/secrets`",
    "SCRAM password of principal *P* (`INTAKE`, `COORDINATOR`, `INVENTORY`, `PAYMENT`, `SHIPPING`, "
    "`STATUS`, `TRACKER`, `LAG`, `PRODUCER`, `ADMIN`); the user name is the principal's, lower "
    "case, as the ACLs name it",
    label="`ORDERBUS_KAFKA_PASSWORD_<P>` or `ORDERBUS_KAFKA_PASSWORD_<P>_FILE`",
)
# in KAFKA_PASSWORD's row
KAFKA_PASSWORD_FILE = Variable("ORDERBUS_KAFKA_PASSWORD_<P>_FILE", "", "", label="-")
SIGNING_KEY_FILE = Variable(
    "ORDERBUS_SIGNING_KEY_<S>_FILE",
    "the key `up` generated, `$ORDERBUS_HOME/secrets/signing-<s>.key`",
    "file holding the keys of service *S* (`INTAKE`, `COORDINATOR`, `INVENTORY`, `PAYMENT`, "
    "`SHIPPING`), one per line, newest first: it signs its events on the signed topics with the "
    "first; a service needs its own file, every reader every service's (see Security)",
)
KAFKA_PORT = Variable(
    "ORDERBUS_KAFKA_PORT",
    "`10092`",
    "local node *n* listens on `PORT + (n-1)*10000`, its controller one above (kept below the "
    "ephemeral port range, see `infra/layout.py`)",
    read=integer(1, 65535 - 20001, "a port leaving room for three nodes"),
    default=10092,
)
PG_PORT = Variable(
    "ORDERBUS_PG_PORT",
    "`15432`",
    "local PostgreSQL port",
    read=integer(1, 65535, "a port"),
    default=15432,
)
DEADLINE_MS = Variable(
    "ORDERBUS_DEADLINE_MS",
    "`10000`",
    "how long the coordinator waits for votes before aborting",
    read=integer(1, what="positive"),
    default=10_000,
)
INTAKE_MAX_BACKLOG = Variable(
    "ORDERBUS_INTAKE_MAX_BACKLOG",
    "`5000`",
    "records inventory, payment or the coordinator may be behind on their input before intake "
    "holds new orders (back-pressure, see Delivery); `0` never holds",
    read=integer(0, what="0 or more"),
    # about 2 s of the coordinator's work at 400 orders/s, 6 s of a participant's
    default=5_000,
)
METRICS_PORT = Variable(
    "ORDERBUS_METRICS_PORT",
    "`9400`",
    "first worker's Prometheus port (the next ones count up); `0` turns it off",
    read=integer(0, 65535, "a port, or 0"),
    default=9400,
)
PARTITIONS = Variable(
    "ORDERBUS_PARTITIONS",
    "as `up` made the local cluster (`1` for a new one; `6` for one made before this setting)",
    "partitions of every topic: `up` makes them so, and a worker refuses to start on a topic with "
    "another count (every record would be misplaced). A group spreads over at most that many "
    "instances; on one small host one partition is fastest (Performance). A topic's count never "
    "changes: choose it for the most instances you will run",
    read=integer(1, what="positive"),
)
TOPIC_PREFIX = Variable(
    "ORDERBUS_TOPIC_PREFIX",
    "empty",
    "prefix of every topic and group name (used by tests and `bench`)",
    read=kafka_name,
    default="",
)
HOST_ID = Variable(
    "ORDERBUS_HOST_ID",
    "the host name",
    "this host's part of its worker instances' ids (letters, digits, `.`, `_`, `-`); see On "
    "several machines",
    read=kafka_name,
)
CRASH = Variable(
    "ORDERBUS_CRASH",
    "empty",
    "fault injection: `worker:point:probability[,…]`, see `workers/runtime/crash.py`",
    default="",
)
LOG_LEVEL = Variable(
    "ORDERBUS_LOG_LEVEL",
    "`INFO`",
    "level of the workers' and the tracker's logs (`DEBUG`, `INFO`, `WARNING`, `ERROR`, "
    "`CRITICAL`)",
    read=one_of(LOG_LEVELS, upper=True),
    default="INFO",
)
KAFKA_HEAP = Variable(
    "ORDERBUS_KAFKA_HEAP", "`512m`", "heap of each local broker", read=heap, default="512m"
)
KAFKA_NICE = Variable(
    "ORDERBUS_KAFKA_NICE",
    "`-10` where `up` may raise priority, else `0`",
    "CPU priority (niceness, -20..19) of each local broker, see Chaos",
    read=integer(-20, 19, "a niceness from -20 to 19"),
)
TRACKER_GRACE_S = Variable(
    "ORDERBUS_TRACKER_GRACE_S",
    "`5`",
    "how far past its deadline the tracker counts an order as stuck",
    read=seconds(zero_ok=True),
    default=5.0,
)
TRACKER_RETAIN_S = Variable(
    "ORDERBUS_TRACKER_RETAIN_S",
    "`120`",
    "how far the tracker reads past a finished order's last event before it drops the order",
    # a finished order (or a fragment, never judged stuck) leaves the tracker's table once it has
    # read this far past its last event on all three topics: its memory follows the rate, not
    # the history
    read=seconds(zero_ok=False),
    default=120.0,
)
PROMETHEUS_URL = Variable(
    "ORDERBUS_PROMETHEUS_URL",
    "none",
    "the Prometheus the console reads firing alerts from (`orderbus console --prometheus`)",
)

VARIABLES = (
    HOME,
    KAFKA_BOOTSTRAP,
    DSN,
    KAFKA_SECURITY,
    KAFKA_CA,
    KAFKA_PASSWORD,
    KAFKA_PASSWORD_FILE,
    SIGNING_KEY_FILE,
    KAFKA_PORT,
    PG_PORT,
    DEADLINE_MS,
    INTAKE_MAX_BACKLOG,
    METRICS_PORT,
    PARTITIONS,
    TOPIC_PREFIX,
    HOST_ID,
    CRASH,
    LOG_LEVEL,
    KAFKA_HEAP,
    KAFKA_NICE,
    TRACKER_GRACE_S,
    TRACKER_RETAIN_S,
    PROMETHEUS_URL,
)


def table() -> str:
    """The README's Configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for v in VARIABLES:
        if v.label != "-":
            rows.append(f"| {v.label or f'`{v.name}`'} | {v.shown} | {v.meaning} |")
    return "\n".join(rows) + "\n"
