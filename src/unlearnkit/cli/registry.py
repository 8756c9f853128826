"""The subcommand registry: each command module registers `run(args)` under a name."""

from __future__ import annotations

import argparse
from typing import Callable

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], "int | None"]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str):
    """Register `run(args)`; the decorated function's `arguments` attribute fills the parser."""

    def wrap(run):
        COMMANDS[name] = (help, getattr(run, "arguments", lambda p: None), run)
        return run

    return wrap


def with_arguments(add: Callable[[argparse.ArgumentParser], None]):
    """Attach the function that adds a command's arguments (apply below `@command`)."""

    def deco(fn):
        fn.arguments = add
        return fn

    return deco
