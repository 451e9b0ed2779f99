"""gatewayd's socket transport (link kinds ``tcp``, ``udp`` and ``tls``), on asyncio.

What it does, and its limits and defaults:

- Clients (:meth:`Transport.connect`): TCP and TLS with ``loop.create_connection``,
  UDP with ``loop.create_datagram_endpoint`` *connected* to ``(host, port)`` and bound
  to ``local_port`` when given (any interface of the remote's address family).
  ``connect_timeout`` bounds resolve + connect + TLS together. Failures raise
  ``TransportError`` with stage ``resolve``, ``connect``, ``tls`` or ``timeout``.
- TLS verifies with the request's ``SSLContext`` (required: there is no default
  context here); the name checked and sent as SNI is ``server_hostname`` or else the
  host, when the context checks host names.
- Servers (:meth:`Transport.listen`): TCP/TLS with ``loop.create_server``, each
  accepted peer handed to ``accept`` for its ``LinkEvents``. Host ``""`` = every
  interface: ``0.0.0.0`` plus ``::`` (v6-only) on the same port; ``local`` reports the
  IPv4 side. A UDP server with host ``""`` binds ``0.0.0.0`` only.
  TLS servers do the handshake per peer within ``handshake_timeout``; a peer that
  fails it is told to ``on_rejected`` with stage ``"tls"``, one that runs out of
  time with ``"timeout"``; a peer outside ``allow`` is closed at once and told
  with ``"refused"`` (a ``Refused`` raised by ``accept`` is not told).
  A UDP "server" is one datagram endpoint bound to ``(host, port)``: ``accept`` is
  called once with its connection, which delivers every datagram with its sender's
  address and needs an explicit ``peer`` to send. Closing a listener stops accepting;
  accepted connections (the UDP endpoint included) stay open until closed themselves.
- Socket options (nodelay, keep-alive with idle/interval/count, SO_SNDTIMEO and
  SO_RCVTIMEO as ``struct timeval``) are applied to every socket: clients, listening
  sockets and accepted ones (TCP-level options only to TCP sockets). A refused option
  is logged and skipped. The send/receive timeouts have no effect on the non-blocking
  sockets asyncio uses; they are set so that ``getsockopt`` shows what was asked.
- Receiving, TCP/TLS: reading is paused while ``LinkEvents.data`` is awaited, so a
  slow consumer slows the peer (TCP flow control); what arrived while paused is
  delivered in one payload next. UDP: each datagram is delivered whole with its
  sender's address; at most :data:`MAX_QUEUED_DATAGRAMS` wait for delivery, the
  rest are dropped, counted in ``Connection.dropped`` and logged.
- Ending: a peer's FIN or an error reports ``closed(by_peer=True)`` after what was
  received before it is delivered; :meth:`Connection.close` flushes, sends FIN and
  reports ``closed(by_peer=False)``; :meth:`Connection.abort` drops at once (RST for
  TCP). ``closed`` is reported exactly once.
"""

# Deliberately light: the implementation lives in gatewayd_sockets.transport.

#: How the transport shows in ``gatewayd plugins``.
NAME = "asyncio-sockets"
KINDS = frozenset({"tcp", "udp", "tls"})
SUMMARY = "TCP, UDP and TLS clients and servers on asyncio sockets"
