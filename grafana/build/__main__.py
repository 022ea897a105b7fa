"""``python -m grafana.build [--check]``: write (or check) the generated Grafana files."""

from __future__ import annotations

import argparse
import sys

from grafana.build import ROOT, generated_folders, render


def differences() -> list[str]:
    """What differs between the generated files and those in the repository."""
    wanted = render()
    found = []
    for path, text in wanted.items():
        current = ROOT / path
        if not current.exists() or current.read_text() != text:
            found.append(f"{path}: differs from the code")
    for folder in generated_folders():
        for current in sorted((ROOT / folder).glob("*")):
            if current.is_file() and current.relative_to(ROOT) not in wanted:
                found.append(f"{current.relative_to(ROOT)}: not generated any more")
    return found


def write() -> None:
    wanted = render()
    for folder in generated_folders():
        (ROOT / folder).mkdir(parents=True, exist_ok=True)
        for current in (ROOT / folder).glob("*"):
            if current.is_file() and current.relative_to(ROOT) not in wanted:
                current.unlink()
    for path, text in wanted.items():
        (ROOT / path).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.build", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only report files that differ from the code"
    )
    arguments = parser.parse_args()
    if arguments.check:
        found = differences()
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
