"""fixture: an image of an older format version (tests/data) thaws and ends as recorded."""

from __future__ import annotations

from pathlib import Path

import yaml

from vkckpt.regress.trial import Trial
from vkckpt.testing.outcome import Outcome


def run(t: Trial) -> None:
    """Thaw case.image in a fresh process; compare with IMAGE.expected.yaml."""
    image = Path(t.case.image)
    want = yaml.safe_load(image.with_name(f"{image.stem}.expected.yaml").read_text())
    end = t.child(image, root=t.root.path, limit=2 * want["ticks"] + 100_000)
    exp = Outcome(want["output"].encode(), b"", want["status"], want["ticks"],
                  {int(a): int(b) for a, b in want["statuses"].items()})
    for d in end.diffs(exp):
        t.fail(f"format {want.get('format')} image {image.name}: {d}")
    t.points = 1
