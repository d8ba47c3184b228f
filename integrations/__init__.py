"""Adapters between fchannel and the wider ecosystem (installed as
``fchannel.integrations``).  Each adapter is a submodule whose third-party
dependencies come from an extra (``pip install fchannel[kafka]``, ...)."""
