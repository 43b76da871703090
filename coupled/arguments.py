"""The command line's parser: jsonargparse's, with argument errors as one line ``coupled: error: ...``."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import yaml
from pytorch_lightning.cli import LightningArgumentParser

from lightning_modules.errors import CheckpointError

from .exit import PROG, fail, squeeze


def parser_kwargs() -> dict[str, Any]:
    """The main parser's and, per subcommand, a short usage line (the full one lists every flag)."""
    kwargs: dict[str, Any] = {
        "prog": PROG,
        "description": "Coupled recognition/generation sigmoid networks (arXiv:1709.08524) on PyTorch "
        "Lightning. Example: coupled fit --config configs/mnist.yaml",
    }
    for sub in ("fit", "validate", "test", "predict"):
        kwargs[sub] = {
            "usage": f"{PROG} {sub} [-h] [--config CONFIG] [--trainer.* ...] [--model.* ...] [--data.* ...] "
            f"[--ckpt_path PATH | wandb:[[ENTITY/]PROJECT/]model-RUNID[:ALIAS]] [...]",
        }
    return kwargs


class CoupledArgumentParser(LightningArgumentParser):
    """jsonargparse's parser, whose argument errors are one line ``coupled: error: ...`` (exit status 2).

    jsonargparse prints the usage, a tip and a multi-line message (a Union's subtypes, its errors, the given
    value); :func:`argument_error` condenses that to the key, what was expected and what was given.
    ``--help`` is untouched. Parsers that raise instead of exiting (``exit_on_error=False``, used by
    jsonargparse internally, or ``JSONARGPARSE_DEBUG``) keep jsonargparse's behaviour.
    """

    #: the command line being parsed (set by :meth:`CoupledCLI.parse_arguments`), to name a bad --config file
    cli_args: list[str] | None = None
    #: the checkpoint whose saved hyperparameters are being parsed (:meth:`CoupledCLI._parse_ckpt_path`)
    reading_checkpoint: str | None = None

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG", "").lower() in ("1", "true", "yes"):
            return super().error(message, ex)
        args = CoupledArgumentParser.cli_args
        args = args if args is not None else sys.argv[1:]
        ckpt = CoupledArgumentParser.reading_checkpoint
        if ckpt is not None:  # raised through Lightning, which would add a line of its own to a SystemExit
            raise CheckpointError(
                f"checkpoint {ckpt} holds model hyperparameters this program does not accept "
                f"({argument_error(message, args)}): it was written by another model or version"
            )
        fail(argument_error(message, args), 2)


def _config_files(args: list[str]) -> list[str]:
    """The values of ``--config`` in ``args`` (``--config X`` and ``--config=X``)."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            out.append(args[i + 1])
        elif isinstance(arg, str) and arg.startswith("--config="):
            out.append(arg.split("=", 1)[1])
    return out


def _bad_config_file(args: list[str]) -> str | None:
    """What is wrong with the first ``--config`` file that is not a YAML mapping, if one is not."""
    for path in _config_files(args):
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError) as exc:
            return f"config file {path} cannot be read ({squeeze(str(exc))})"
        except yaml.YAMLError as exc:
            return f"bad YAML in config file {path}: {squeeze(str(exc))}"
        if loaded is not None and not isinstance(loaded, dict):
            return (f"config file {path} is not a YAML mapping of settings (it holds a {type(loaded).__name__}); "
                    f"see configs/mnist.yaml")
    return None


_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Errors:|Given value type:.*"
    r"|Problem with given class_path .*|Expected a <class 'NoneType'>.*)$"
)
_LITERAL = re.compile(r"^Expected a typing\.Literal\[(.*)\](?:\. Got value: (.*))?$")
_NESTED = re.compile(r"^NestedArg\(key='([^']*)', val=(.*)\)$")


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> ``int``, ``<class 'NoneType'>`` -> ``None``."""
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text.strip())
    return "None" if text == "NoneType" else text


def argument_error(message: str, args: list[str] | None = None) -> str:
    """jsonargparse's (possibly multi-line) argument error as one line naming the key and the value."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "bad arguments"
    if lines[0].startswith(("Problems parsing config", "Unexpected config")):
        bad = _bad_config_file(list(args or []))
        if bad:
            return bad
    if len(lines) == 1:
        return lines[0]
    if lines[0].startswith("Problems parsing config"):
        text = squeeze(" ".join(lines)).split(":", 1)[1].strip().replace(' in "<unicode string>",', ",")
        return "bad YAML in a --config file: " + text
    keys: list[str] = []
    value = subtypes = None
    details: list[str] = []
    literals: list[str] = []
    for line in lines:
        line = line.removeprefix("- ").strip()
        m = _KEY.match(line)
        if m:
            keys.append(m[1])
            line = m[2]
            if not line:
                continue
        if line.startswith("Given value:"):
            value = line.split(":", 1)[1].strip()
            nested = _NESTED.match(value)
            if nested:  # --data.batch_size 1.5 is reported on "data" with the nested key and value
                keys.append(nested[1])
                value = nested[2].strip("'\"")
            continue
        if line.startswith("Subtypes:"):
            subtypes = line.split(":", 1)[1].strip()
            continue
        if _NOISE.match(line):
            continue
        lit = _LITERAL.match(line)
        if lit:
            literals += [v.strip() for v in lit[1].split(",")]
            value = lit[2] if lit[2] is not None else value
            continue
        m = re.match(r"^(.*)\. Got value: (.*)$", line)
        if m:
            line, value = m[1], m[2]
        details.append(line)
    key = ".".join(dict.fromkeys(keys))
    if literals:
        details.insert(0, "expected one of " + ", ".join(dict.fromkeys(literals)))
    elif not details and subtypes and not (keys and len(keys) > 1):
        names = [_type_name(t) for t in re.split(r",\s*(?![^\[]*\])", subtypes.strip("[]"))]
        details.append("expected " + " or ".join(names))
    text = "; ".join(dict.fromkeys(
        "expected " + _type_name(d[len("Expected a "):]) if re.match(r"^Expected an? <class '[\w.]+'>$", d) else d
        for d in details
    ))
    if not text:
        text = "invalid value"
    if value is not None and value not in text:
        text += f", got {value}"
    return f'Parser key "{key}": {text}' if key else squeeze(" ".join(lines))


