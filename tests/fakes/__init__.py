"""Loopback stand-ins for the services distill talks to (OpenAI, Anthropic, the Hub) and
the helpers that serve them: no test reaches the network."""
