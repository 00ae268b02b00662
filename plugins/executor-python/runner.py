"""Keel's python/v1 runner: runs one Python script for the executor-python plugin.

Invoked as `python3 runner.py`, it reads one JSON request from stdin:

    {"nonce": "...", "mode": "run" | "execute" | "describe", "file": "...", "code": "...",
     "cwd": "...", "globals": {...}, "args": [...], "kwargs": {...}, "entrypoint": "...",
     "context": {...}}

and reports on its stdout, after everything the script printed, one frame line:

    "\\n" + "\\x1eKEEL_RESULT:" + nonce + "\\x1e" + JSON + "\\n"

where JSON is {"ok": true, "value": ...} or {"ok": false, "error": {"kind": ..., ...}}. The host
takes the last frame carrying its nonce; a script cannot forge one without knowing the nonce, which
only the request holds. Everything else on stdout and stderr is the script's own output.

Only the standard library is used; written for Python 3.8 and later.
"""

import ast
import builtins
import json
import keyword
import linecache
import math
import os
import sys
import traceback
import types

MARK = "\x1eKEEL_RESULT:"
KEEL = "__keel__"
RUNNER_FILE = os.path.abspath(__file__)
ENTRYPOINT_NAMES = ("main", "run")
MAX_FRAMES = 10
MAX_DEPTH = 200

# Module attributes the interpreter owns; overriding them would break the script, not configure it.
PROTECTED = frozenset(
    {
        "__name__",
        "__file__",
        "__package__",
        "__loader__",
        "__spec__",
        "__cached__",
        "__builtins__",
        "__doc__",
        "__annotations__",
        KEEL,
    }
)

# The runner's own module: kept alive after the script takes over sys.modules["__main__"].
_SELF = sys.modules[__name__]


class Failure(Exception):
    """A failure to report to the host as {"ok": false, "error": payload}."""

    def __init__(self, payload):
        super().__init__(payload.get("kind", "failure"))
        self.payload = payload


# ---------------------------------------------------------------------------------------------
# JSON results


class NotJson(Exception):
    def __init__(self, path, type_name, reason):
        super().__init__(reason)
        self.path = path
        self.type_name = type_name
        self.reason = reason


def _type_name(value):
    cls = type(value)
    module = getattr(cls, "__module__", "builtins")
    return cls.__qualname__ if module in ("builtins", "__main__") else module + "." + cls.__qualname__


def _key(key, path):
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return repr(key)
    raise NotJson(path, _type_name(key), "has a dict key of type " + _type_name(key))


def to_json(value, path="result", depth=0, stack=None):
    """Returns `value` as plain JSON data, or raises NotJson naming where and what is not JSON.

    Tuples become lists; non-finite floats become None (as JSON.stringify does); an object with a
    callable `tolist` (numpy arrays and scalars, torch tensors) is converted through it.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if depth > MAX_DEPTH:
        raise NotJson(path, _type_name(value), "is nested more than %d levels deep" % MAX_DEPTH)
    if stack is None:
        stack = set()
    if isinstance(value, (list, tuple, dict)):
        if id(value) in stack:
            raise NotJson(path, _type_name(value), "contains itself (a reference cycle)")
        stack.add(id(value))
        try:
            if isinstance(value, dict):
                out = {}
                for k, v in value.items():
                    key = _key(k, path)
                    out[key] = to_json(v, "%s[%s]" % (path, json.dumps(key)), depth + 1, stack)
                return out
            return [to_json(v, "%s[%d]" % (path, i), depth + 1, stack) for i, v in enumerate(value)]
        finally:
            stack.discard(id(value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, type):
        try:
            converted = tolist()
        except Exception:
            converted = value
        if converted is not value:
            return to_json(converted, path, depth + 1, stack)
    raise NotJson(path, _type_name(value), "is a " + _type_name(value) + ", which is not JSON")


def json_value(value, path="result"):
    try:
        return to_json(value, path)
    except NotJson as e:
        raise Failure({"kind": "result", "path": e.path, "type": e.type_name, "reason": e.reason})


# ---------------------------------------------------------------------------------------------
# Errors raised by the script


def _user_traceback(tb):
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == RUNNER_FILE:
        tb = tb.tb_next
    return tb


def _safe_str(e):
    try:
        return str(e)
    except BaseException:
        try:
            return repr(e)
        except BaseException:
            return "<unprintable %s>" % type(e).__name__


def exception_payload(e):
    tb = _user_traceback(e.__traceback__)
    frames = [
        {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line or ""}
        for f in traceback.extract_tb(tb)
    ][-MAX_FRAMES:]
    try:
        text = "".join(traceback.format_exception(type(e), e, tb))
    except BaseException:
        text = "%s: %s\n" % (_type_name(e), _safe_str(e))
    payload = {
        "kind": "exception",
        "type": _type_name(e),
        "message": _safe_str(e),
        "frames": frames,
        "traceback": text,
    }
    if isinstance(e, SyntaxError):
        payload["message"] = e.msg or _safe_str(e)
        payload["syntax"] = {"file": e.filename, "line": e.lineno, "offset": e.offset, "text": e.text}
    return payload


def call_user(fn):
    """Runs script code; returns (exited, value). sys.exit(0) or sys.exit() ends it successfully."""
    try:
        return False, fn()
    except SystemExit as e:
        code = e.code
        if code is None or code == 0:
            return True, None
        if isinstance(code, int):
            raise Failure({"kind": "exit", "code": code})
        # sys.exit("message"): Python prints the message and exits with 1.
        raise Failure({"kind": "exit", "code": 1, "message": _safe_str(code)})
    except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt from the script is a failure too
        raise Failure(exception_payload(e))


# ---------------------------------------------------------------------------------------------
# Loading a script


def resolve_file(file):
    path = os.path.abspath(file)
    if not os.path.isfile(path):
        raise Failure({"kind": "not_found", "path": path})
    return path


def load_source(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as e:
        raise Failure({"kind": "not_found", "path": path, "reason": _safe_str(e)})
    return data


def parse(source, path):
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as e:  # ValueError for NUL bytes is an error in the script too
        raise Failure(exception_payload(e))
    except ValueError as e:
        raise Failure(exception_payload(SyntaxError(_safe_str(e))))


def new_module(path):
    module = types.ModuleType("__main__")
    g = module.__dict__
    g["__file__"] = path
    g["__builtins__"] = builtins
    g["__cached__"] = None
    g["__loader__"] = None
    g["__spec__"] = None
    g["__package__"] = None
    return module


def enter_module(module, path, script_dir):
    # Pickle, dataclasses and typing look classes up through sys.modules[cls.__module__].
    sys.modules["__main__"] = module
    sys.argv = [path]
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(RUNNER_FILE):
        sys.path[0] = script_dir
    else:
        sys.path.insert(0, script_dir)


# ---------------------------------------------------------------------------------------------
# Defaults (describe) and the override rewrite (run)


def _bound_names(target, out):
    if isinstance(target, ast.Name):
        out.append(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            _bound_names(elt, out)
    elif isinstance(target, ast.Starred):
        _bound_names(target.value, out)
    return out


def _pairs(target, value):
    """(name, value node or None) for each name a target binds; None when no literal lines up."""
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if (
        isinstance(target, (ast.Tuple, ast.List))
        and isinstance(value, (ast.Tuple, ast.List))
        and len(target.elts) == len(value.elts)
        and not any(isinstance(e, ast.Starred) for e in list(target.elts) + list(value.elts))
    ):
        out = []
        for t, v in zip(target.elts, value.elts):
            out.extend(_pairs(t, v))
        return out
    return [(name, None) for name in _bound_names(target, [])]


def describe_defaults(tree):
    """{name: default} for the module body's assignments whose value is a JSON-able literal.

    The first statement of the module body that binds a name decides: a literal assignment
    (`lr = 0.001`, `lr: float = 0.001`, `a, b = 1, 2`) makes it a default; anything else (an
    import, a def, a computed value, `+=`) means the name has none. Names starting with `_` are
    private and never listed.
    """
    defaults = {}
    seen = set()

    def bind(name, node):
        if name in seen:
            return
        seen.add(name)
        if node is None or name.startswith("_"):
            return
        try:
            defaults[name] = to_json(ast.literal_eval(node))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, NotJson):
            pass

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for name, node in _pairs(target, stmt.value):
                    bind(name, node)
        elif isinstance(stmt, ast.AnnAssign):
            if isinstance(stmt.target, ast.Name) and stmt.value is not None:
                bind(stmt.target.id, stmt.value)
        elif isinstance(stmt, ast.AugAssign):
            for name in _bound_names(stmt.target, []):
                bind(name, None)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(stmt.name, None)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                bind((alias.asname or alias.name).split(".")[0], None)
    return defaults


def _keel_attr(attr, ctx=None):
    return ast.Attribute(value=ast.Name(id=KEEL, ctx=ast.Load()), attr=attr, ctx=ctx or ast.Load())


def _override(name):
    return ast.Subscript(value=_keel_attr("overrides"), slice=_index(name), ctx=ast.Load())


def _index(name):
    # Python 3.8 wraps subscripts in ast.Index; later versions take the expression itself.
    constant = ast.Constant(value=name)
    return ast.Index(value=constant) if sys.version_info < (3, 9) else constant


class OverrideRewriter(ast.NodeTransformer):
    """Makes every module-scope `=` or annotated assignment to an overridden name keep the override.

    Module scope is the module body and the bodies of the compound statements in it (if/elif/else,
    for/while, try/except/else/finally, with, match); function and class bodies are left alone.
    - `lr = 0.001` becomes `lr = __keel__.overrides["lr"]`: the default is not even evaluated.
    - `lr: float = 0.001` keeps its annotation and takes the override the same way.
    - In `a, b = f()` or `a = b = 1` the store to an overridden `a` goes to a scratch dict instead
      (the right side still runs, for the other names), and `a = __keel__.overrides["a"]` follows.
    - `lr *= 2`, `for lr in ...`, `import lr`, `def lr` and `(lr := ...)` are not rewritten: an
      augmented assignment applies to the override, as it would to the default.
    """

    def __init__(self, names):
        self.names = frozenset(names)

    def _skip(self, node):
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip

    def visit_Assign(self, node):
        targets = node.targets
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id in self.names:
            node.value = ast.copy_location(_override(targets[0].id), node.value)
            return node
        discarded = []
        node.targets = [self._discard(t, discarded) for t in targets]
        if not discarded:
            return node
        repins = [
            ast.copy_location(ast.Assign(targets=[ast.Name(id=n, ctx=ast.Store())], value=_override(n)), node)
            for n in dict.fromkeys(discarded)
        ]
        return [node] + repins

    def visit_AnnAssign(self, node):
        if node.value is not None and isinstance(node.target, ast.Name) and node.target.id in self.names:
            node.value = ast.copy_location(_override(node.target.id), node.value)
        return node

    def _discard(self, target, out):
        if isinstance(target, ast.Name) and target.id in self.names:
            out.append(target.id)
            scratch = ast.Subscript(value=_keel_attr("discard"), slice=_index(target.id), ctx=ast.Store())
            return ast.copy_location(scratch, target)
        if isinstance(target, (ast.Tuple, ast.List)):
            target.elts = [self._discard(e, out) for e in target.elts]
        elif isinstance(target, ast.Starred):
            target.value = self._discard(target.value, out)
        return target


def _is_main_guard(test):
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def rewrite_main_guards(tree):
    """Routes each top-level `if __name__ == "__main__":` through `__keel__.main_guard()`."""
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
            call = ast.Call(func=_keel_attr("main_guard"), args=[], keywords=[])
            stmt.test = ast.copy_location(call, stmt.test)


class KeelState:
    """What rewritten module code reaches through the `__keel__` global while the module runs."""

    def __init__(self, overrides, entrypoint, module_globals):
        self.overrides = overrides
        self.discard = {}
        self.entrypoint = entrypoint
        self.globals = module_globals
        self.guard_ran = False

    def main_guard(self):
        # The block runs only when the caller named no entrypoint and the script has (so far) no
        # main() or run() of its own, which would otherwise be called twice.
        if self.entrypoint is not None:
            return False
        if any(_own_callable(self.globals.get(n)) for n in ENTRYPOINT_NAMES):
            return False
        self.guard_ran = True
        return True


def _own_callable(value):
    """A function or callable object the script defined (not `from subprocess import run`)."""
    return callable(value) and not isinstance(value, type) and getattr(value, "__module__", None) == "__main__"


def _callables(g):
    return sorted(
        n for n, v in g.items() if not n.startswith("__") and callable(v) and not isinstance(v, type)
    )


def check_override_names(overrides):
    for name in overrides:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise Failure({"kind": "config", "name": name, "reason": "is not a Python identifier"})
        if name in PROTECTED:
            raise Failure({"kind": "config", "name": name, "reason": "is set by Python itself"})


def _call_entrypoint(fn, args, kwargs):
    import inspect  # imported here: asyncio and inspect add a third to the runner's start-up

    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise Failure({"kind": "arguments", "message": _safe_str(e)})
    except ValueError:
        pass  # no signature to check (some builtins); the call itself will tell
    exited, value = call_user(lambda: fn(*args, **kwargs))
    if not exited and inspect.iscoroutine(value):
        import asyncio

        exited, value = call_user(lambda: asyncio.run(value))
    return value


# ---------------------------------------------------------------------------------------------
# Modes


def mode_describe(request):
    path = resolve_file(request["file"])
    tree = parse(load_source(path), path)
    return describe_defaults(tree)


def mode_run(request):
    path = resolve_file(request["file"])
    tree = parse(load_source(path), path)
    overrides = dict(request.get("globals") or {})
    check_override_names(overrides)
    # JSON has one number type: an integral override of a float default stays a float.
    defaults = describe_defaults(tree)
    for name, value in overrides.items():
        if isinstance(defaults.get(name), float) and isinstance(value, int) and not isinstance(value, bool):
            overrides[name] = float(value)
    args = list(request.get("args") or [])
    kwargs = dict(request.get("kwargs") or {})
    entrypoint = request.get("entrypoint")

    module = new_module(path)
    g = module.__dict__
    g["__doc__"] = ast.get_docstring(tree)
    g.update(overrides)
    state = KeelState(overrides, entrypoint, g)
    g[KEEL] = state
    tree = OverrideRewriter(overrides.keys()).visit(tree)
    rewrite_main_guards(tree)
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise Failure(exception_payload(e))
    enter_module(module, path, os.path.dirname(path))
    exited, _ = call_user(lambda: exec(code, g))
    g.pop(KEEL, None)

    if entrypoint is not None:
        fn = g.get(entrypoint)
        if not callable(fn):
            raise Failure({"kind": "entrypoint", "name": entrypoint, "callables": _callables(g)})
        return json_value(_call_entrypoint(fn, args, kwargs))
    if not exited and not state.guard_ran:
        for name in ENTRYPOINT_NAMES:
            fn = g.get(name)
            if _own_callable(fn):
                return json_value(_call_entrypoint(fn, args, kwargs))
    if args or kwargs:
        raise Failure({"kind": "entrypoint", "name": None, "callables": _callables(g)})
    return json_value(g.get("result"))


def mode_execute(request):
    context = request.get("context")
    if "code" in request and request["code"] is not None:
        path = "<code>"
        source = request["code"]
        script_dir = os.getcwd()
        linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    else:
        path = resolve_file(request["file"])
        source = load_source(path)
        script_dir = os.path.dirname(path)
    tree = parse(source, path)
    module = new_module(path)
    g = module.__dict__
    g["__doc__"] = ast.get_docstring(tree)
    g["context"] = context if isinstance(context, dict) else {}
    try:
        code = compile(tree, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise Failure(exception_payload(e))
    enter_module(module, path, script_dir)
    call_user(lambda: exec(code, g))
    return json_value(g.get("result"))


MODES = {"describe": mode_describe, "run": mode_run, "execute": mode_execute}


# ---------------------------------------------------------------------------------------------
# Main


def _flush_all():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            pass


def emit(fd, nonce, payload):
    _flush_all()
    try:
        body = json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        body = json.dumps({"ok": False, "error": {"kind": "internal", "message": _safe_str(e)}})
    data = memoryview(("\n" + MARK + nonce + "\x1e" + body + "\n").encode("ascii"))
    while len(data):
        written = os.write(fd, data)
        data = data[written:]


def main():
    out_fd = os.dup(1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    try:
        # Line buffering lets the host show progress as the script prints it.
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    try:
        request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        nonce = request["nonce"]
        mode = MODES[request["mode"]]
    except Exception as e:  # the host sent something this runner does not understand
        sys.stderr.write("keel runner: bad request: %s\n" % _safe_str(e))
        sys.stderr.flush()
        sys.exit(70)
    try:
        cwd = request.get("cwd")
        if cwd:
            try:
                os.chdir(cwd)
            except OSError as e:
                raise Failure({"kind": "cwd", "path": os.path.abspath(cwd), "reason": _safe_str(e)})
        payload = {"ok": True, "value": mode(request)}
    except Failure as f:
        payload = {"ok": False, "error": f.payload}
    except BaseException as e:  # a bug in this runner, not in the script
        payload = {
            "ok": False,
            "error": {"kind": "internal", "message": _safe_str(e), "traceback": traceback.format_exc()},
        }
    del request
    emit(out_fd, nonce, payload)


if __name__ == "__main__":
    main()
