"""Adapters that turn images, voxel masks, surface meshes and atlases into graphs/operators."""

__all__: list[str] = []
