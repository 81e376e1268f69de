"""Everything about a config before anything is built: composition, validation, the checks
before Hydra creates a directory, and the ${hydrafit.*} resolvers. Imports no torch."""
