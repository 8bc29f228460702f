"""Simulated network: the real server and thousands of clients in one process, no sockets,
under Trio's virtual clock, with seeded fault injection."""

from ._links import SimLink as SimLink
from ._network import Network as Network
from ._simulation import Simulation as Simulation
from ._simulation import open_simulation as open_simulation
from ._simulation import seed_scheduler as seed_scheduler
