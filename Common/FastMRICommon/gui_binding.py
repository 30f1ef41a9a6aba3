"""What ties a module's GUI to the scene, without qt (so it is tested outside Slicer): the parameter node its
widgets are bound to, and the point list its place widget really places into.

``ParameterGui`` binds the GUI to one parameter node at a time through parameterNodeWrapper's ``connectGui``
and ``disconnectGui`` (``Base/Python/slicer/parameterNodeWrapper/wrapper.py``). Two facts of that code, at
v5.8.1 and v5.10.0, shape it:

- every ``connectGui`` call also adds a ModifiedEvent observer to the parameter node that ``disconnectGui``
  leaves in place, so connecting again on each entry into the module piles observers up: the binding is
  kept while the parameter node stays the same (leaving the module does not unbind it);
- Slicer 5.8's ``connectGui`` returns None instead of the tag ``disconnectGui`` needs (``_connectGui`` does
  not return what ``_connectParametersToGui`` returns), so its connections could never be removed: the tag
  is then the one the call just registered, the newest key of the wrapper's ``_parameterGUIs``.

``placing_point_list``: when the point list a place widget uses is full (its maximum number of control
points defined) and the user goes on placing, Slicer makes a new point list and places into it
(``vtkMRMLMarkupsDisplayableManager::GetWidgetForPlacement``, v5.8.1 and v5.10.0: ``AddNewMarkupsNode`` and
``SetReferenceActivePlaceNodeID``); the module follows it instead of reading the old list.
"""

from __future__ import annotations

from typing import Any

#: vtkMRMLInteractionNode::Place (``Libs/MRML/Core/vtkMRMLInteractionNode.h``).
PLACE_MODE = 1


class ParameterGui:
    """The parameter node (a parameterNodeWrapper object) a GUI is bound to, bound once (module docstring)."""

    def __init__(self, gui: Any) -> None:
        self._gui = gui
        self.node: Any = None  # the bound wrapper, or None
        self._tag: Any = None

    def bind(self, node: Any) -> Any:
        """Bind the GUI to ``node`` (a wrapper; None: unbind) and return the wrapper now bound. When the GUI is
        bound to the same MRML parameter node already, that binding (and its wrapper) is kept."""
        if node is not None and self.node is not None and node.parameterNode is self.node.parameterNode:
            return self.node
        self.unbind()
        if node is not None:
            tag = node.connectGui(self._gui)
            if tag is None:  # Slicer 5.8
                tag = max(node._parameterGUIs, default=None)
            self.node, self._tag = node, tag
        return self.node

    def unbind(self) -> None:
        if self.node is not None and self._tag is not None:
            self.node.disconnectGui(self._tag)
        self.node, self._tag = None, None


def placing_point_list(scene: Any, current: Any) -> Any | None:
    """The point list Slicer now places into instead of ``current`` because ``current`` was full (module
    docstring), or None when it still places into ``current`` (or the active list changed for another
    reason: not placing, ``current`` not full, a list of another kind, a list with points already)."""
    if current is None or scene is None:
        return None
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    active_id = selection.GetActivePlaceNodeID() if selection is not None else None
    active = scene.GetNodeByID(active_id) if active_id else None
    if (
        active is None
        or active is current
        or interaction is None
        or interaction.GetCurrentInteractionMode() != PLACE_MODE
    ):
        return None
    limit = current.GetMaximumNumberOfControlPoints()
    full = 0 <= limit <= current.GetNumberOfDefinedControlPoints()
    if not full or active.GetClassName() != current.GetClassName() or active.GetNumberOfDefinedControlPoints() > 0:
        return None
    return active
