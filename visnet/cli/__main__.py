"""``python -m visnet.cli`` = ``visnet``."""

import sys

from visnet.cli.main import main

sys.exit(main())
