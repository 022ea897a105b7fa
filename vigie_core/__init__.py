"""What the agent and the fleet share, and nothing else.

``vigie_core`` imports neither program: ``edge_agent`` and ``fleet`` both import it and
never each other (``tests/unit/test_layout.py`` fails if one does).

- ``contract/``: the wire contract, split by concern: identifiers, topics (every topic
  and every broker ACL grant), data payloads, presence, managed settings, releases and
  rollouts documents, and the codec that validates what arrives.
- ``tls``: TLS contexts and client identities towards the broker.
- ``files``: atomic, synced file writes.
- ``backoff``: capped, jittered reconnection delays.
- ``clock``: the one place that reads the wall clock.
- ``documents``: YAML documents validated into typed models.
- ``errors``: the exception tree both programs build on.
"""
