"""Settings: every ``NOTIFYQ_*`` variable, typed and checked once (pydantic-settings).

Ground floor: it imports only the scheduler's parsers (caps, windows) to check its
values; everything else reads settings from here, and only when a process starts
(``get_settings()``), never at import.
"""
