"""Run Slicer's OWN parameterNodeWrapper (from ../shared/slicer-reference/<release>) against RadTyper's
parameter-node classes and the ``SlicerParameterName`` bindings of their .ui files; print a JSON report.

Used by ``test_slicer_contract.py`` in a subprocess per release (each release's ``slicer.parameterNodeWrapper``
is imported into a fresh interpreter). MRML nodes are slicer-core's; Qt/ctk/qMRML widgets are inert stand-ins
named as in the .ui, which is all the connector lookup looks at (``type(widget)``): this checks types and
bindings, not widget behaviour.

    python Testing/slicer_parameter_node_check.py <kit release folder> <repository root>
"""

from __future__ import annotations

import ast
import json
import pathlib
import sys
import types
import typing
import xml.etree.ElementTree as ET

MODULES = {
    "RadTyper": ("RadTyperParameterNode", {"segmentEditorNode"}),
    "RadTyperLesions": ("RadTyperLesionsParameterNode", {"segmentEditorNode"}),
}
_stand_ins: dict[str, type] = {}


class _Inert:
    """Any Qt attribute, signal or return value: accepts every call."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False


def stand_in(class_name: str) -> type:
    """One class per Qt/ctk/qMRML class name (connectors compare ``type(widget)`` with it)."""
    if class_name not in _stand_ins:

        def init(self, *args, **kwargs):
            object.__setattr__(self, "_properties", {})

        def property_(self, key):
            return self._properties.get(key)

        def set_property(self, key, value):
            self._properties[key] = value

        _stand_ins[class_name] = type(
            class_name, (_Inert,), {"__init__": init, "property": property_, "setProperty": set_property}
        )
    return _stand_ins[class_name]


def stand_in_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def getattr_(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return stand_in(attr)

    module.__getattr__ = getattr_  # type: ignore[method-assign]
    return module


def main(kit: pathlib.Path, root: pathlib.Path) -> dict:
    sys.modules["qt"] = stand_in_module("qt")
    sys.modules["ctk"] = stand_in_module("ctk")
    import slicer  # slicer-core: the MRML node classes

    def slicer_getattr(attr):
        if attr.startswith(("qMRML", "qSlicer")):
            return stand_in(attr)
        raise AttributeError(attr)

    slicer.__getattr__ = slicer_getattr  # type: ignore[method-assign]
    slicer.__path__.insert(0, str(kit / "Base" / "Python" / "slicer"))
    markups = kit / "Modules" / "Loadable" / "Markups"
    sys.path.insert(0, str(markups))
    import MarkupsLib.parameterNodeWrapper  # noqa: F401  (what Slicer's Markups module registers)
    import slicer.parameterNodeWrapper as pnw

    holder = types.ModuleType("radtyper_parameter_nodes")  # type hints are resolved in the class's module
    sys.modules[holder.__name__] = holder
    namespace = holder.__dict__
    namespace.update(
        {
            "pathlib": pathlib,
            "Annotated": typing.Annotated,
            "ctk": sys.modules["ctk"],
            **{name: getattr(pnw, name) for name in dir(pnw) if not name.startswith("_")},
        }
    )

    def definitions(module: str, names: set[str]) -> None:
        """Execute the named class definitions of a module file (with their decorators) in ``namespace``."""
        source = (root / module / f"{module}.py").read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.ClassDef) and node.name in names:
                for n in ast.walk(node):
                    if isinstance(n, ast.Name) and n.id.startswith("vtkMRML"):
                        namespace[n.id] = getattr(slicer, n.id)
                exec(compile(ast.Module([node], []), module, "exec"), namespace)

    # RadTyper's own connector (ctkPathLineEdit <-> str) is registered when the RadTyper module file loads
    definitions("RadTyper", {"RadTyperPathLineEditToStrConnector"})
    report: dict = {"release": kit.name}
    scene = slicer.vtkMRMLScene()
    for module, (class_name, internal) in MODULES.items():
        out: dict = {"bindings": {}, "unbound": [], "errors": [], "empty_paths": {}}
        report[module] = out
        try:
            definitions(module, {class_name})
            params = namespace[class_name](scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
        except Exception as exc:  # the wrapper rejects the class
            out["errors"].append(f"wrapper: {type(exc).__name__}: {exc}")
            continue
        ui = types.SimpleNamespace()
        bound = set()
        for widget in ET.parse(root / module / "Resources" / "UI" / f"{module}.ui").getroot().iter("widget"):
            for prop in widget.findall("property"):
                if prop.get("name") != "SlicerParameterName":
                    continue
                param = prop.findtext("string")
                bound.add(param)
                instance = stand_in(widget.get("class"))()
                instance.setProperty("SlicerParameterName", param)
                setattr(ui, widget.get("name"), instance)
                try:
                    connector = pnw.createGuiConnector(instance, params.dataType(param))
                    connector.write(params.getValue(param))
                    out["bindings"][param] = [widget.get("class"), type(connector).__name__]
                    if widget.get("class") == "ctkPathLineEdit":
                        out["empty_paths"][param] = instance.currentPath
                except Exception as exc:
                    out["errors"].append(f"{param} ({widget.get('class')}): {type(exc).__name__}: {exc}")
        out["unbound"] = sorted(set(params.allParameters) - bound - internal)
        try:
            tag = params.connectGui(ui)
            params.disconnectGui(tag)
        except Exception as exc:
            out["errors"].append(f"connectGui: {type(exc).__name__}: {exc}")
    return report


if __name__ == "__main__":
    print(json.dumps(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))))
