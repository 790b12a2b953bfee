"""The ``segnets`` command line: one sub-command per module in SegNetsLib.commands."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import signal
import sys
import threading
import time

from SegNetsLib.core.errors import Cancelled, ReportedByMainRank, SegNetsError

# Each module in SegNetsLib/commands defines register(subparsers) and sets args.handler.
COMMANDS = ("models", "segment", "finetune", "train", "web")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segnets", description="Deep-learning segmentation of 3D medical images.")
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"SegNetsLib.commands.{name}").register(subparsers)
    return parser


class Terminated(BaseException):
    """SIGTERM (``kill``, ``timeout``, a batch system's time limit) while a command runs: unwinds it as Ctrl-C does,
    so that the temporary files and folders of its writes (``core.atomic``) are removed."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


RANK_ZERO_WAIT_S = 60.0  # how long another rank waits for rank 0 to report the run's error


def _other_rank() -> bool:
    """True in a process torchrun started besides rank 0: errors every rank meets alike are rank 0's to say."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def _let_rank_zero_report() -> None:
    """Wait (at most RANK_ZERO_WAIT_S) for rank 0 to say the run's error: torchrun stops every process as soon as
    one ends, so a rank ending first could stop rank 0 before it says it."""
    with contextlib.suppress(KeyboardInterrupt, Terminated):
        time.sleep(RANK_ZERO_WAIT_S)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments; under torchrun only rank 0 prints a refusal (the same on every rank) or the help."""
    if not _other_rank():
        return parser.parse_args(argv)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code:
            _let_rank_zero_report()
        raise


def _stopped(command: str, how: str, status: int) -> int:
    """Say that the command was stopped (Ctrl-C, SIGTERM) and return ``status``. Under torchrun every process is
    stopped alike (torchrun passes the signal on and waits for each), so rank 0 says it for the run."""
    if not _other_rank():
        print(f"segnets {command}: {how}; no file was left half-written.", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return 0 on success, 1 with a one-line reason on failure, 130 (Ctrl-C) or
    143 (SIGTERM) when stopped."""
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers are set there only
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return int(args.handler(args) or 0)
    except ReportedByMainRank:  # under torchrun: rank 0 says it
        _let_rank_zero_report()
        return 1
    except SegNetsError as error:
        print(f"segnets {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Cancelled:
        print(f"segnets {args.command}: cancelled; no file was left half-written.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return _stopped(args.command, "interrupted", 130)
    except Terminated:
        return _stopped(args.command, "terminated", 128 + signal.SIGTERM)
    finally:
        if in_main:
            with contextlib.suppress(KeyboardInterrupt, Terminated):  # a stop once the command is over changes nothing
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
