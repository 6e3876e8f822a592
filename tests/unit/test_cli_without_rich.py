"""rich is an extra (`pip install 'orderbus[top]'`): without it every command but `top` works, and
`top` says what to install."""

from __future__ import annotations

import subprocess
import sys

# `sys.modules['rich'] = None` makes every `import rich...` fail as if it were not installed
WITHOUT_RICH = """
import sys
sys.modules["rich"] = None
from orderbus.commands import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def orderbus_without_rich(*args: str, tmp_path) -> subprocess.CompletedProcess:
    # an empty home: nothing here may need a cluster, its state or its secrets
    env = {"ORDERBUS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_line_works_without_rich(tmp_path):
    done = orderbus_without_rich("--help", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "top" in done.stdout and "stuck" in done.stdout


def test_top_without_rich_names_the_install_command(tmp_path):
    done = orderbus_without_rich("top", "--once", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'orderbus[top]'" in done.stderr
    assert "Traceback" not in done.stderr
