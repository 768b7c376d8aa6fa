"""Regenerate tests/data/tensorrt_api/bindings.txt: which names the `tensorrt` Python module binds in each
TensorRT release, read from NVIDIA's binding sources (tests/test_tensorrt.py checks every TensorRT name cnnx
uses against it, for every release from the oldest one cnnx supports).

    python scripts/tensorrt_api_lists.py GIT_DIR                 # every release from 10.0 on; rewrites the file
    python scripts/tensorrt_api_lists.py GIT_DIR --lists DIR     # also one plain list per release in DIR
    python scripts/tensorrt_api_lists.py GIT_DIR --ref 11.2=v11.2 ...   # chosen releases only

GIT_DIR is a git directory (bare clone or .git) of https://github.com/NVIDIA/TensorRT, e.g. made with
`git clone --bare https://github.com/NVIDIA/TensorRT`. Every release is read from its tag (vX.Y[.Z], the
open-source release commit), or from its release/X.Y branch when it has no tag; the file names the commit.

What counts as a name (our own text scanner; no NVIDIA code is copied, only the names are recorded):
  * python/src/**/*.cpp, after a small preprocessor pass with fixed macro values (the full `tensorrt`
    module built from the public repository): py::class_ / py::enum_ / py::bind_vector heads and the
    members chained on them or on their variable (.def, .def_static, .def_property*, .def_readwrite,
    .def_readonly, enum .value; .export_values() also puts the values on the enclosing scope), and
    m.def / m.attr / m.add_object on the module. Members of bound base classes are listed on the subclass too,
    as Python's attribute lookup finds them there.
  * python/packaging/bindings_wheel/tensorrt/__init__.py: top-level definitions (`__version__`, ...),
    `X.attr = ...`, and the loop that copies ILogger.Severity's values onto Logger.
  * Dunder members are left out, and so are pybind11's built-ins that are not in the source (an enum's
    .name/.value).
Names are written as `Name` (module attribute), `Class.member`, `Outer.Inner.member`.

The file is compact: one line per name with the releases that bind it as ranges over the release order
(`HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY 10.9-11.1`), after a header that names every release,
its ref, commit and date, and how many names it binds (the reader checks those counts).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Macro values for the full `tensorrt` module as built from the public repository (not tensorrt_lean /
# tensorrt_dispatch, which set EXPORT_ALL_BINDINGS 0). ENABLE_INETWORK_SERIALIZE / ENABLE_MDTRT need
# headers that the public repository does not ship, so public builds leave them undefined. pybind11 is
# assumed recent (>= 2.6); the platform is Linux.
DEFINES = {"EXPORT_ALL_BINDINGS": 1, "PYBIND11_VERSION_MAJOR": 2, "PYBIND11_VERSION_MINOR": 13}
UNDEFINED = {"ENABLE_INETWORK_SERIALIZE", "ENABLE_MDTRT", "_WIN32", "WIN32", "_MSC_VER", "WIN32_LEAN_AND_MEAN",
             "TRT_WINML", "TRT_RTX", "NOMINMAX"}
INIT_PY = "python/packaging/bindings_wheel/tensorrt/__init__.py"
# Placeholders in the __init__.py template, as the `tensorrt` wheel fills them in.
TEMPLATE_VALUES = {"TENSORRT_MODULE": "tensorrt", "TENSORRT_NVINFER_NAME": "nvinfer",
                   "TENSORRT_ONNXPARSER_NAME": "nvonnxparser", "TENSORRT_PLUGIN_DISABLED": "False"}

MEMBER_DEFS = {"def", "def_static", "def_property", "def_property_readonly", "def_property_static",
               "def_property_readonly_static", "def_readwrite", "def_readonly", "value", "attr"}


class ExtractError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------------------
# git
# ------------------------------------------------------------------------------------------------------------

def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def discover_refs(git_dir: str, oldest_major: int = 10) -> dict[str, str]:
    """version -> ref. Prefers the release tag (vX.Y[.Z], the OSS release commit) and falls back to the
    release/X.Y branch when no tag exists. Patch tags (v10.0.1, v10.13.2) are listed as their own versions."""
    tags = git(git_dir, "tag", "--list", "v*").split()
    branches = [b.strip() for b in git(git_dir, "for-each-ref", "--format=%(refname:short)",
                                       "refs/heads/release/", "refs/remotes/").split()]
    found: dict[str, str] = {}
    for t in tags:
        m = re.fullmatch(r"v(\d+)\.(\d+)(?:\.(\d+))?", t)
        if m and int(m.group(1)) >= oldest_major:
            version = f"{m.group(1)}.{m.group(2)}" + (f".{m.group(3)}" if m.group(3) not in (None, "0") else "")
            found.setdefault(version, t)
    for b in branches:
        m = re.search(r"release/(\d+)\.(\d+)(?:\.(\d+))?$", b)
        if m and int(m.group(1)) >= oldest_major:
            version = f"{m.group(1)}.{m.group(2)}" + (f".{m.group(3)}" if m.group(3) else "")
            found.setdefault(version, b)
    return dict(sorted(found.items(), key=lambda kv: version_key(kv[0])))


def version_key(v: str) -> tuple:
    """Numeric order for 10.2 < 10.10; non-numeric labels (e.g. `main`) sort last."""
    parts = v.split(".")
    if all(p.isdigit() for p in parts):
        return (0, *map(int, parts))
    return (1, v)


# ------------------------------------------------------------------------------------------------------------
# C++ preprocessing and tokenizing
# ------------------------------------------------------------------------------------------------------------

def strip_comments(text: str) -> str:
    """Blank out // and /* */ comments, keeping line breaks and string/char literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if m:
                end = text.find(")" + m.group(1) + '"', i)
                end = n if end < 0 else end + len(m.group(1)) + 2
                out.append(text[i:end])
                i = end
            else:
                out.append(c)
                i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def eval_condition(expr: str, where: str, warnings: list[str]) -> bool:
    expr = expr.strip()
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in DEFINES else "0", expr)
    unknown = [w for w in re.findall(r"\b[A-Za-z_]\w*\b", expr) if w not in DEFINES]
    for w in unknown:
        if w not in UNDEFINED:
            warnings.append(f"{where}: unknown macro {w} in #if {expr!r}, taken as 0")
    py = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: str(DEFINES.get(m.group(0), 0)), expr)
    py = py.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    if not re.fullmatch(r"(?:\s|\d|[()<>=!+\-*/%]|\band\b|\bor\b|\bnot\b)*", py):
        raise ExtractError(f"{where}: unsupported #if expression {expr!r}")
    try:
        return bool(eval(py, {"__builtins__": {}}, {}))  # noqa: S307 - digits and operators only
    except Exception as exc:  # pragma: no cover - reported
        raise ExtractError(f"{where}: cannot evaluate #if {expr!r}: {exc}") from exc


def preprocess(text: str, fname: str, warnings: list[str]) -> str:
    """Drop lines in inactive #if branches and all directive lines; keeps the line count."""
    lines = strip_comments(text).split("\n")
    # join continuation lines of directives (keeping the count with blank lines)
    out = []
    stack: list[tuple[bool, bool]] = []  # (branch active, some branch taken)
    active = True
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*#\s*(\w+)(.*)", line)
        if not m:
            out.append(line if active else "")
            i += 1
            continue
        directive, rest = m.group(1), m.group(2)
        nlines = 1
        while rest.rstrip().endswith("\\") and i + nlines < len(lines):
            rest = rest.rstrip()[:-1] + " " + lines[i + nlines]
            nlines += 1
        where = f"{fname}:{i + 1}"
        if directive in ("if", "ifdef", "ifndef"):
            if directive == "if":
                cond = eval_condition(rest, where, warnings)
            else:
                name = rest.split()[0]
                if name not in DEFINES and name not in UNDEFINED:
                    warnings.append(f"{where}: unknown macro {name} in #{directive}, taken as undefined")
                cond = (name in DEFINES) == (directive == "ifdef")
            stack.append((cond, cond))
        elif directive == "elif":
            _, taken = stack.pop()
            cond = (not taken) and eval_condition(rest, where, warnings)
            stack.append((cond, taken or cond))
        elif directive == "else":
            _, taken = stack.pop()
            stack.append((not taken, True))
        elif directive == "endif":
            stack.pop()
        # #define / #include / #pragma / #undef: no effect on which bindings exist (macro values are fixed above)
        active = all(a for a, _ in stack)
        out.extend([""] * nlines)
        i += nlines
    if stack:
        warnings.append(f"{fname}: unbalanced #if")
    return "\n".join(out)


TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<raw>R"(?P<delim>[^(\s]*)\((?:.|\n)*?\)(?P=delim)")
  | (?P<str>(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
  | (?P<chr>'(?:\\.|[^'\\\n])*')
  | (?P<num>\d[\w.']*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>::|->|<<=|>>=|==|!=|<=|>=|&&|\|\||\+\+|--|[-+*/%&|^!~=<>?:;,.(){}\[\]\#\\@$`])
""", re.VERBOSE)


@dataclass
class Tok:
    kind: str
    text: str
    line: int


def tokenize(text: str) -> list[Tok]:
    toks, pos, line = [], 0, 1
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise ExtractError(f"cannot tokenize at line {line}: {text[pos:pos + 40]!r}")
        kind = "str" if m.group("raw") else m.lastgroup
        s = m.group(0)
        if kind != "ws":
            toks.append(Tok(kind, s, line))
        line += s.count("\n")
        pos = m.end()
    return toks


def string_value(tok: Tok) -> str | None:
    if tok.kind != "str":
        return None
    s = tok.text
    if s.startswith("R"):
        return s[s.index("(") + 1:s.rindex(")")]
    s = s[s.index('"') + 1:-1]
    return bytes(s, "utf-8").decode("unicode_escape")


# ------------------------------------------------------------------------------------------------------------
# pybind11 chain scanner
# ------------------------------------------------------------------------------------------------------------

@dataclass
class Binding:
    qualname: str           # Python name, dotted for nested ("ILogger.Severity")
    kind: str               # class / enum / vector
    cpp_type: str           # first template argument, normalized
    bases: list[str]        # other template arguments (filtered later to bound types)
    where: str
    members: dict[str, str] = field(default_factory=dict)       # member -> where
    exported: bool = False  # enum .export_values()


@dataclass
class Extraction:
    module: dict[str, str] = field(default_factory=dict)        # name -> where
    classes: dict[str, Binding] = field(default_factory=dict)   # qualname -> binding
    warnings: list[str] = field(default_factory=list)


def norm_type(s: str) -> str:
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^(::)?(nvinfer1|nvonnxparser|nvinfer1::v_1_0|tensorrt)::", "", s)
    return s


def skip_balanced(toks: list[Tok], i: int, open_: str, close: str) -> int:
    """toks[i] is `open_`; return the index just past its matching `close`."""
    depth = 0
    n = len(toks)
    while i < n:
        t = toks[i].text
        if t == open_:
            depth += 1
        elif t == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ExtractError(f"unbalanced {open_}{close} from line {toks[min(i, n - 1)].line}")


def split_args(toks: list[Tok], i: int, open_: str = "(", close: str = ")") -> tuple[list[list[Tok]], int]:
    """toks[i] is `open_`; return (top-level comma-separated argument token lists, index past `close`)."""
    end = skip_balanced(toks, i, open_, close)
    args, cur, depth = [], [], 0
    for t in toks[i + 1:end - 1]:
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        if t.text == "," and depth == 0:
            args.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur or args:
        args.append(cur)
    return args, end


def template_args(toks: list[Tok], i: int) -> tuple[list[str], int]:
    """toks[i] is `<`; split its top-level comma-separated arguments (angle/paren aware)."""
    depth, j, args, cur = 0, i, [], []
    while j < len(toks):
        t = toks[j].text
        if t in ("<", "(", "[", "{"):
            depth += 1
            if depth == 1 and t == "<":
                j += 1
                continue
        elif t in (">", ")", "]", "}"):
            depth -= 1
            if depth == 0:
                args.append(cur)
                return [norm_type("".join(x.text for x in a)) for a in args], j + 1
        elif t == ">>":  # not produced by the tokenizer; kept for safety
            depth -= 2
        if t == "," and depth == 1:
            args.append(cur)
            cur = []
        else:
            cur.append(toks[j])
        j += 1
    raise ExtractError(f"unterminated template argument list at line {toks[i].line}")


def scan_file(fname: str, text: str, ex: Extraction, locate) -> None:
    toks = tokenize(preprocess(text, fname, ex.warnings))
    variables: dict[str, str] = {}   # C++ variable holding a binding -> qualname
    module_names = {"m"}             # names of the py::module parameter(s)
    for k in range(len(toks) - 3):   # find `py::module& name` / `py::module_& name` parameters
        if toks[k].text == "py" and toks[k + 1].text == "::" and toks[k + 2].text in ("module", "module_"):
            j = k + 3
            while j < len(toks) and toks[j].text in ("&", "const"):
                j += 1
            if j < len(toks) and toks[j].kind == "id":
                module_names.add(toks[j].text)

    def where(tok: Tok) -> str:
        return locate(fname, tok.line)

    def scope_of(arg: list[Tok]) -> str | None:
        """'' for the module, a qualname for a binding variable, None if unknown."""
        text = "".join(t.text for t in arg)
        if text in module_names:
            return ""
        return variables.get(text)

    def record_member(owner: str, name: str, tok: Tok, method: str) -> None:
        if owner == "":
            ex.module.setdefault(name, where(tok))
        else:
            ex.classes[owner].members.setdefault(name, where(tok))

    def follow_chain(owner: str, i: int) -> int:
        """At toks[i], consume `.method(args)` links applied to binding `owner` (or the module when owner
        is ''). Returns the index after the chain."""
        while i + 2 < len(toks) and toks[i].text == "." and toks[i + 1].kind == "id" and toks[i + 2].text == "(":
            method, mtok = toks[i + 1].text, toks[i + 1]
            args, i = split_args(toks, i + 2)
            first = string_value(args[0][0]) if args and len(args[0]) == 1 else None
            if method == "export_values":
                if owner == "":
                    ex.warnings.append(f"{where(mtok)}: export_values on the module?")
                else:
                    ex.classes[owner].exported = True
            elif method in MEMBER_DEFS:
                if first is not None:
                    record_member(owner, first, mtok, method)
                elif method == "def" and args and args[0] and args[0][0].text == "py":
                    pass  # .def(py::init...), .def(py::self == py::self): no name
                elif method == "value" and owner == "":
                    pass
                else:
                    ex.warnings.append(f"{where(mtok)}: .{method}( with a non-literal first argument "
                                       f"{''.join(t.text for t in args[0]) if args else ''!r} on "
                                       f"{owner or 'module'}")
            elif method in ("add_object",) and first is not None:
                record_member(owner, first, mtok, method)
            elif method == "def_buffer":
                pass  # buffer protocol: no name
            elif method.startswith("def") or method == "value":
                ex.warnings.append(f"{where(mtok)}: unhandled binding method .{method} on {owner or 'module'}")
            # other links (.doc(), .ptr(), .def_buffer(...)) add no name
        return i

    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        # py::class_<...>  / py::enum_<...> / py::bind_vector<...>
        if (t.text == "py" and i + 3 < n and toks[i + 1].text == "::"
                and toks[i + 2].text in ("class_", "enum_", "bind_vector", "bind_map") and toks[i + 3].text == "<"):
            kind = {"class_": "class", "enum_": "enum", "bind_vector": "vector", "bind_map": "map"}[toks[i + 2].text]
            targs, j = template_args(toks, i + 3)
            var = None
            if j < n and toks[j].kind == "id" and j + 1 < n and toks[j + 1].text in ("(", "{"):
                var, j = toks[j].text, j + 1   # declaration: py::class_<T> var{m, "Name"}
            if j >= n or toks[j].text not in ("(", "{"):
                i = j  # a type use (e.g. a cast target), not a binding
                continue
            close = ")" if toks[j].text == "(" else "}"
            args, after = split_args(toks, j, toks[j].text, close)
            if len(args) < 2 or string_value(args[1][0]) is None:
                ex.warnings.append(f"{where(t)}: py::{toks[i + 2].text} without a literal name: skipped")
                i = after
                continue
            scope = scope_of(args[0])
            name = string_value(args[1][0])
            if scope is None:
                ex.warnings.append(f"{where(t)}: unknown scope {''.join(x.text for x in args[0])!r} for {name}")
                scope = ""
            qual = f"{scope}.{name}" if scope else name
            if qual in ex.classes:
                ex.warnings.append(f"{where(t)}: {qual} bound twice (first at {ex.classes[qual].where})")
            else:
                ex.classes[qual] = Binding(qual, kind, targs[0] if targs else "", targs[1:], where(t))
            if scope:
                ex.classes[scope].members.setdefault(name, where(t))
            else:
                ex.module.setdefault(name, where(t))
            # `auto var = py::class_<...>(...)`
            if var is None and i >= 2 and toks[i - 1].text == "=" and toks[i - 2].kind == "id":
                var = toks[i - 2].text
            if var:
                variables[var] = qual
            i = follow_chain(qual, after)
            continue
        # var.def(...) on a binding variable, or m.def / m.attr / m.add_object on the module
        if t.kind == "id" and i + 1 < n and toks[i + 1].text == "." and (t.text in variables or t.text in module_names):
            if i > 0 and toks[i - 1].text in (".", "->", "::"):
                i += 1
                continue
            owner = variables.get(t.text, "")
            if t.text in module_names and t.text not in variables:
                owner = ""
            j = follow_chain(owner, i + 1)
            i = max(j, i + 1)
            continue
        i += 1


# ------------------------------------------------------------------------------------------------------------
# __init__.py
# ------------------------------------------------------------------------------------------------------------

class _Unknown(Exception):
    pass


def _eval_static(node: ast.AST):
    """Evaluate the few constant tests the template uses (placeholders filled, platform = linux)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BoolOp):
        # decided as soon as one operand decides it (False for `and`, True for `or`), even if others are unknown
        unknown = None
        for v in node.values:
            try:
                val = bool(_eval_static(v))
            except _Unknown as exc:
                unknown = exc
                continue
            if val != isinstance(node.op, ast.And):
                return val
        if unknown is not None:
            raise unknown
        return isinstance(node.op, ast.And)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval_static(node.operand)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        a, b = _eval_static(node.left), _eval_static(node.comparators[0])
        op = node.ops[0]
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        if isinstance(op, ast.In):
            return a in b
        if isinstance(op, ast.NotIn):
            return a not in b
    if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.platform":
        return "linux"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        obj = _eval_static(node.func.value)
        if isinstance(obj, str) and node.func.attr in ("startswith", "endswith", "strip", "lower"):
            return getattr(obj, node.func.attr)(*[_eval_static(a) for a in node.args])
    raise _Unknown(ast.unparse(node))


def scan_init_py(text: str, ex: Extraction, locate, fname: str = INIT_PY) -> None:
    def fill(m):
        return TEMPLATE_VALUES.get(m.group(1), "0")
    src = re.sub(r"##(\w+)##", fill, text)
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        ex.warnings.append(f"{fname}: not parseable after filling placeholders: {exc}")
        return

    def visit(body):
        for node in body:
            w = locate(fname, getattr(node, "lineno", 0))
            if isinstance(node, ast.If):
                try:
                    visit(node.body if _eval_static(node.test) else node.orelse)
                except _Unknown as exc:
                    ex.warnings.append(f"{w}: cannot decide `if {exc}`; both branches scanned")
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ex.module.setdefault(node.name, w)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for tgt in targets:
                    for el in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt]):
                        if isinstance(el, ast.Name):
                            ex.module.setdefault(el.id, w)
                        elif isinstance(el, ast.Attribute):
                            owner = ast.unparse(el.value)
                            if owner in ex.classes:
                                ex.classes[owner].members.setdefault(el.attr, w)
                            else:
                                ex.warnings.append(f"{w}: assignment to {owner}.{el.attr}: {owner} is not bound")
            elif isinstance(node, ast.Delete):
                for tgt in node.targets:
                    if isinstance(tgt, ast.Name):
                        ex.module.pop(tgt.id, None)
            elif isinstance(node, ast.For):
                # for k, v in E.__members__.items(): setattr(X, k, v)
                it = node.iter
                src_enum = None
                if (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "items"
                        and isinstance(it.func.value, ast.Attribute) and it.func.value.attr == "__members__"):
                    src_enum = ast.unparse(it.func.value.value)
                if src_enum is None:
                    ex.warnings.append(f"{w}: top-level for loop not understood")
                    continue
                for stmt in node.body:
                    call = stmt.value if isinstance(stmt, ast.Expr) else None
                    if (src_enum and isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                            and call.func.id == "setattr" and len(call.args) == 3):
                        target = ast.unparse(call.args[0])
                        if src_enum in ex.classes and target in ex.classes:
                            for member in ex.classes[src_enum].members:
                                ex.classes[target].members.setdefault(member, w)
                        else:
                            ex.warnings.append(f"{w}: setattr loop {src_enum} -> {target} not resolved")
            # imports, expressions: no new public names
    visit(tree.body)


# ------------------------------------------------------------------------------------------------------------
# assembling a release
# ------------------------------------------------------------------------------------------------------------

def extract_ref(git_dir: str, ref: str) -> Extraction:
    ex = Extraction()
    files = [f for f in git(git_dir, "ls-tree", "-r", "--name-only", ref, "python/src").split()
             if f.endswith((".cpp", ".cc", ".cxx"))]
    # bindTensorRT calls the others; order only matters for scope variables, which are file-local.
    order = sorted(files, key=lambda f: (not f.endswith("pyFoundationalTypes.cpp"), f))
    def locate(fname, line):
        return f"{fname}:{line}"
    for f in order:
        scan_file(f, git(git_dir, "show", f"{ref}:{f}"), ex, locate)
    try:
        init_text = git(git_dir, "show", f"{ref}:{INIT_PY}")
    except subprocess.CalledProcessError:
        ex.warnings.append(f"{ref}: no {INIT_PY}")
    else:
        scan_init_py(init_text, ex, locate)
    return ex


def names_of(ex: Extraction, inherited: bool = True, dunders: bool = False) -> dict[str, str]:
    """name -> where (source location of the binding; 'inherited from X' for inherited members)."""
    by_type: dict[str, str] = {}
    for b in ex.classes.values():
        by_type.setdefault(b.cpp_type, b.qualname)
        by_type.setdefault(b.cpp_type.split("::")[-1], b.qualname)

    def keep(member: str) -> bool:
        return dunders or not (member.startswith("__") and member.endswith("__"))

    out: dict[str, str] = {}
    for name, w in ex.module.items():
        if keep(name) or name == "__version__":
            out[name] = w

    def all_members(qual: str, seen: set[str]) -> dict[str, str]:
        b = ex.classes[qual]
        members = dict(b.members)
        if inherited:
            for base in b.bases:
                bq = by_type.get(base) or by_type.get(base.split("::")[-1])
                if bq and bq != qual and bq not in seen:
                    for m, w in all_members(bq, seen | {qual}).items():
                        members.setdefault(m, f"{w} (inherited from {bq})" if "inherited" not in w else w)
        return members

    for qual, b in ex.classes.items():
        for m, w in all_members(qual, set()).items():
            if keep(m):
                out[f"{qual}.{m}"] = w
        if b.exported:
            scope = qual.rsplit(".", 1)[0] if "." in qual else ""
            for m, w in b.members.items():
                key = f"{scope}.{m}" if scope else m
                out.setdefault(key, f"{w} (export_values)")
    # a nested class/enum is a member of its scope: already recorded as scope.member
    return out


# ------------------------------------------------------------------------------------------------------------
# the compact file
# ------------------------------------------------------------------------------------------------------------

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tensorrt_api" / "bindings.txt"


def ranges(indices: list[int], versions: list[str]) -> str:
    """Release indices [0, 1, 2, 5] -> '10.0-10.2,10.5': the contiguous runs in release order."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(versions[r[0]] if len(r) == 1 else f"{versions[r[0]]}-{versions[r[-1]]}" for r in runs)


def compact(repo: str, releases: list[tuple[str, str, str, str, set[str]]]) -> str:
    versions = [r[0] for r in releases]
    lines = ["# Names the `tensorrt` Python module binds, per TensorRT release, read from the binding sources of",
             f"# https://github.com/{repo} by scripts/tensorrt_api_lists.py (its docstring says how to regenerate).",
             "# '@ VERSION REF COMMIT DATE COUNT': one release, oldest first. Then one line per name: the name and",
             "# the releases that bind it, as ranges over that release order (10.9-11.1: every release listed",
             "# from 10.9 to 11.1)."]
    lines += [f"@ {v} {ref} {commit} {date} {len(names)}" for v, ref, commit, date, names in releases]
    for name in sorted(set().union(*(r[4] for r in releases))):
        lines.append(f"{name} {ranges([i for i, r in enumerate(releases) if name in r[4]], versions)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("git_dir", help="a git directory (bare or .git) of NVIDIA/TensorRT")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the compact file (default {DEFAULT_OUT})")
    ap.add_argument("--ref", action="append", default=[], metavar="VERSION=REF",
                    help="a release to extract (repeatable), e.g. 10.8=v10.8.0; default: every release from 10.0 on")
    ap.add_argument("--lists", type=Path, help="also write one plain list per release, tensorrt-<version>.txt")
    ap.add_argument("--repo", default="NVIDIA/TensorRT", help="the repository named in the header")
    args = ap.parse_args(argv)

    refs = dict(r.split("=", 1) for r in args.ref) or discover_refs(args.git_dir)
    releases, warnings = [], 0
    for version, ref in sorted(refs.items(), key=lambda kv: version_key(kv[0])):
        commit = git(args.git_dir, "rev-parse", f"{ref}^{{commit}}").strip()
        date = git(args.git_dir, "log", "-1", "--format=%cs", commit).strip()
        ex = extract_ref(args.git_dir, commit)
        names = set(names_of(ex))
        for w in ex.warnings:
            print(f"[{version} {ref}] warning: {w}", file=sys.stderr)
        warnings += len(ex.warnings)
        releases.append((version, ref, commit, date, names))
        print(f"{version:8} {ref:16} {commit} {len(names):5} names", file=sys.stderr)
        if args.lists:
            args.lists.mkdir(parents=True, exist_ok=True)
            (args.lists / f"tensorrt-{version}.txt").write_text(
                f"# TensorRT {version}: https://github.com/{args.repo} ref {ref} commit {commit} ({date}), "
                f"{len(names)} names\n" + "".join(f"{n}\n" for n in sorted(names)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(compact(args.repo, releases))
    print(f"wrote {args.out} ({len(releases)} releases, {warnings} warnings)", file=sys.stderr)
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
