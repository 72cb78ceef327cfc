"""Implement `vkckpt export`: an overlay run's files at a freeze, as a directory tree."""

from __future__ import annotations

import argparse
import sys

from vkckpt.commands import _key


def cmd_export(args: argparse.Namespace) -> int:
    """vkckpt export: 0 when the tree was written, 1 when the image or DIR is refused."""
    from vkckpt.ckpt.overlay_export import export

    n = export(args.image, args.dir, args.root, _key(args))
    print(f"vkckpt export: {n} entries written to {args.dir}", file=sys.stderr)
    return 0
