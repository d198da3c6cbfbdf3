"""The wallboard and the coordinators' console: an aiohttp server in the service's event loop.

Everything shown is read from the in-memory state (roster, dispatcher, registrar, the day's
tally), never from the database; callers appear only as counts and durations.
"""
