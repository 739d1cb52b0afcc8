"""Checks of the Slicer extension's layout that run without Slicer: CMake, catalog JSON, icons, .ui, imports.

What Slicer's build, the Extensions Index and a module load would reject (or silently mis-wire) is checked
here from the files: CMake metadata and module lists, resources that must exist, catalog keys allowed by the
schema, 128×128 icons, .ui bindings to the parameter nodes, module-scope imports, pip requirements, licence.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EXTENSION = "RadTyper"
MODULES = ("RadTyper", "RadTyperLesions")

# Slicer/Slicer : Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json ("additionalProperties": false).
CATALOG_SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
CATALOG_ALLOWED_KEYS = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "dicom_support_rule",
    "build_subdirectory",
    "enabled",
    "tier",
}
CATALOG_REQUIRED_KEYS = {"$schema", "category", "scm_url"}

# Packages a module file may import at module scope besides the standard library (Extensions Index review).
ALLOWED_MODULE_SCOPE_IMPORTS = {"slicer", "vtk", "numpy", "SimpleITK", "qt", "ctk"}
# Bundled with Slicer (must not be reinstalled) or provided by the PyTorch extension (never from pip).
FORBIDDEN_REQUIREMENTS = {"torch", "torchvision", "numpy", "scipy", "simpleitk", "vtk"}

ICON_SIZE = (128, 128)

#: Slicer-side package of each module (panel controller, helpers): imports slicer/qt, not run by pytest.
SLICER_PACKAGES = {"RadTyper": "RadTyperSlicerLib", "RadTyperLesions": "RadTyperLesionsLib"}
#: Parameters that are internal state, not settings shown in the panel.
INTERNAL_PARAMETERS = {"RadTyper": set(), "RadTyperLesions": {"segmentEditorNode"}}
#: Widget classes a parameter may be bound to, and the annotation they need (parameterNodeWrapper connectors).
BINDABLE = {
    "qMRMLNodeComboBox": "node",
    "qSlicerSimpleMarkupsWidget": "node",
    "ctkSliderWidget": "WithinRange",
    "QComboBox": "Choice",
    "QCheckBox": "bool",
    "ctkPathLineEdit": "str",  # RadTyper's connector: "" = unset (Slicer's pathlib.Path one shows ".")
    "QLineEdit": "str",
}
#: Packages whose code must stay Qt-free (tested with plain pytest and slicer-core).
QT_FREE_FILES = sorted(
    [*(REPO / "RadTyper" / "RadTyperMRML").glob("*.py"), REPO / "RadTyper" / "RadTyperLib" / "jobs.py"]
)


# --- tiny CMake reader ------------------------------------------------------------------------------------
def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``[(command_lower, [args])]`` of a CMake file; comments dropped, quoted arguments unquoted."""
    text = path.read_text(encoding="utf-8")
    commands: list[tuple[str, list[str]]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*\(").match(text, i)
        if not m:
            i += 1
            continue
        name = m.group(0)[:-1].strip().lower()
        i = m.end()
        args: list[str] = []
        depth, token, quoted = 1, None, False
        while i < n:
            c = text[i]
            if quoted:
                if c == "\\" and i + 1 < n:
                    token += text[i + 1]
                    i += 2
                    continue
                if c == '"':
                    quoted = False
                else:
                    token += c
            elif c == '"':
                quoted, token = True, token or ""
            elif c == "#":
                i = text.find("\n", i)
                i = n if i < 0 else i
                continue
            elif c in " \t\r\n()":
                if token is not None:
                    args.append(token)
                    token = None
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
            else:
                token = (token or "") + c
            i += 1
        commands.append((name, args))
    return commands


def expand(value: str, variables: dict[str, list[str]]) -> list[str]:
    """Expand ``${VAR}`` references; a list variable spliced alone expands to several values."""
    whole = re.fullmatch(r"\$\{(\w+)\}", value)
    if whole:
        return list(variables.get(whole.group(1), []))
    return [re.sub(r"\$\{(\w+)\}", lambda m: ";".join(variables.get(m.group(1), [])), value)]


def cmake_glob_recurse(base: Path, pattern: str, relative: Path | None) -> list[str]:
    """CMake ``file(GLOB_RECURSE)``: ``dir/<file pattern>`` matched in ``dir`` and all its subfolders."""
    pattern_path = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    folder, file_pattern = pattern_path.parent, pattern_path.name
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob(file_pattern) if p.is_file()]
    return sorted(str(p.relative_to(relative)) if relative else str(p) for p in found)


def evaluate_module_cmake(module_dir: Path) -> tuple[dict[str, list[str]], list[tuple[str, list[str]]]]:
    """Evaluate the ``set``/``file(GLOB_RECURSE)``/``list`` commands of a module CMakeLists.txt.

    Returns the variables and the other commands with their arguments expanded.
    """
    variables: dict[str, list[str]] = {"CMAKE_CURRENT_SOURCE_DIR": [str(module_dir)]}
    others: list[tuple[str, list[str]]] = []
    for name, raw_args in cmake_commands(module_dir / "CMakeLists.txt"):
        args = [v for a in raw_args for v in expand(a, variables)]
        if name == "set":
            variables[args[0]] = args[1:]
        elif name == "file" and args[0] == "GLOB_RECURSE":
            var, rest = args[1], args[2:]
            relative = None
            if rest[:1] == ["RELATIVE"]:
                relative, rest = Path(rest[1]), rest[2:]
            rest = [a for a in rest if a not in ("CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS")]
            variables[var] = [
                f for pattern in rest for f in cmake_glob_recurse(module_dir, pattern, relative)
            ]
        elif name == "list" and args[0] == "FILTER":
            var, mode, regex = args[1], args[2], args[4]
            keep = mode == "INCLUDE"
            variables[var] = [v for v in variables.get(var, []) if bool(re.search(regex, v)) == keep]
        elif name == "list" and args[0] == "SORT":
            variables[args[1]] = sorted(variables.get(args[1], []))
        else:
            others.append((name, args))
    return variables, others


def macro_arguments(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    """Split a ``cmake_parse_arguments``-style argument list by keyword."""
    out: dict[str, list[str]] = {}
    current = None
    for a in args:
        if a in keywords:
            current = a
            out.setdefault(a, [])
        elif current is not None:
            out[current].append(a)
    return out


@cache
def top_level() -> dict[str, list[str]]:
    """Top-level CMake: ``{command or variable: args}`` for project, set(EXTENSION_*), add_subdirectory."""
    info: dict[str, list[str]] = {"add_subdirectory": [], "include": [], "find_package": []}
    for name, args in cmake_commands(REPO / "CMakeLists.txt"):
        if name == "set":
            info[args[0]] = args[1:]
        elif name in ("add_subdirectory", "include"):
            info[name].append(args[0])
        elif name == "find_package":
            info[name].append(" ".join(args))
        elif name == "project":
            info["project"] = args
    return info


# --- top-level CMake and catalog entry --------------------------------------------------------------------
def test_cmake_reader_understands_quotes_and_comments(tmp_path):
    f = tmp_path / "CMakeLists.txt"
    f.write_text('set(A "x (y) # z" b) # comment (\nlist(FILTER A EXCLUDE REGEX "\\\\.py$")\n')
    assert cmake_commands(f) == [
        ("set", ["A", "x (y) # z", "b"]),
        ("list", ["FILTER", "A", "EXCLUDE", "REGEX", "\\.py$"]),
    ]


def test_project_name_matches_catalog_entry():
    assert top_level()["project"] == [EXTENSION]
    catalogs = sorted(p.stem for p in REPO.glob("*.json"))
    assert catalogs == [EXTENSION], "the catalog entry must be <project name>.json at the top level"


@pytest.mark.parametrize(
    "variable",
    ["EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"],
)  # fmt: skip
def test_extension_metadata_is_set(variable):
    values = top_level().get(variable)
    assert values and all(v.strip() for v in values), f"{variable} is not set in CMakeLists.txt"


def test_extension_metadata_is_consistent():
    info = top_level()
    homepage = info["EXTENSION_HOMEPAGE"][0]
    assert homepage.startswith("https://github.com/") and homepage.rsplit("/", 1)[1].startswith("Slicer")
    assert info["EXTENSION_CATEGORY"] == ["Quantification"]
    icon_url = info["EXTENSION_ICONURL"][0]
    raw_base = homepage.replace("https://github.com/", "https://raw.githubusercontent.com/")
    assert icon_url.startswith(raw_base + "/"), "icon URL must be a raw URL of the extension repository"
    assert (REPO / icon_url.split("/", 6)[6]).is_file(), f"{icon_url} names no file of this repository"
    for url in info["EXTENSION_SCREENSHOTURLS"][0].split():
        assert url.startswith(raw_base + "/main/"), "screenshot URL must be a raw URL of the repository"
        assert (REPO / url.split("/", 6)[6]).is_file(), f"{url} names no file of this repository"
    assert "5.10 and 5.12" in info["EXTENSION_DESCRIPTION"][0]
    assert info["EXTENSION_DEPENDS"][0].split() == ["PyTorch"]
    assert "Slicer REQUIRED" in info["find_package"]
    assert "${Slicer_EXTENSION_GENERATE_CONFIG}" in info["include"]
    assert "${Slicer_EXTENSION_CPACK}" in info["include"]


def test_one_add_subdirectory_per_module_folder():
    module_folders = sorted(p.parent.name for p in REPO.glob("*/*.py") if p.stem == p.parent.name)
    assert module_folders == sorted(MODULES)
    assert top_level()["add_subdirectory"] == list(MODULES)


def test_catalog_entry_follows_schema():
    entry = json.loads((REPO / f"{EXTENSION}.json").read_text(encoding="utf-8"))
    assert set(entry) <= CATALOG_ALLOWED_KEYS, (
        f"keys not allowed by the schema: {set(entry) - CATALOG_ALLOWED_KEYS}"
    )
    assert set(entry) >= CATALOG_REQUIRED_KEYS
    assert entry["$schema"] == CATALOG_SCHEMA_URL
    info = top_level()
    assert entry["category"] == info["EXTENSION_CATEGORY"][0]
    assert entry["scm_url"] == info["EXTENSION_HOMEPAGE"][0]
    assert entry["build_dependencies"] == info["EXTENSION_DEPENDS"][0].split()
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    # the SuperBuild (pyradiomics) builds the extension itself in EXTENSION_BUILD_SUBDIRECTORY
    assert entry["build_subdirectory"] == info["EXTENSION_BUILD_SUBDIRECTORY"][0] == "inner-build"


def test_superbuild_builds_pyradiomics_without_replacing_slicers_packages():
    info = top_level()
    assert info["SUPERBUILD_TOPLEVEL_PROJECT"] == ["inner"]
    assert "${CMAKE_CURRENT_SOURCE_DIR}/SuperBuild.cmake" in info["include"]
    text = (REPO / "SuperBuild" / "External_python-pyradiomics.cmake").read_text(encoding="utf-8")
    assert "--no-deps" in text and "pyradiomics-bhklab==" in text and "docopt" in text
    packages = text.split("set(_packages", 1)[1].split(")", 1)[0]
    assert "numpy" not in packages.lower() and "simpleitk" not in packages.lower()
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert 'set(RadTyper_MINIMUM_SLICER_VERSION "5.10")' in top


# --- module CMake -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_builds_scripted_module_with_existing_files(module):
    module_dir = REPO / module
    variables, commands = evaluate_module_cmake(module_dir)
    builds = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    assert len(builds) == 1, "exactly one slicerMacroBuildScriptedModule() call"
    parsed = macro_arguments(builds[0], {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR"})
    assert parsed["NAME"] == [module]
    assert "WITH_GENERIC_TESTS" in parsed
    scripts, resources = parsed["SCRIPTS"], parsed["RESOURCES"]
    assert f"{module}.py" in scripts
    for item in scripts + resources:
        path = module_dir / item
        assert path.is_file() or path.with_name(path.name + ".py").is_file(), (
            f"{module}: listed file {item} missing"
        )
    for required in (
        f"Resources/Icons/{module}.png",
        f"Resources/UI/{module}.ui",
        f"Resources/{module}Requirements.txt",  # distinct names: both modules install into one folder
    ):
        assert required in resources, f"{module}: {required} is not a RESOURCE"
    assert variables["MODULE_NAME"] == [module]


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_registers_self_test_and_testing_folder(module):
    module_dir = REPO / module
    commands = cmake_commands(module_dir / "CMakeLists.txt")
    names = [name for name, _ in commands]
    start = names.index("if")
    assert commands[start][1] == ["BUILD_TESTING"]
    block = commands[start : names.index("endif", start)]
    assert ("slicer_add_python_unittest", ["SCRIPT", "${MODULE_NAME}.py"]) in block
    assert ("add_subdirectory", ["Testing"]) in block
    assert ("add_subdirectory", ["Python"]) in cmake_commands(module_dir / "Testing" / "CMakeLists.txt")
    assert (module_dir / "Testing" / "Python" / "CMakeLists.txt").is_file()


def test_radtyper_scripts_cover_every_library_file():
    """Every .py of RadTyperLib, RadTyperMRML and RadTyperSlicerLib is packaged (globbed: check the glob)."""
    module_dir = REPO / "RadTyper"
    _, commands = evaluate_module_cmake(module_dir)
    build = next(args for name, args in commands if name == "slicermacrobuildscriptedmodule")
    scripts = set(macro_arguments(build, {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"})["SCRIPTS"])
    on_disk = {
        str(p.relative_to(module_dir))
        for package in ("RadTyperLib", "RadTyperMRML", "RadTyperSlicerLib")
        for p in (module_dir / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    for package in ("RadTyperLib", "RadTyperMRML", "RadTyperSlicerLib"):
        assert (module_dir / package / "__init__.py").is_file()
    assert on_disk - scripts == set()
    data = module_dir / "RadTyperLib" / "data"
    if data.is_dir():
        resources = set(
            macro_arguments(build, {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"})["RESOURCES"]
        )
        files = {str(p.relative_to(module_dir)) for p in data.rglob("*") if p.is_file() and p.suffix != ".py"}
        files = {f for f in files if "__pycache__" not in f}
        assert files - resources == set()


def test_lesions_scripts_cover_its_package():
    """Every .py of RadTyperLesionsLib is packaged by the RadTyperLesions module."""
    module_dir = REPO / "RadTyperLesions"
    _, commands = evaluate_module_cmake(module_dir)
    build = next(args for name, args in commands if name == "slicermacrobuildscriptedmodule")
    scripts = set(macro_arguments(build, {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"})["SCRIPTS"])
    package = module_dir / "RadTyperLesionsLib"
    assert (package / "__init__.py").is_file()
    on_disk = {str(p.relative_to(module_dir)) for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk and on_disk - scripts == set()


# --- icons ------------------------------------------------------------------------------------------------
ICONS = [REPO / f"{EXTENSION}.png"] + [REPO / m / "Resources" / "Icons" / f"{m}.png" for m in MODULES]


@pytest.mark.parametrize("icon", ICONS, ids=lambda p: str(p.relative_to(REPO)))
def test_icon_is_128px_rgba_and_not_flat(icon):
    assert icon.is_file(), f"{icon} missing"
    with Image.open(icon) as img:
        assert img.format == "PNG"
        assert img.size == ICON_SIZE
        assert img.mode == "RGBA"
        pixels = np.asarray(img, dtype=float)
    opaque = pixels[pixels[..., 3] > 200][:, :3]
    assert opaque.shape[0] > 0.2 * ICON_SIZE[0] * ICON_SIZE[1], "icon is mostly transparent"
    assert opaque.std(axis=0).max() > 20, "icon is (nearly) a single flat colour"
    assert len(np.unique(opaque.astype(np.uint8), axis=0)) > 64, "icon has too few colours to be a drawing"


def test_module_icons_are_distinct():
    a, b = (np.asarray(Image.open(REPO / m / "Resources" / "Icons" / f"{m}.png"), float) for m in MODULES)
    assert np.abs(a - b).mean() > 10


def test_icons_are_reproducible(tmp_path):
    """The committed icons are what Resources/Scripts/make_icons.py draws (small tolerance for renderers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_icons", REPO / "Resources" / "Scripts" / "make_icons.py"
    )
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    make_icons.main(["--out", str(tmp_path)])
    for icon in ICONS:
        fresh = np.asarray(Image.open(tmp_path / icon.relative_to(REPO)), float)
        committed = np.asarray(Image.open(icon), float)
        assert np.abs(fresh - committed).mean() < 2.0, f"{icon.name} differs from make_icons.py's drawing"


# --- module files: parameter nodes, .ui bindings, imports -------------------------------------------------
@cache
def module_tree(module: str) -> ast.Module:
    return ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))


def annotation_name(node: ast.expr) -> str:
    """``vtkMRMLScalarVolumeNode`` for a Name/Attribute, the first argument's for ``Annotated[...]``."""
    if isinstance(node, ast.Subscript):
        inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
        return annotation_name(inner)
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ast.unparse(node)


def parameter_node_fields(module: str) -> dict[str, ast.expr]:
    """Annotated fields of the module's ``@parameterNodeWrapper`` class: ``{name: annotation}``."""
    classes = [
        c
        for c in module_tree(module).body
        if isinstance(c, ast.ClassDef)
        and any(
            (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "parameterNodeWrapper"
            for d in c.decorator_list
        )
    ]
    assert len(classes) == 1, f"{module}: expected one @parameterNodeWrapper class"
    assert classes[0].name == f"{module}ParameterNode"
    return {
        s.target.id: s.annotation
        for s in classes[0].body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }


@cache
def ui_root(module: str) -> ET.Element:
    return ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()


def bound_widgets(module: str) -> dict[str, ET.Element]:
    """``{SlicerParameterName: widget element}`` of the module's .ui."""
    out = {}
    for widget in ui_root(module).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                name = prop.findtext("string")
                assert name not in out, f"{module}.ui: {name} bound twice"
                out[name] = widget
    return out


@pytest.mark.parametrize("module", MODULES)
def test_ui_is_designer_xml_for_the_module(module):
    root = ui_root(module)
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.findtext("class") == module
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    qt_classes = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in qt_classes if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"{module}.ui: custom widgets not declared: {custom - declared}"
    assert f'"UI/{module}.ui"' in (REPO / module / f"{module}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("module", MODULES)
def test_ui_bindings_are_parameter_node_fields(module):
    fields = parameter_node_fields(module)
    bound = bound_widgets(module)
    assert bound, f"{module}.ui binds no widget"
    assert set(bound) <= set(fields), f"{module}.ui binds unknown parameters: {set(bound) - set(fields)}"
    for name, widget in bound.items():
        annotation = fields[name]
        need = BINDABLE.get(widget.get("class"))
        assert need is not None, f"{module}.ui: {name} is bound to a {widget.get('class')} (no connector)"
        text = ast.unparse(annotation)
        if need == "node":
            assert annotation_name(annotation).startswith("vtkMRML"), f"{module}: {name} must be a node type"
        elif need in ("Choice", "WithinRange"):
            assert need in text, (
                f"{module}: {name} needs Annotated[..., {need}(...)] for its {widget.get('class')}"
            )
        else:
            assert text == need, f"{module}: {name} is bound to a {widget.get('class')}: annotate it {need}"
        if widget.get("class") == "qMRMLNodeComboBox":
            node_types = [
                s.text
                for p in widget.findall("property")
                if p.get("name") == "nodeTypes"
                for s in p.iter("string")
            ]
            assert node_types == [annotation_name(annotation)], f"{module}.ui: {name} nodeTypes {node_types}"
        if widget.get("class") == "ctkSliderWidget":  # parameterNodeWrapper refuses unbounded sliders
            assert "WithinRange" in ast.unparse(annotation), (
                f"{module}: {name} needs Annotated[..., WithinRange()]"
            )


@pytest.mark.parametrize("module", MODULES)
def test_every_setting_is_bound_to_a_widget(module):
    """The parameter node holds every setting and every setting has its widget (internal state excepted)."""
    fields = set(parameter_node_fields(module)) - INTERNAL_PARAMETERS[module]
    assert fields == set(bound_widgets(module)), (
        f"{module}: parameters without a widget: {fields - set(bound_widgets(module))}"
    )


@pytest.mark.parametrize("module", MODULES)
def test_ui_choice_values_match_the_logic(module):
    """Choice lists of the parameter nodes are the values the Qt-free logic accepts."""
    fields = parameter_node_fields(module)
    choices = {
        name: ast.literal_eval(call.args[0])
        for name, annotation in fields.items()
        for call in ast.walk(annotation)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Choice"
    }
    assert choices["modality"] == ["auto", "CT", "MR", "PET"]
    if module == "RadTyper":
        assert choices["regionMode"] == ["2d", "3d"]
    else:  # read from the source: the layout tests run without slicer-core
        tree = ast.parse(
            (REPO / "RadTyper" / "RadTyperMRML" / "lesions_logic.py").read_text(encoding="utf-8")
        )
        methods = next(
            ast.literal_eval(n.value)
            for n in tree.body
            if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "SEGMENTATION_METHODS"
        )
        assert tuple(choices["segmentationMethod"]) == methods


@pytest.mark.parametrize("module", MODULES)
def test_ui_mrml_widgets_receive_the_scene(module):
    """Each MRML widget gets setMRMLScene from the top widget's mrmlSceneChanged (else it lists nothing)."""
    root = ui_root(module)
    mrml_widgets = {
        w.get("name") for w in root.iter("widget") if w.get("class", "").startswith(("qMRML", "qSlicer"))
    }
    mrml_widgets.discard(module)
    connected = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("sender") == module
        and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert mrml_widgets <= connected, f"{module}.ui: no scene connection for {mrml_widgets - connected}"


def slicer_package_files(module: str) -> list[Path]:
    package = REPO / module / SLICER_PACKAGES[module]
    return sorted(p for p in package.glob("*.py") if "__pycache__" not in p.parts)


def ui_attributes(tree: ast.AST) -> set[str]:
    """Names ``X`` used as ``<anything>.ui.X`` or ``ui.X``."""
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if (isinstance(value, ast.Attribute) and value.attr == "ui") or (
            isinstance(value, ast.Name) and value.id == "ui"
        ):
            used.add(node.attr)
    return used


@pytest.mark.parametrize("module", MODULES)
def test_widget_names_used_by_the_module_exist_in_ui(module):
    """The module file and its Slicer-side package only use widgets that the .ui defines."""
    names = {w.get("name") for w in ui_root(module).iter("widget")}
    used_by = {f"{module}.py": ui_attributes(module_tree(module))}
    for path in slicer_package_files(module):
        used_by[path.name] = ui_attributes(ast.parse(path.read_text(encoding="utf-8")))
    assert set().union(*used_by.values()), f"{module}: no ui widget is used"
    for where, used in used_by.items():
        assert used <= names, f"{where} uses widgets missing from {module}.ui: {used - names}"


@pytest.mark.parametrize("module", MODULES)
def test_buttons_of_the_ui_are_connected(module):
    """Every push button of the .ui is connected to a handler in the Slicer-side package."""
    buttons = {w.get("name") for w in ui_root(module).iter("widget") if w.get("class") == "QPushButton"}
    text = "\n".join(p.read_text(encoding="utf-8") for p in slicer_package_files(module))
    for name in buttons:
        assert f"self.ui.{name}.connect(" in text, f"{module}: {name} is not connected"


def module_scope_statements(tree: ast.AST):
    """Statements executed when the file is imported (function bodies excluded, class bodies included)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield node
        yield from module_scope_statements(node)


@pytest.mark.parametrize("module", MODULES)
def test_module_scope_imports_are_allowed(module):
    allowed = ALLOWED_MODULE_SCOPE_IMPORTS | set(sys.stdlib_module_names)
    for node in module_scope_statements(module_tree(module)):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}.py:{node.lineno}: relative import at module scope"
            roots = [node.module.split(".")[0]]
        else:
            continue
        for root in roots:
            assert not root.startswith("RadTyper"), (
                f"{module}.py:{node.lineno}: import {root} inside a function"
            )
            assert root in allowed, f"{module}.py:{node.lineno}: {root} must be imported inside a function"


@pytest.mark.parametrize("module", MODULES)
def test_module_file_runs_no_code_at_import(module):
    """Only imports, definitions and constant assignments at file scope (Extensions Index review question)."""
    for node in module_tree(module).body:
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str), (
                f"{module}.py:{node.lineno}: statement executed at import"
            )
        else:
            assert isinstance(
                node,
                ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.Assign | ast.AnnAssign,
            ), f"{module}.py:{node.lineno}: {type(node).__name__} at file scope"
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                assert not any(isinstance(n, ast.Call) for n in ast.walk(node.value)), (
                    f"{module}.py:{node.lineno}: call at file scope"
                )


@pytest.mark.parametrize("module", MODULES)
def test_module_defines_the_template_classes(module):
    classes = {c.name: c for c in module_tree(module).body if isinstance(c, ast.ClassDef)}
    expected = {
        module: "ScriptedLoadableModule",
        f"{module}Widget": "ScriptedLoadableModuleWidget",
        f"{module}Logic": "ScriptedLoadableModuleLogic",
        f"{module}Test": "ScriptedLoadableModuleTest",
    }
    for name, base in expected.items():
        assert name in classes, f"{module}.py: class {name} missing"
        assert base in {ast.unparse(b) for b in classes[name].bases}, f"{name} must derive from {base}"
    assert "VTKObservationMixin" in {ast.unparse(b) for b in classes[f"{module}Widget"].bases}
    text = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    assert '"Quantification"' in text
    assert 'pip_install("torch' not in text and "pip_install('torch" not in text


def _imports(tree: ast.AST, scope_only: bool) -> list[tuple[int, str]]:
    nodes = module_scope_statements(tree) if scope_only else ast.walk(tree)
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out += [(node.lineno, node.module)] + [
                (node.lineno, f"{node.module}.{a.name}") for a in node.names
            ]
    return out


@pytest.mark.parametrize("path", QT_FREE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_mrml_logic_is_qt_free(path):
    """RadTyperMRML and the job runner never use Qt or the Slicer application (they run under plain pytest)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    forbidden = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper")
    for lineno, name in _imports(tree, scope_only=False):
        assert not any(name == f or name.startswith(f + ".") for f in forbidden), (
            f"{path.name}:{lineno}: {name}"
        )
        assert not name.startswith("RadTyperSlicerLib") and not name.startswith("RadTyperLesionsLib")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
            assert node.attr not in ("util", "app", "mrmlScene", "modules"), (
                f"{path.name}:{node.lineno}: slicer.{node.attr} (pass the scene explicitly)"
            )


@pytest.mark.parametrize("module", MODULES)
def test_slicer_packages_import_nothing_heavy_at_module_scope(module):
    """The Slicer-side packages load with Slicer's bundled packages only (pip packages come on first use)."""
    allowed = ALLOWED_MODULE_SCOPE_IMPORTS | set(sys.stdlib_module_names)
    allowed |= {"RadTyperLib", "RadTyperMRML", "RadTyperSlicerLib", SLICER_PACKAGES[module]}
    for path in slicer_package_files(module):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for lineno, name in _imports(tree, scope_only=True):
            assert name.split(".")[0] in allowed, (
                f"{path.name}:{lineno}: {name} must be imported inside a function"
            )


# --- requirements, licence --------------------------------------------------------------------------------
def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def requirement_name(line: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("module", MODULES)
def test_requirements_are_lower_bounds_and_skip_bundled_packages(module):
    lines = requirement_lines(REPO / module / "Resources" / f"{module}Requirements.txt")
    names = {requirement_name(line) for line in lines}
    assert not names & FORBIDDEN_REQUIREMENTS, (
        f"{module}: must not pip-install {names & FORBIDDEN_REQUIREMENTS}"
    )
    assert not names & {"pyradiomics", "pyradiomics-bhklab", "pykwalify", "docopt"}, (
        "no wheel for Python 3.12: pyradiomics is built into the extension package by the SuperBuild"
    )
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+>=[0-9][0-9A-Za-z.]*", line), (
            f"{module}: '{line}' is not a >= range"
        )


def test_requirements_cover_the_core_dependencies():
    """What pyproject.toml's core needs (less Slicer's bundled packages) is installed in Slicer too."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {requirement_name(r) for r in project["dependencies"]} - FORBIDDEN_REQUIREMENTS
    names = {
        module: {
            requirement_name(line)
            for line in requirement_lines(REPO / module / "Resources" / f"{module}Requirements.txt")
        }
        for module in MODULES
    }
    assert core <= names["RadTyper"], f"RadTyperRequirements.txt lacks {core - names['RadTyper']}"
    assert names["RadTyperLesions"] <= names["RadTyper"]


def test_licence_is_apache_2():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 The RadTyper developers" in text
    assert "[yyyy]" not in text


@pytest.mark.parametrize("module", MODULES)
def test_self_tests_do_real_work_instead_of_skipping(module):
    """Slicer's test run must test something: no skipTest; missing packages are installed (wheels only)."""
    text = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    test_class = next(
        c for c in module_tree(module).body if isinstance(c, ast.ClassDef) and c.name == f"{module}Test"
    )
    body = ast.get_source_segment(text, test_class)
    assert "skipTest" not in body and "pytest.skip" not in body
    assert "installForTesting(" in body
    assert f"{module}Requirements.txt" in body
    dependencies = (REPO / "RadTyper" / "RadTyperSlicerLib" / "Dependencies.py").read_text(encoding="utf-8")
    assert '"--only-binary", ":all:"' in dependencies
