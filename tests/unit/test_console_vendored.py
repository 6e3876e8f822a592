"""The console's JavaScript is the npm registry's, byte for byte, and the pages load exactly
those files from the console itself."""

from __future__ import annotations

import hashlib
import re

from orderbus.console.render import HERE
from orderbus.console.vendored import VENDORED


def test_each_vendored_file_has_its_recorded_hash():
    found = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (HERE / "static").glob("*.js")
    }
    assert found == VENDORED


def test_pages_load_only_the_vendored_scripts_from_the_console():
    scripts = set()
    for template in (HERE / "templates").rglob("*.html"):
        scripts |= set(re.findall(r'<script[^>]*src="([^"]+)"', template.read_text()))
        assert "<script>" not in template.read_text(), (
            f"{template.name}: an inline script (CSP refuses it)"
        )
    assert scripts == {f"/static/{name}" for name in VENDORED}
