"""Every ORDERBUS_* variable is declared once (infra/variables.py): the README's Configuration
table is the declarations' table, every variable the code, the Makefile, CI and the README name is
declared, and a wrong value is refused by its name, with the default taken when it is empty."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import variables as var
from infra.variables import SettingsError

ROOT = Path(__file__).resolve().parents[2]
# a name, or a family's written with its placeholder cut off (`f"ORDERBUS_DSN_{service.upper()}"`)
MENTIONED = re.compile(r"ORDERBUS_[A-Z0-9_]*")


def readme_table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration (environment)\n", 1)[1]
    lines = section.lstrip("\n").splitlines()
    return (
        "\n".join(
            line for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith("|"))]
        )
        + "\n"
    )


def test_the_readmes_table_is_the_declarations_table():
    assert readme_table() == var.table(), (
        "README Configuration differs from infra/variables.table():\n" + var.table()
    )


def declared(name: str) -> bool:
    patterns = [re.sub(r"<[A-Z]+>", "[A-Z]+", v.name) for v in var.VARIABLES]
    return any(re.fullmatch(p, name) for p in patterns) or any(
        v.family == name for v in var.VARIABLES if "<" in v.name
    )


def test_every_variable_named_anywhere_is_declared():
    sources = [
        p
        for pkg in ("orderbus", "workers", "topics", "schemas", "infra")
        for p in (ROOT / pkg).rglob("*.py")
    ]
    sources += [
        ROOT / "Makefile",
        ROOT / "README.md",
        *(ROOT / ".ci").iterdir(),
        *(ROOT / "infra").rglob("*.sh"),
    ]
    named = {
        (m, p.relative_to(ROOT))
        for p in sources
        if p.is_file()
        for m in MENTIONED.findall(p.read_text())
    }
    # families are written with their placeholder cut off (`ORDERBUS_DSN_`,
    # `ORDERBUS_KAFKA_PASSWORD_`)
    unknown = sorted(
        (n, str(p))
        for n, p in named
        if not declared(n)
        and not any(
            v.name.startswith(n + "_<") or v.name.startswith(n + "<") for v in var.VARIABLES
        )
        and not n.endswith("_")
    )
    assert unknown == []


@pytest.mark.parametrize(
    "variable, raw, says",
    [
        (var.DEADLINE_MS, "0", "ORDERBUS_DEADLINE_MS=0 must be positive"),
        (var.DEADLINE_MS, "soon", "ORDERBUS_DEADLINE_MS='soon' is not an integer"),
        (var.INTAKE_MAX_BACKLOG, "-1", "ORDERBUS_INTAKE_MAX_BACKLOG=-1 must be 0 or more"),
        (
            var.KAFKA_PORT,
            "50000",
            "ORDERBUS_KAFKA_PORT=50000 must be a port leaving room for three nodes",
        ),
        (
            var.TRACKER_RETAIN_S,
            "0",
            "ORDERBUS_TRACKER_RETAIN_S='0' must be a positive number of seconds",
        ),
        (
            var.LOG_LEVEL,
            "loud",
            "ORDERBUS_LOG_LEVEL='LOUD': one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (var.TOPIC_PREFIX, "a b", "ORDERBUS_TOPIC_PREFIX='a b' may hold only letters"),
        (var.KAFKA_HEAP, "lots", "ORDERBUS_KAFKA_HEAP='lots' is not a JVM heap size"),
    ],
)
def test_a_wrong_value_is_refused_by_its_name(variable, raw, says):
    with pytest.raises(SettingsError) as info:
        variable.get({variable.name: raw})
    assert str(info.value).startswith(says)


def test_an_empty_or_missing_variable_takes_its_default_or_the_callers():
    assert var.DEADLINE_MS.get({}) == var.DEADLINE_MS.get({"ORDERBUS_DEADLINE_MS": ""}) == 10_000
    assert (
        var.PARTITIONS.get({}, 6) == 6 and var.PARTITIONS.get({"ORDERBUS_PARTITIONS": "2"}, 6) == 2
    )
    assert var.LOG_LEVEL.get({"ORDERBUS_LOG_LEVEL": "debug"}) == "DEBUG"
    assert var.KAFKA_PASSWORD_FILE.of("INTAKE") == "ORDERBUS_KAFKA_PASSWORD_INTAKE_FILE"
