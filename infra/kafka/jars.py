"""Kafka's jars, fetched from Maven Central by Maven once, then used offline from a cache."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from infra.layout import Layout
from infra.procs import InfraError

POM = Path(__file__).with_name("pom.xml")
COMPLETE = ".complete"


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(
            f"`{name}` is not on PATH; install it (Debian: apt-get install {package}) and run the "
            "command again"
        )
    return path


def ensure_jars(layout: Layout, log: Callable[[str], object] = print) -> Path:
    """Return the directory of Kafka's runtime jars, downloading them on first use."""
    lib = layout.kafka_lib
    if (lib / COMPLETE).exists():
        return lib
    require_tool("java", "openjdk-17-jre-headless")
    mvn = require_tool("mvn", "maven")
    lib.parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching Kafka jars from Maven Central into {lib} (first use only)")
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        out = Path(tmp) / "lib"
        proc = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={out}",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise InfraError(
                "Maven could not fetch the Kafka jars (is Maven Central reachable? "
                f"is ~/.m2/settings.xml right?). Maven said:\n{tail}"
            )
        (out / COMPLETE).write_text("")
        if lib.exists():
            shutil.rmtree(lib)
        out.rename(lib)
    return lib
