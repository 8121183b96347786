"""`python -m importq.cli`: the same command as `importq`."""

from importq.cli import main

main()
