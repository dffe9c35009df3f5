"""A small but faithful Kubernetes API server for tests and demos (see docs/simulator-apiserver.md)."""

from .faults import FaultRule
from .server import ApiServer, TLSConfig

__all__ = ["ApiServer", "FaultRule", "TLSConfig"]
