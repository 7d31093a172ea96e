"""The ptbill command documents itself: --version, and a help text on every command and every option."""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout

import pytest

from integration import __version__
from tasks.cli import build_parser


def _subparsers(
    p: argparse.ArgumentParser, prefix: str = "ptbill"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _subparsers(sub, f"{prefix} {name}")
    return out


def test_version():
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0
    assert out.getvalue().strip() == f"ptbill {__version__}"


def test_every_command_and_option_has_help():
    commands = _subparsers(build_parser())
    names = {c for c, _ in commands}
    assert {
        "ptbill doctor",
        "ptbill show",
        "ptbill report",
        "ptbill flower",
        "ptbill mappings check",
    } <= names
    missing = []
    for name, p in commands:
        for action in p._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{name} {choice.dest}")
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"
