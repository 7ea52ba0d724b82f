"""Fixtures of the packaging tests (tests/packaging/collection_build.py)."""

from collection_build import installed_collection  # noqa: F401  pylint: disable=unused-import
