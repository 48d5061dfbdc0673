import sys

from pipeline.cli import main

if __name__ == "__main__":  # spawned decode workers import this module without running the CLI
    sys.exit(main())
