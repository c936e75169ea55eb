"""`python -m softras_taichi ...` is the `softras-taichi` command."""
import sys

from softras_taichi.cli import main

if __name__ == "__main__":
    sys.exit(main())
