"""Fan-in relay: many daemons' PUB sockets behind one address (libzmq's XSUB/XPUB proxy).
relay.py: the Relay; command.py: `pipeline relay`."""
