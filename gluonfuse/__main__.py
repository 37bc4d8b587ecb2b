"""`python -m gluonfuse` is the `gluonfuse` command."""
from gluonfuse.cli import main

main()
