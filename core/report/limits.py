"""Accepted ranges of report settings, shared by the command line, the app and the report builder.

Fewer than ``MIN_BOOTSTRAP`` resamples give percentile intervals so coarse that they may not even
contain the estimate; the cap keeps a typo from running for hours.
"""

MIN_BOOTSTRAP = 20
MAX_BOOTSTRAP = 100_000
