"""strictmx lab: a fake mail internet on loopback (generator, services, self-test)."""
