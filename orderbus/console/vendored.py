"""The JavaScript the console serves, vendored from the npm registry (`npm pack htmx.org@2.0.11
htmx-ext-sse@2.2.4`, each package's dist/*.min.js) and never loaded from a CDN: a page works
offline, and a changed file fails tests/unit/test_console_vendored.py, which checks these
hashes. Both packages are 0BSD."""

from __future__ import annotations

VENDORED = {
    "htmx-2.0.11.min.js": "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
    "htmx-ext-sse-2.2.4.min.js": "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136",
}
