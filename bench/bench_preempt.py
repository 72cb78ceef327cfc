"""The preemption micro-benchmark's old entry point; it lives in bench/preempt.py now.

Run: ``python bench/bench_preempt.py [--scale 1.0] [--repeat 3]`` (same as
``python -m bench.preempt``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.preempt import main  # noqa: E402

if __name__ == "__main__":
    main()
