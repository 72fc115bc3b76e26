"""The public façade: a sorted __all__, every name importable and documented."""

from __future__ import annotations

import inspect

import faasflow


def test_all_is_sorted_and_unique() -> None:
    assert faasflow.__all__ == sorted(set(faasflow.__all__))


def test_every_public_name_exists_and_is_documented() -> None:
    for name in faasflow.__all__:
        obj = getattr(faasflow, name)
        assert inspect.getdoc(obj), f"faasflow.{name} has no docstring"


def test_errors_share_one_root() -> None:
    errors = [getattr(faasflow, n) for n in faasflow.__all__ if n.endswith("Error")]
    assert errors
    for error in errors:
        assert issubclass(error, faasflow.FaasFlowError), error


def test_error_tree_docstring_names_every_error() -> None:
    import faasflow.errors

    tree = faasflow.errors.__doc__ or ""
    for name in faasflow.__all__:
        if name.endswith("Error"):
            assert name in tree, f"{name} is missing from the tree in errors.py"
