# Makes conf/ importable as `hydrafit.conf` (see pyproject.toml), so Hydra can load it with pkg://.
