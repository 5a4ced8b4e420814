"""Fleets: one environment per seat, planned purely (plan.py) and applied by a provider (provider.py), each provider
a package of its own (docker/, openstack/) found through registry.py."""
