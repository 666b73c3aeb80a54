"""The test suite, a package so that helpers are imported by module path (``from tests.tiny import ...``)."""
