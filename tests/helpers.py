"""Helpers shared by the CLI tests (importable because pytest puts tests/ on sys.path)."""

import re

from unlearnkit.cli.main import main


def run_cli(capsys, *argv):
    """Run `unlearnkit ARGV` in-process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    """The bad-input contract: exit status 2 and exactly one `error: ...` line matching `pattern`."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def audit_numbers(result) -> dict:
    """An audit result's numbers: everything but its timings and creation time (which differ between runs)."""
    return {k: v for k, v in result.to_dict().items() if k not in ("timings", "created")}
