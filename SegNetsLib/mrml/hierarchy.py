"""Subject hierarchy placement: new results sit in the same folder/study as their input."""

from __future__ import annotations


def _item_of(hierarchy, node) -> int:
    """The node's subject hierarchy item, created under the scene when missing.

    The Slicer application creates items as nodes are added (a Qt plugin does it); slicer-core
    alone does not, so this creates them.
    """
    item = hierarchy.GetItemByDataNode(node)
    return item or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


def place_next_to(node, reference_node) -> None:
    """Move ``node``'s subject hierarchy item under the parent of ``reference_node``'s item."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if hierarchy is None or reference_node is None:
        return
    parent = hierarchy.GetItemParent(_item_of(hierarchy, reference_node))
    hierarchy.SetItemParent(_item_of(hierarchy, node), parent)
