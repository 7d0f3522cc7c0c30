"""Neuroimaging input/output: GIFTI, NIfTI, CIFTI, FreeSurfer and BIDS derivatives."""

__all__: list[str] = []
