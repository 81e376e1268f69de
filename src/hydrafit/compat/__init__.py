"""Every use of a private name of a library hydrafit depends on, one module per library.

Each module says which versions it was checked against (CHECKED) and offers `check()`, which
tests/test_compat.py calls: an upgrade that moves or renames one of these names fails there,
naming the library, rather than somewhere deep in a run.
"""
