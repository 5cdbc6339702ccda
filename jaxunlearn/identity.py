"""Stable identities of a user's code and values: what names a user's own model and plug-in
unlearners in checkpoint keys (``jaxunlearn.checkpoints``).

The library's own code is covered by ``checkpoints.training_code_fingerprint`` (recorded in
each checkpoint, warned about when it differs). A user's code is part of the key itself, so
a changed model or plug-in retrains instead of silently reusing stale weights:

- a function or class of the user's (``is_user_module``: neither jaxunlearn's nor installed
  in site-packages or the standard library) is named by its module, its qualified name and
  a digest of its code (``code_name``, ``code_digest``): its source, and what that code
  names at module level that is the user's too (functions, classes, modules, base classes)
  or a plain constant, and the values a function closes over;
- a value (a model's field or constructor argument, a variable a function closes over) is
  described by ``describe_value``: plain values as they are, arrays by dtype, shape and a
  SHA-256 of their bytes, ``functools.partial`` by its function and arguments, functions by
  name (and code, for the user's); a value whose repr holds a memory address or is
  abbreviated ("...") cannot name anything and is refused (``IdentityError``).

The source is read from disk when the identity is computed (at the start of a study): a
module edited since it was imported should be reloaded first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import dis
import enum
import functools
import hashlib
import inspect
import json
import re
import site
import sys
import sysconfig
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

LIBRARY = "jaxunlearn"
# Where the repr of a default ``object.__repr__`` (and of functions, partials...) puts an address.
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
# Modules whose scalar types name a dtype (``np.float32``, ``jnp.bfloat16``, ``float``).
_DTYPE_MODULES = ("numpy", "jax", "ml_dtypes", "builtins")
# The instructions that read a global name (LOAD_NAME: code run by exec in a namespace).
_GLOBAL_LOADS = ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS")
# Functions being described right now (by id): a function that closes over itself is named,
# not described again.
_ACTIVE: set[int] = set()


class IdentityError(ValueError):
    """A value that cannot be part of a checkpoint key (its repr holds a memory address or is
    abbreviated); the message says where it is and what to give instead."""


# ------------------------------------------------------------------------------ whose code


def is_library_module(name: str) -> bool:
    """True for jaxunlearn's own modules."""
    return name == LIBRARY or name.startswith(LIBRARY + ".")


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[Path, ...]:
    """The folders of installed code: the standard library and the site-packages folders."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(Path(root).resolve() for root in roots)


def is_user_module(name: str) -> bool:
    """True for a module of the user's own code: not jaxunlearn's, not a built-in module and
    not installed (in the standard library or a site-packages folder). A script's or a
    notebook's ``__main__``, a ``--plugin`` file, a test module and an editable install are
    the user's; a module no longer imported counts as the user's too (its code is hashed)."""
    if is_library_module(name):
        return False
    module = sys.modules.get(name)
    if module is None:
        return True
    file = getattr(module, "__file__", None)
    if file is None:
        return name not in sys.builtin_module_names
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _installed_roots())


def _owned(module: str, package: str) -> bool:
    """Code whose identity belongs in a digest of code from ``package`` (the top-level
    package of the function or class being identified): the user's own, or the same
    package's (an installed plug-in package's helpers), never jaxunlearn's."""
    if is_library_module(module):
        return False
    return is_user_module(module) or module.split(".")[0] == package


# ------------------------------------------------------------------------------ names


def _unwrap(value: Any) -> Any:
    """The function under decorators that keep ``__wrapped__`` (``jax.jit``, ``custom_jvp``,
    Linen's method wrappers, ``functools.wraps``)."""
    try:
        return inspect.unwrap(value)
    except ValueError:  # a cycle of __wrapped__
        return value


def _module_label(name: str) -> str:
    """A module's name in identities; a ``--plugin`` file by its file name (its module name
    holds a hash of its absolute path, which would tie keys to where the file lies)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__jaxunlearn_plugin__", None)
    return f"plugin {Path(spec).name}" if spec else name


def _label(obj: Any) -> str:
    """``module.qualified_name`` of a function or class."""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", type(obj).__qualname__)
    return f"{_module_label(getattr(obj, '__module__', None) or '?')}.{qualname}"


def _needs_code(obj: Any, root: bool = False) -> bool:
    """Whether a function's or class's name needs its code beside it: the user's code, a
    ``root`` that is not jaxunlearn's, and lambdas (whose names say nothing)."""
    module = getattr(obj, "__module__", None) or "?"
    if root and not is_library_module(module):
        return True
    return is_user_module(module) or "<lambda>" in getattr(obj, "__qualname__", "")


def code_name(obj: Any, root: bool = False) -> str:
    """A function's or class's name for checkpoint keys: ``module.qualified_name``, followed
    by `` [code DIGEST]`` (``code_digest``) for the user's code and for lambdas.

    Args:
        obj: a function or class.
        root: ``obj`` is what is being identified (a user's model class, a plug-in's factory),
            not something it uses: its code counts even from an installed package (an
            entry-point plug-in), unless it is jaxunlearn's.

    Raises:
        IdentityError: a value the code closes over cannot be described.
    """
    obj = _unwrap(obj)
    if not _needs_code(obj, root):
        return _label(obj)
    if id(obj) in _ACTIVE:  # a function that closes over itself, met again while describing it
        return f"{_label(obj)} [code (itself)]"
    with _describing(obj):
        return f"{_label(obj)} [code {code_digest(obj)}]"


@contextlib.contextmanager
def _describing(obj: Any) -> Iterator[None]:
    """Marks ``obj`` as being described (``_ACTIVE``) while the block runs."""
    _ACTIVE.add(id(obj))
    try:
        yield
    finally:
        _ACTIVE.discard(id(obj))


# ------------------------------------------------------------------------------ code


def code_digest(obj: Any) -> str:
    """SHA-256 (16 hex digits) of a function's or class's code: its source (else its module
    file's bytes, else its compiled code); for a function, the values it closes over; for a
    class, its base classes of the same code; and, recursively, what that code names at
    module level that is the user's own (or the same package's) function, class or module,
    or a plain constant. The same code gives the same digest in every process.

    Raises:
        IdentityError: a value a function closes over cannot be described.
    """
    obj = _unwrap(obj)
    parts: list[tuple[str, Any]] = []
    _add_code(obj, parts, set(), (getattr(obj, "__module__", None) or "?").split(".")[0])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _add_code(obj: Any, parts: list[tuple[str, Any]], seen: set[int], package: str) -> None:
    """Appends the identity of ``obj``'s code, and of what it names, to ``parts``."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    label = _label(obj)
    parts.append((label, _source_digest(obj)))
    if inspect.isclass(obj):
        module = sys.modules.get(obj.__module__)
        namespace = vars(module) if module is not None else {}
        for base in obj.__mro__[1:]:
            if _owned(base.__module__, package):
                _add_code(base, parts, seen, package)
    else:
        namespace = getattr(obj, "__globals__", {})
        parts.extend((f"{label} closes over {name}", desc) for name, desc in _closure(obj, label))
    for name in sorted(_global_names(obj)):
        if name in namespace:
            _add_global(name, namespace[name], parts, seen, package)


def _add_global(name: str, value: Any, parts: list[tuple[str, Any]], seen: set[int], package: str) -> None:
    """Appends what a module-level name the code uses contributes: the user's modules (their
    file's digest), functions and classes (recursively), and plain constants. Library code
    and values that cannot be described (not plain constants) contribute nothing."""
    if inspect.ismodule(value):
        file = getattr(value, "__file__", None)
        if _owned(value.__name__, package) and file and id(value) not in seen:
            seen.add(id(value))
            parts.append((f"module {_module_label(value.__name__)}", _file_digest(Path(file))))
        return
    target = _unwrap(value) if callable(value) else value
    if inspect.isfunction(target) or inspect.isclass(target):
        if _owned(target.__module__, package):
            _add_code(target, parts, seen, package)
        return
    with contextlib.suppress(IdentityError):  # an object that is not a plain constant: not part of it
        parts.append((f"global {name}", describe_value(value, name)))


def _source_digest(obj: Any) -> str:
    """SHA-256 of ``obj``'s source; else of its module file's bytes; else of its compiled
    code (a class defined in a notebook has neither source nor file). A lambda's source is
    its whole line, which other lambdas may share: its compiled code is added."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        pass
    else:
        if "<lambda>" in getattr(obj, "__qualname__", ""):
            source += json.dumps(_code_text(obj.__code__))
        return hashlib.sha256(source.encode()).hexdigest()
    file = getattr(sys.modules.get(getattr(obj, "__module__", None) or "?"), "__file__", None)
    digest = _file_digest(Path(file)) if file else None
    if digest is not None:
        return digest
    compiled = [(f.__qualname__, _code_text(f.__code__)) for f in _functions(obj)]
    return hashlib.sha256(json.dumps(compiled).encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None if it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _functions(obj: Any) -> Iterator[types.FunctionType]:
    """A function itself, or the functions a class defines (methods, static and class
    methods, property accessors), under their decorators."""
    if not inspect.isclass(obj):
        if inspect.isfunction(obj):
            yield obj
        return
    for value in vars(obj).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        accessors = (value.fget, value.fset, value.fdel) if isinstance(value, property) else (value,)
        for accessor in accessors:
            function = _unwrap(accessor)
            if inspect.isfunction(function):
                yield function


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and the code objects nested in it (inner functions, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _global_names(obj: Any) -> set[str]:
    """Every name ``obj``'s code looks up as a global (not its local variables, nor the
    attributes it reads: ``helpers.block`` names the module ``helpers``)."""
    return {
        instruction.argval
        for function in _functions(obj)
        for code in _codes(function.__code__)
        for instruction in dis.get_instructions(code)
        if instruction.opname in _GLOBAL_LOADS
    }


def _code_text(code: types.CodeType) -> Any:
    """A process-independent stand-in for a code object: bytecode, constants and names
    (a frozenset's order, which string hashing randomises, sorted)."""

    def const(value: Any) -> Any:
        if isinstance(value, types.CodeType):
            return _code_text(value)
        if isinstance(value, frozenset):
            return sorted(repr(v) for v in value)
        if isinstance(value, tuple):
            return [const(v) for v in value]
        return repr(value)

    return [code.co_code.hex(), [const(c) for c in code.co_consts], list(code.co_names)]


def _closure(function: Any, label: str) -> tuple[tuple[str, Any], ...]:
    """(name, description) of each value a function closes over (not ``super()``'s class)."""
    closure = getattr(function, "__closure__", None)
    if not closure:
        return ()
    out = []
    for name, cell in zip(function.__code__.co_freevars, closure, strict=True):
        if name == "__class__":
            continue
        try:
            value = cell.cell_contents
        except ValueError:  # not assigned yet
            continue
        out.append((name, describe_value(value, f"variable {name!r} that {label} closes over")))
    return tuple(out)


# ------------------------------------------------------------------------------ values


def describe_value(value: Any, where: str) -> Any:
    """A stable, JSON-friendly stand-in for ``value`` that is the same in every process and
    differs when the value does.

    Args:
        value: a model's field, a constructor argument, a closure's variable...
        where: what holds it, for the error message (e.g. ``"MyNet field 'act'"``).

    Returns:
        Plain values (None, bool, int, float, str) as they are; sequences, dicts and sets
        element by element; an enum member by name; an array (NumPy, JAX, NumPy scalar) as
        ("array", dtype, shape, SHA-256 of its bytes); a dtype by name; a module by name
        (and its file's digest, for the user's); a ``functools.partial`` by its function
        and arguments; a bound method by its function and object; a function or class by
        ``code_name`` (and the values a library closure closes over); a dataclass by its
        type and fields; anything else by its type and repr.

    Raises:
        IdentityError: a value whose repr holds a memory address or is abbreviated.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(describe_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return tuple(sorted((str(k), describe_value(v, f"{where}[{k!r}]")) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        items = [describe_value(v, f"{where} (an element)") for v in value]
        return ("set", tuple(sorted(items, key=lambda d: json.dumps(d, default=str))))
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return describe_array(value, where)
    dtype = _dtype_name(value)
    if dtype is not None:
        return dtype
    return _describe_object(value, where)


def _describe_object(value: Any, where: str) -> Any:
    """``describe_value`` of what is neither plain, a container, an array nor a dtype."""
    if inspect.ismodule(value):
        user = is_user_module(value.__name__) and getattr(value, "__file__", None)
        return ("module", _module_label(value.__name__), _file_digest(Path(user)) if user else None)
    if isinstance(value, functools.partial):
        return (
            "functools.partial",
            describe_value(value.func, f"{where} (its function)"),
            describe_value(value.args, f"{where} (its arguments)"),
            describe_value(value.keywords, f"{where} (its keywords)"),
        )
    if isinstance(value, types.MethodType):
        return (
            "method",
            describe_value(value.__func__, where),
            describe_value(value.__self__, f"{where} (its object)"),
        )
    if callable(value) and hasattr(value, "__qualname__"):
        return _describe_callable(value, where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        skip = ("parent",) if _is_linen_module(value) else ()  # a submodule's place in a tree
        fields = [f.name for f in dataclasses.fields(value) if f.name not in skip]
        return (code_name(type(value)), tuple((f, describe_value(getattr(value, f), f"{where}.{f}")) for f in fields))
    return (code_name(type(value)), _checked_repr(value, where))


def _describe_callable(value: Any, where: str) -> Any:
    """A function or class by ``code_name``; a library function that closes over values
    (e.g. an initializer made by ``variance_scaling(2.0, ...)``) also by those values."""
    target = _unwrap(value)
    if _needs_code(target):
        return code_name(target)
    if id(target) in _ACTIVE:  # a function that closes over itself
        return _label(target)
    with _describing(target):
        cells = _closure(target, _label(target))
    return (_label(target), cells) if cells else _label(target)


def describe_array(value: Any, where: str = "array") -> Any:
    """("array", dtype, shape, SHA-256 of the bytes) of a NumPy or JAX array or NumPy
    scalar; an object array element by element."""
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype == object:
        return ("array", "object", tuple(arr.shape), describe_value(arr.ravel().tolist(), where))
    return ("array", str(arr.dtype), tuple(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest())


def _dtype_name(value: Any) -> str | None:
    """The name of a dtype given as a ``np.dtype`` or a scalar type (``jnp.float32``,
    ``np.int8``, ``float``), else None."""
    if isinstance(value, np.dtype):
        return str(value)
    if not (isinstance(value, type) and value.__module__.split(".")[0] in _DTYPE_MODULES):
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        return None
    if dtype.kind == "O" or (value.__module__ == "builtins" and dtype.kind not in "biufc"):
        return None  # a class (list, object, str...), not a number type
    return str(dtype)


def _is_linen_module(value: Any) -> bool:
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(value, linen.Module)


def _checked_repr(value: Any, where: str) -> str:
    """``repr(value)``, if it can name the value.

    Raises:
        IdentityError: the repr holds a memory address, or is abbreviated ("...").
    """
    text = repr(value)
    shown = text if len(text) <= 80 else text[:77] + "..."
    if _ADDRESS.search(text):
        raise IdentityError(
            f"{where}: {shown} cannot be part of a checkpoint key: its repr holds a memory address, "
            f"which differs in every process (so its checkpoints would never be reused) and says nothing "
            f"about what it is. Give a value that says what it is: a number, string, tuple, dict, dtype, "
            f"NumPy or JAX array, function, functools.partial, or a dataclass of these; or give "
            f"{type(value).__qualname__} a __repr__ that names everything that defines it, without a memory address"
        )
    if "..." in text:
        raise IdentityError(
            f"{where}: {shown} cannot be part of a checkpoint key: its repr is abbreviated ('...'), so "
            f"values that differ only in the part left out would share checkpoints (stale weights). Give it "
            f"as a NumPy or JAX array (identified by its dtype, shape and a SHA-256 of all its bytes), or as "
            f"a value whose repr is complete"
        )
    return text
