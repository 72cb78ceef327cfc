"""Crafted epoll and eventfd state in an image is refused with one ImageError: the epolls
guest frozen while an epoll holds items is the seed; each mutation makes a state no live
epoll could be in (the seed itself thaws, so the refusals are the mutations')."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.errors import ImageError
from vkckpt.fs.epoll import Epoll
from vkckpt.guests import build
from vkckpt.kernel import VKernel
from vkckpt.testing.hostile_images import load_records, write_records
from vkckpt.testing.oracle import image_at, points_where
from vkckpt.testing.workload import Workload


def _epoll_with_items(k: VKernel) -> bool:
    return any(isinstance(f, Epoll) and len(f.items) >= 2
               for p in k.procs.values() if not p.zombie for f, _ in p.fds.fds.values())


WL = Workload("epolls", ("work",), quantum=997)


def _root(base: Path, n: int) -> Path:
    root = base / f"r{n}"
    (root / "work").mkdir(parents=True)
    shutil.copy2(build.guest_path("epolls"), root / "epolls")
    return root


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> tuple[Path, Path, list]:
    """(image, root, records) of epolls frozen at its first point with a 2-item epoll."""
    base = tmp_path_factory.mktemp("epseed")
    hits = points_where(WL, _root(base, 0), _epoll_with_items)
    assert hits, "epolls never held an epoll with two items"
    root = _root(base, 1)
    path = image_at(WL, root, hits[0], base / "seed.img")
    return path, root, load_records(path)


def _file(recs: list, kind: str) -> dict:
    return next(r[3] for r in recs if r[0] == "file" and r[3].get("kind") == kind
                and (kind != "epoll" or len(r[3]["items"]) >= 2))


def _thaw(path: Path, root: Path) -> VKernel:
    return thaw(str(path), ThawOptions(root=str(root), stdout=lambda b: None,
                                       deliver_sigthaw=False))


def test_the_seed_thaws(seed) -> None:
    path, root, _ = seed
    k = _thaw(path, root)
    assert _epoll_with_items(k)
    k.shutdown()


def _twice(ep: dict) -> None:
    ep["items"].append(list(ep["items"][0]))


def _self(ep: dict) -> None:
    ep["items"][0][0] = ep["id"]


MUTATIONS = {
    "item-file-missing": lambda ep: ep["items"][0].__setitem__(0, 424242),
    "item-fd-negative": lambda ep: ep["items"][0].__setitem__(1, -1),
    "item-twice": _twice,
    "item-is-itself": _self,
    "too-many-items": lambda ep: ep.__setitem__("items", ep["items"] * 40000),
    "ready-outside-items": lambda ep: ep.__setitem__("ready", [[424242, 3]]),
    "ready-longer-than-items": lambda ep: ep.__setitem__("ready", ep["items"] * 2),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_crafted_epoll_is_refused(seed, tmp_path: Path, name: str) -> None:
    path, root, recs = seed
    recs = copy.deepcopy(recs)
    MUTATIONS[name](_file(recs, "epoll"))
    bad = write_records(tmp_path / "bad.img", path, recs)
    with pytest.raises(ImageError):
        _thaw(bad, root).shutdown()
