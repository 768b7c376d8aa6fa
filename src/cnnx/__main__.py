"""`python -m cnnx ...` runs the command line, like the `cnnx` script."""

from .cli import main

main()
