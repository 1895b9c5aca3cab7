"""Data: sources of sharp frames, the blur builder, prepared-set manifests and torch loaders
(docs/DESIGN.md "Data")."""
