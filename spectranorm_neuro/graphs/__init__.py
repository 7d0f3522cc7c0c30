"""Adapters that turn images, voxel masks, surface meshes and atlases into graphs/operators.

Every adapter returns a :class:`Graph` (adjacency and/or FEM stiffness/mass over the features,
plus the :class:`Structure` blocks that map features back to vertices/voxels/cells), which
:meth:`spectranorm_neuro.basis.EigenmodeBasis.from_graph` turns into an eigenmode basis.

* :mod:`~spectranorm_neuro.graphs.lattice`: :func:`lattice_graph`, :func:`from_nifti_mask`.
* :mod:`~spectranorm_neuro.graphs.mesh`: :func:`load_surface`, :func:`mesh_graph`,
  :func:`read_cortex_mask`, :func:`fsaverage5_graph`, :func:`hemisphere_graphs`.
* :mod:`~spectranorm_neuro.graphs.parcellation`: :func:`read_labels`, :func:`parcel_graph`,
  :func:`parcel_queries`.
* :mod:`~spectranorm_neuro.graphs.volume_fem`: :func:`volume_fem_graph` (tetrahedral FEM of a
  voxel mask, for volumetric Laplace eigenmodes).
"""

from ._checks import as_adjacency, check_connected, check_fem_pair, component_sizes
from ._graph import Graph, Structure
from ._meshcheck import clean_mask
from ._ops import largest_component, structure_offsets, subgraph_by_components
from .lattice import from_nifti_mask, lattice_graph
from .mesh import (
    FSAVERAGE5_SURFACES,
    fem_matrices,
    fsaverage5_cortex_mask,
    fsaverage5_graph,
    hemisphere_graphs,
    load_surface,
    merge_graphs,
    mesh_graph,
    read_cortex_mask,
)
from .parcellation import node_areas, parcel_graph, parcel_queries, read_labels
from .volume_fem import mask_fem_graph, volume_fem_graph

__all__ = [
    "Graph",
    "Structure",
    "as_adjacency",
    "check_connected",
    "check_fem_pair",
    "component_sizes",
    "clean_mask",
    "largest_component",
    "structure_offsets",
    "subgraph_by_components",
    "lattice_graph",
    "from_nifti_mask",
    "FSAVERAGE5_SURFACES",
    "fem_matrices",
    "fsaverage5_cortex_mask",
    "fsaverage5_graph",
    "hemisphere_graphs",
    "load_surface",
    "merge_graphs",
    "mesh_graph",
    "read_cortex_mask",
    "node_areas",
    "parcel_graph",
    "parcel_queries",
    "read_labels",
    "mask_fem_graph",
    "volume_fem_graph",
]
