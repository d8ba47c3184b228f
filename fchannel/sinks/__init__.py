"""Sinks, looked up by their Flume type names (see fchannel.agent.registry):
``logger``, ``null``, ``file_roll``."""
