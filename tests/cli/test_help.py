"""Every command's ``--help``: a description, every argument explained, defaults shown,
and each option that is a setting names its environment variable."""

from __future__ import annotations

import argparse

from faasflow import config
from faasflow.cli.main import build_parser

UNDOCUMENTED_DEFAULTS = (None, False, argparse.SUPPRESS, [], "")
"""Defaults that need no mention: unset, off, empty."""

NO_VARIABLE = {
    # The request's own record names its flow: a variable set for workers must not
    # send a control verb to another flow's keys.
    ("pause", "--name"), ("resume", "--name"), ("stop", "--name"), ("redrive", "--name"),
    # The local gateway's own credentials, not the dashboard's of the same option.
    ("gateway", "--basic-auth"),
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Each ``faasflow`` command's parser, by name."""
    parser = build_parser()
    found = [action for action in parser._actions
             if isinstance(action, argparse._SubParsersAction)]
    assert len(found) == 1
    return dict(found[0].choices)


def test_every_command_has_a_description_and_explains_its_arguments() -> None:
    for name, parser in subcommands().items():
        assert parser.description, f"faasflow {name} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            shown = "/".join(action.option_strings) or action.dest
            assert action.help, f"faasflow {name} {shown} has no help"


def test_every_default_is_shown() -> None:
    for name, parser in subcommands().items():
        for action in parser._actions:
            if (action.help == argparse.SUPPRESS or not action.option_strings
                    or isinstance(action, argparse._StoreTrueAction | argparse._HelpAction
                                  | argparse._StoreConstAction)):
                continue
            if action.default in UNDOCUMENTED_DEFAULTS:
                continue
            assert "default" in (action.help or ""), (
                f"faasflow {name} {action.option_strings[0]}: default "
                f"{action.default!r} not shown"
            )


def test_every_option_that_is_a_setting_names_its_variable() -> None:
    by_option: dict[str, list[config.Setting]] = {}
    for item in config.SETTINGS:
        if item.option:
            by_option.setdefault(item.option, []).append(item)
    checked = 0
    for name, parser in subcommands().items():
        for action in parser._actions:
            for option in action.option_strings:
                if option not in by_option or (name, option) in NO_VARIABLE:
                    continue
                if action.help == argparse.SUPPRESS:
                    continue
                names = [f"${v}" for s in by_option[option] for v in s.variables]
                assert any(n in (action.help or "") for n in names), (
                    f"faasflow {name} {option}: the help names none of {names}"
                )
                checked += 1
    assert checked > 30
