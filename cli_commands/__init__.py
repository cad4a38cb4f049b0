"""The commands of ``cli.py``, grouped by what they do; each module registers on ``options.app``."""
