"""``faasflow new NAME``: a new flow function for OpenFaaS, from the faas-flow-python template.

Writes what ``faas-cli new NAME --lang faas-flow-python`` would (the handler folder and
the stack file ``NAME.yml``) with the faasflow parts filled in (label, annotation,
``flow.yml``, the HMAC secret), plus ``template/faas-flow-python/`` when missing so that
``faas-cli build`` works without ``faas-cli template pull``. Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faasflow import config
from faasflow.cli.common import EXIT_OK, EXIT_USAGE, error
from faasflow.config import DEFAULT_NEW_GATEWAY, HMAC_SECRET, normalise_url
from faasflow.errors import ConfigurationError
from faasflow.scaffold import DEFAULT_LANG, scaffold

__all__ = ["DEFAULT_PROVIDER_GATEWAY", "add_parser", "command"]

DEFAULT_PROVIDER_GATEWAY = DEFAULT_NEW_GATEWAY
"""faas-cli's own default; ``$OPENFAAS_URL`` wins, as it does for faas-cli."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow new`` and its options."""
    parser = subparsers.add_parser(
        "new",
        help="create a flow function for OpenFaaS (handler, stack file, flow.yml)",
        description=(
            "Create the OpenFaaS function NAME from the faas-flow-python template: "
            "NAME/handler.py and NAME/requirements.txt, the stack file NAME.yml, flow.yml "
            "(the flow's settings) and template/faas-flow-python/ if it is missing. "
            "Existing files are never overwritten (exit status 2)."
        ),
    )
    parser.add_argument("name", metavar="NAME",
                        help="the function's name: lowercase letters, digits and '-'")
    parser.add_argument("--dir", metavar="DIR", default=".",
                        help="where to write (default: the current folder)")
    parser.add_argument(
        "--gateway", metavar="URL",
        help="the gateway faas-cli deploys to: the stack's provider.gateway "
        f"(default: $OPENFAAS_URL, else {DEFAULT_PROVIDER_GATEWAY})",
    )
    parser.add_argument("--lang", default=DEFAULT_LANG,
                        help=f"the template language (default: {DEFAULT_LANG})")
    parser.add_argument("--description", metavar="TEXT",
                        help="the faas-flow-desc annotation the dashboard shows (default: "
                        "'NAME: a faasflow flow')")
    parser.add_argument(
        "--template", metavar="DIR",
        help="a template folder (or a faas-cli ./template folder) to use (default: the one "
        "shipped with faasflow)",
    )
    parser.add_argument("--no-template-copy", action="store_true",
                        help="do not add template/LANG/ to DIR (default: add it when missing)")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow new``; returns the exit status."""
    directory = Path(args.dir)
    try:
        found = config.lookup("openfaas_url")
        if args.gateway:
            gateway = normalise_url(args.gateway, "--gateway")
        elif found is not None:
            gateway = normalise_url(found[1], found[0])
        else:
            gateway = DEFAULT_PROVIDER_GATEWAY
        done = scaffold(
            args.name, directory, gateway=gateway, lang=args.lang,
            description=args.description,
            template_dir=Path(args.template) if args.template else None,
            copy_template=not args.no_template_copy,
        )
    except (ConfigurationError, OSError) as exc:
        return error(str(exc), EXIT_USAGE)
    out = sys.stdout
    for path in done.written:
        shown = path.relative_to(directory) if path.is_relative_to(directory) else path
        out.write(f"created {shown}{'/' if path.is_dir() else ''}\n")
    name = args.name
    stack = directory / f"{name}.yml"
    out.write(
        f"\nNext:\n"
        f"  1. write the flow in {directory / name / 'handler.py'}\n"
        f"  2. create the secret that signs every hop (once per cluster):\n"
        f"       faas-cli secret create {HMAC_SECRET} --from-literal \"$(openssl rand -hex 32)\"\n"
        f"  3. until faasflow is on PyPI, put its wheel in {directory / name}/ "
        f"(pip wheel --no-deps -w {directory / name} <faasflow source>)\n"
        f"  4. faas-cli up -f {stack}\n"
        f"  5. echo -n Adam | faas-cli invoke {name}\n"
    )
    out.flush()
    return EXIT_OK
