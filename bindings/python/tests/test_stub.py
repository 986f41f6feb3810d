"""`centroid/_core.pyi` describes the compiled extension as it is.

The stub is written by hand; this test reads it with `ast` and compares it
with what `centroid._core` exports at run time: the same names, the same
kinds of object, and the same parameter names wherever the extension tells
them (PyO3 sets `__text_signature__` on functions, methods and `#[new]`).
"""

import ast
import inspect
import pathlib

import pytest

from centroid import _core

STUB = pathlib.Path(__file__).resolve().parents[1] / "python" / "centroid" / "_core.pyi"

# Dunders every extension type has; the stub names only those the class
# defines itself.
_INHERITED = set(dir(object)) - {"__init__"}


def _stub_module():
    return ast.parse(STUB.read_text(), filename=str(STUB))


def _is_property(fn):
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def _params(fn):
    """A stub function's parameter names, in order, without `self`."""
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    if a.vararg:
        names.append(a.vararg.arg)
    if a.kwarg:
        names.append(a.kwarg.arg)
    return [n for n in names if n != "self"]


def _stub_public():
    """Top-level names the stub declares for the extension: functions,
    classes and annotated constants. Type aliases (plain assignments to
    `_Private` names) and private classes the extension does not export
    (`_Csr`: the shape of an argument) are typing helpers that exist only
    in the stub."""
    out = {}
    for node in _stub_module().body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("_") and not hasattr(_core, node.name):
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def _runtime_public():
    return {name for name in dir(_core) if not (name.startswith("__") and name.endswith("__"))}


def _runtime_params(obj):
    """Parameter names the extension reports, or None where it reports none."""
    if getattr(obj, "__text_signature__", None) is None:
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [n for n in sig.parameters if n not in ("self", "$self", "cls", "$cls")]


def test_the_stub_declares_exactly_what_the_extension_exports():
    stub = set(_stub_public())
    runtime = _runtime_public()
    assert runtime - stub == set(), "exported by _core but missing from _core.pyi"
    assert stub - runtime == set(), "in _core.pyi but not exported by _core"


@pytest.mark.parametrize(
    "name,node",
    sorted(_stub_public().items()),
    ids=sorted(_stub_public()),
)
def test_each_declaration_has_the_extensions_kind_and_parameters(name, node):
    obj = getattr(_core, name)
    if isinstance(node, ast.AnnAssign):
        assert not callable(obj), f"{name} is callable in _core but a constant in the stub"
        annotation = ast.unparse(node.annotation)
        assert type(obj).__name__ == annotation, f"{name}: {type(obj).__name__} at run time, {annotation} in the stub"
    elif isinstance(node, ast.FunctionDef):
        assert callable(obj) and not inspect.isclass(obj), f"{name} is not a function in _core"
        runtime = _runtime_params(obj)
        assert runtime is not None, f"{name}: the extension gives no signature"
        assert runtime == _params(node), f"{name}: parameters differ"
    else:
        assert inspect.isclass(obj), f"{name} is not a class in _core"
        _check_class(name, node, obj)


def _check_class(name, node, cls):
    members = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
    runtime = {m for m in vars(cls) if m not in _INHERITED or m in members}
    runtime -= {"__module__", "__doc__", "__dict__", "__weakref__", "__new__"}
    declared = set(members) - {"__init__"}
    assert runtime - declared == set(), f"{name}: members missing from the stub"
    assert declared - runtime == set(), f"{name}: stub members the extension lacks"
    for member, fn in members.items():
        if member == "__init__":
            # PyO3 puts #[new]'s signature, where it gives one, on the class.
            expected = _runtime_params(cls)
            if expected is not None:
                assert expected == _params(fn), f"{name}.__init__: parameters differ"
            continue
        attr = inspect.getattr_static(cls, member)
        if _is_property(fn):
            assert inspect.isdatadescriptor(attr), f"{name}.{member} is a property in the stub only"
            continue
        assert callable(attr), f"{name}.{member} is not a method in _core"
        runtime_params = _runtime_params(getattr(cls, member))
        if runtime_params is not None:
            assert runtime_params == _params(fn), f"{name}.{member}: parameters differ"


def test_the_check_sees_a_wrong_stub():
    """The comparison above can fail: a renamed parameter is caught."""
    src = STUB.read_text().replace("def sq_distances(x: _FloatArray, centers", "def sq_distances(x: _FloatArray, centres")
    assert src != STUB.read_text()
    tree = ast.parse(src)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "sq_distances")
    assert _params(fn) != _runtime_params(_core.sq_distances)
