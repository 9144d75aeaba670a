"""`pantau asyncapi`: write (or check) the AsyncAPI 3.0 document of the Kafka topics."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

DOC = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"


def asyncapi(
    out: Path = typer.Option(DOC, "--out", help="where to write it ('-' for stdout)"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if the file is not current"),
) -> None:
    """Write the AsyncAPI 3.0 document of every Kafka topic, generated from the pydantic models."""
    from shared.asyncapi import render

    text = render()
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            sys.stderr.write(f"{out} is not current: run `pantau asyncapi`\n")
            raise typer.Exit(1)
        return
    if str(out) == "-":
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")
