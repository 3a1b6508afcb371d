"""Flags generated from config dataclasses, so a new config field is a new flag with no hand-written code."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def add_dataclass_flags(parser: argparse.ArgumentParser, fields: list[dataclasses.Field],
                        positional: tuple[str, ...] = ()) -> None:
    """One ``--kebab-case`` flag per field (booleans get ``--x/--no-x``); defaults stay ``None`` so the caller can
    tell which flags were given and layer them over a YAML config."""
    for f in fields:
        kind = _base_type(f.type)
        flag = f"--{f.name.replace('_', '-')}"
        helptext = f.metadata.get("help", "")
        if f.name in positional:
            continue
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{helptext} (default: {f.default})")
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=f.metadata.get("choices"),
                                help=f"{helptext} (default: {f.default})")


def given(args: argparse.Namespace, fields: list[dataclasses.Field]) -> dict:
    """The dataclass fields the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name, None) is not None}


def parse_training_args(extra: list[str]) -> dict:
    """Parse leftover ``--name value`` tokens as SentenceTransformerTrainingArguments fields, typed by the
    transformers argument parser; only the fields actually given are returned."""
    if not extra:
        return {}
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import HfArgumentParser

    from ..errors import CellstError

    tokens = [_underscore(t) for t in extra]
    names = {t[2:].split("=")[0] for t in tokens if t.startswith("--")}
    parser = HfArgumentParser(SentenceTransformerTrainingArguments)
    parsed, unknown = parser.parse_known_args(tokens + ["--output_dir", "unused"])
    if unknown:
        raise CellstError(f"Unrecognised arguments: {' '.join(unknown)}. Flags not listed by `cellst finetune "
                          "--help` must be SentenceTransformerTrainingArguments fields, e.g. --gradient_accumulation_steps 4.")
    return {n: getattr(parsed, n) for n in names if hasattr(parsed, n)}


def _underscore(token: str) -> str:
    """``--gradient-accumulation-steps=4`` -> ``--gradient_accumulation_steps=4``; values are left alone."""
    if not token.startswith("--"):
        return token
    name, sep, value = token[2:].partition("=")
    return "--" + name.replace("-", "_") + sep + value


def _base_type(annotation) -> type:
    """``int | None`` -> int; string annotations (from __future__) are evaluated against builtins."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Any": typing.Any, "dict": dict, "str": str, "int": int, "float": float,
                                       "bool": bool})
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation
