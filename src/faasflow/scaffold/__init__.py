"""Scaffolding for flows deployed on OpenFaaS: the faas-cli template and ``faasflow new``.

:mod:`faasflow.scaffold.templates` finds the template (one copy, in the repository's
``template/`` folder or a wheel's package data); :mod:`faasflow.scaffold.files` writes a
new flow function from it.
"""

from faasflow.scaffold.files import (
    FLOW_ENV_FILE,
    ExistingFilesError,
    InvalidNameError,
    Scaffold,
    check_name,
    flow_env_yaml,
    scaffold,
    stack_yaml,
)
from faasflow.scaffold.templates import (
    DEFAULT_LANG,
    TemplateNotFoundError,
    available_languages,
    find_template,
)

__all__ = [
    "DEFAULT_LANG",
    "FLOW_ENV_FILE",
    "ExistingFilesError",
    "InvalidNameError",
    "Scaffold",
    "TemplateNotFoundError",
    "available_languages",
    "check_name",
    "find_template",
    "flow_env_yaml",
    "scaffold",
    "stack_yaml",
]
