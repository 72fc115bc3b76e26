"""``python -m faasflow``: the ``faasflow`` command."""

import sys

from faasflow.cli.main import main

sys.exit(main())
