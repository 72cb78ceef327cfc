"""points: freeze at K scheduling points of the golden run; check each image."""

from __future__ import annotations

from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.kinds.check import check_image
from vkckpt.regress.trial import CaseFailed, Trial


def run(t: Trial) -> None:
    """Freeze a fresh run at each chosen point and check the image against the golden run."""
    for at in t.freeze_points(t.case.points):
        live = t.boot(at)
        if live.status is not None:
            raise CaseFailed(f"the run ended before tick {at}")
        image = t.dir / f"at-{at}.img"
        write_image(live.k, str(image))
        t.log(f"{t.case.name}: frozen at tick {at}")
        check_image(t, image, live, f"freeze at {at}")
