"""The avatar's services: one package per pipeline stage, plus shared plumbing in `common`."""
