"""``python -m lightning_modules ...`` is ``coupled ...`` (Lightning's DDP launcher re-runs it this way)."""

from lightning_modules.cli import main

if __name__ == "__main__":
    main()
