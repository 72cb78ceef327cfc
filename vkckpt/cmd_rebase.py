"""Implement `vkckpt rebase IMAGE --onto BASE -o OUT`: re-parent an incremental image.

OUT is IMAGE with its header's parent id and its meta record's parent file name changed to
BASE's; every other record, page chunk included, is IMAGE's own, so thawing OUT lays IMAGE's
pages over BASE's exactly as over its old parent.  That is only sound when BASE holds the
same vkernel state as IMAGE's parent, so rebase refuses unless `vkckpt diff` of the two
(every record's fields and every page, each with its chain) finds nothing: the check reads
both chains once and compares in memory, no guest runs.
"""

from __future__ import annotations

import argparse
import os

from vkckpt.commands import _key
from vkckpt.errors import ImageError
from vkckpt.host.fs import OutputPath, write_atomic


def cmd_rebase(args: argparse.Namespace) -> int:
    """vkckpt rebase: 0 when OUT is written, 1 when refused."""
    from vkckpt.ckpt.chain import load_chain
    from vkckpt.image.document import assemble, check_bytes, from_document, to_document
    from vkckpt.regress.imagediff import diff_states
    from vkckpt.regress.imagestate import load_state

    key = _key(args)
    chain, base = load_chain(args.image), load_chain(args.onto)
    head, parent = chain[-1], chain[-2] if len(chain) > 1 else None
    if key is not None:
        for r in (*chain, *base):
            r.check_digests(key.secret)
    if parent is None:
        raise ImageError(f"{args.image}: is a full image; only an incremental one can be rebased")
    if base[-1].header.vkernel_id != head.header.vkernel_id:
        raise ImageError(f"{args.onto}: belongs to another vkernel than {args.image}")
    if os.path.dirname(os.path.abspath(args.onto)) != \
            os.path.dirname(os.path.abspath(args.output)):
        raise ImageError(f"{args.onto}: must be in OUT's directory (images name their "
                         "parent by file name, beside them)")
    found = diff_states(load_state(parent.path), load_state(args.onto), memory=True,
                        labels=("parent", "BASE"))
    if found:
        raise ImageError(f"{args.onto}: does not hold the state of {args.image}'s parent "
                         f"{os.path.basename(parent.path)} ({found[0].text}); give the merge "
                         "of that parent's chain")
    doc = to_document(args.image)
    doc["header"]["parent_id"] = base[-1].header.image_id.hex()
    for rec in doc["records"]:
        if rec["type"] == "meta":
            rec["fields"]["parent_path"] = os.path.basename(args.onto)
    doc["records"] = [r for r in doc["records"] if r["type"] != "seal"]
    header, payloads = from_document(doc)
    secret = key.secret if key else None
    data = assemble(header, payloads, secret)
    check_bytes(data, secret)
    out = OutputPath(args.output)
    try:
        write_atomic(out.dir_fd, out.name, data)
    except OSError as e:
        raise ImageError(f"cannot write {args.output}: {e.strerror}") from None
    finally:
        out.close()
    print(f"{args.output}: {args.image} rebased onto {args.onto}")
    return 0
