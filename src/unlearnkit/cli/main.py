"""The `unlearnkit` command: a thin wrapper over the Python API.

Each subcommand registers itself in COMMANDS (name -> (add_arguments, run)); `main` turns
user errors into one line on stderr and exit status 2, and Ctrl-C into status 130.
"""

from __future__ import annotations

import argparse
import sys

from unlearnkit.cli.registry import COMMANDS
from unlearnkit.errors import UnlearnkitError


def build_parser() -> argparse.ArgumentParser:
    from unlearnkit.cli import audit_commands, bench_commands, commands  # noqa: F401,PLC0415  (registers the subcommands)
    from unlearnkit.cli import import_command  # noqa: F401,PLC0415
    from unlearnkit.cli import tune_command  # noqa: F401,PLC0415

    parser = argparse.ArgumentParser(
        prog="unlearnkit", description="Make a trained image classifier forget chosen training examples, and audit it."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_handler=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    try:
        return int(args._handler(args) or 0)
    except UnlearnkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from unlearnkit.files import output_error, user_fixable  # noqa: PLC0415

        if not user_fixable(exc):
            raise
        print(f"error: {output_error(exc)}", file=sys.stderr)  # a full disk, read-only or forbidden path
        return 2
    except KeyboardInterrupt:
        # Each command says what an interruption leaves behind (`interrupt_hint` on the handler, or
        # `on_interrupt` set by its arguments); commands with --resume point to it, others: run again.
        hint = getattr(args._handler, "interrupt_hint", None) or getattr(args, "on_interrupt", None) or (
            "a run that saved a checkpoint continues with the same command and --resume" if hasattr(args, "resume")
            else "run the same command again")
        print(f"interrupted: {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
