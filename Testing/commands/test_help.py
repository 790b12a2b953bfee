"""``segnets <command> --help`` names the default of every option that has one."""

from __future__ import annotations

import argparse

from SegNetsLib.cli import build_parser


def _options(parser: argparse.ArgumentParser, name: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif not isinstance(action, argparse._HelpAction):
            yield name, action


def test_every_option_with_a_default_names_it_in_its_help():
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, action in _options(build_parser(), "segnets")
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in (action.help or "")
    ]
    assert missing == []


def test_finetune_output_help_lists_every_type_it_writes():
    finetune = next(
        sub
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
        if name == "finetune"
    )
    output = next(action for action in finetune._actions if "--output" in action.option_strings)
    assert all(suffix in output.help for suffix in (".seg.nrrd", ".nii.gz", ".nii,", ".nrrd", ".mha"))
