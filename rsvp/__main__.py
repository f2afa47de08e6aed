"""`python -m rsvp`: the same as the `rsvp` command."""

import sys

from rsvp.cli import main

sys.exit(main())
