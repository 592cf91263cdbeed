"""Routing across a model's pool of deployments: priority and weight, failover, and cooldowns
and breakers that every replica shares through the store."""

from plugins.routing.router import Router

__all__ = ["Router"]
