"""``python -m coupled ...`` is ``coupled ...`` (Lightning's DDP launcher re-runs it this way)."""

from coupled.main import main

if __name__ == "__main__":
    main()
