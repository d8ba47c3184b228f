"""Sources, looked up by their Flume type names (see fchannel.agent.registry):
``seq``, ``netcat``, ``exec``, ``http``, ``spooldir``, ``TAILDIR``."""
