"""Plumbing every service shares: settings, errors, logging, the gRPC server lifecycle."""
