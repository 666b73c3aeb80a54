"""The package version, in the lowest layer so that every module can record it without importing the
package root (which re-exports the public API and so sits above every layer). ``pyproject.toml``
reads it from here statically."""

__version__ = "0.1.0"
