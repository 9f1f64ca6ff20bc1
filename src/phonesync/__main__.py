"""`python -m phonesync` is the same as the `phonesync` command."""

import sys

from phonesync.cli import main

sys.exit(main())
