"""The one kind of error bad input raises, and the one way a command refuses it.

Every problem with a config, a path or a request is a ConfigError whose message is one line
that names the key and what is allowed. A command line refuses it with that line on stderr and
exit code 2 (refuse); hydrafit.fit raises it.
"""
from __future__ import annotations

import difflib
import sys

from hydrafit.rundir.dirs import release_unclaimed


class ConfigError(ValueError):
    """A config that cannot be trained with; the message names the key and what is allowed."""


def refuse(message: str, program: str = "hydrafit-train") -> None:
    """One line on stderr, exit code 2, and no run or sweep directory left behind for it. Called
    by the entry points and by the Hydra plugins and callbacks that check input, which Hydra
    gives no other way to end a command in one line."""
    release_unclaimed()
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(2)


def unknown_key(key: str, allowed) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(allowed), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
    return ConfigError(f"{key}: unknown key{hint}")
