"""The daemon around the ports: command line, lifecycle, config checks,
control socket (server and client), metrics, systemd notification.

The top layer: it imports every layer below it; nothing imports it.
"""
