"""python -m vkckpt."""

import sys

from vkckpt.cli import main

sys.exit(main())
